"""Sense data, SPC-4 4.5: sense keys, additional sense codes and the two formats.

:class:`SenseData` is built by devices (through :mod:`lio_xcopy.scsi.errors`) and
encoded once, by the transport, in fixed (SPC-4 4.5.3) or descriptor (4.5.2) format.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from lio_xcopy.errors import LioXcopyError

#: SAM-5 5.3.1 status codes.
GOOD = 0x00
CHECK_CONDITION = 0x02
BUSY = 0x08
RESERVATION_CONFLICT = 0x18
TASK_SET_FULL = 0x28
TASK_ABORTED = 0x40

FIXED_CURRENT = 0x70
FIXED_DEFERRED = 0x71
DESCRIPTOR_CURRENT = 0x72
DESCRIPTOR_DEFERRED = 0x73

FIXED_LENGTH = 18
#: the sense buffer TCMU carries (TCMU_SENSE_BUFFERSIZE) less the fixed part: room for
#: vendor-specific additional sense bytes
VENDOR_MAX = 96 - FIXED_LENGTH
#: the descriptor type lio-xcopy's vendor-specific sense bytes travel in (80h-FFh are
#: vendor specific, SPC-4 4.5.2.1)
VENDOR_DESCRIPTOR = 0x80


class SenseKey(IntEnum):
    """SPC-4 Table 47."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE


class Asc(IntEnum):
    """Additional sense code and qualifier, SPC-4 Annex D (value = ASC << 8 | ASCQ)."""

    NO_ADDITIONAL_SENSE_INFORMATION = 0x0000
    FILEMARK_DETECTED = 0x0001
    END_OF_PARTITION_MEDIUM_DETECTED = 0x0002
    BEGINNING_OF_PARTITION_MEDIUM_DETECTED = 0x0004
    END_OF_DATA_DETECTED = 0x0005
    PROGRAMMABLE_EARLY_WARNING_DETECTED = 0x0007
    POSITION_PAST_BEGINNING_OF_MEDIUM = 0x3B0C
    OPERATION_IN_PROGRESS = 0x0016
    LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION_REQUIRED = 0x0403
    LOGICAL_UNIT_NOT_READY_OPERATION_IN_PROGRESS = 0x0407
    LOGICAL_UNIT_COMMUNICATION_FAILURE = 0x0800
    LOGICAL_UNIT_COMMUNICATION_TIME_OUT = 0x0801
    UNREACHABLE_COPY_TARGET = 0x0804
    WRITE_ERROR = 0x0C00
    THIRD_PARTY_DEVICE_FAILURE = 0x0D01
    COPY_TARGET_DEVICE_NOT_REACHABLE = 0x0D02
    INCORRECT_COPY_TARGET_DEVICE_TYPE = 0x0D03
    COPY_TARGET_DEVICE_DATA_UNDERRUN = 0x0D04
    COPY_TARGET_DEVICE_DATA_OVERRUN = 0x0D05
    INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT = 0x0E03
    UNRECOVERED_READ_ERROR = 0x1100
    PARAMETER_LIST_LENGTH_ERROR = 0x1A00
    MISCOMPARE_DURING_VERIFY_OPERATION = 0x1D00
    INVALID_COMMAND_OPERATION_CODE = 0x2000
    LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE = 0x2100
    INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE = 0x2300
    INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE = 0x2301
    INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED = 0x2302
    INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN = 0x2304
    INVALID_TOKEN_OPERATION_TOKEN_EXPIRED = 0x2307
    INVALID_TOKEN_OPERATION_TOKEN_CANCELLED = 0x2308
    INVALID_TOKEN_OPERATION_TOKEN_DELETED = 0x2309
    INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH = 0x230A
    INVALID_FIELD_IN_CDB = 0x2400
    LOGICAL_UNIT_NOT_SUPPORTED = 0x2500
    INVALID_FIELD_IN_PARAMETER_LIST = 0x2600
    TOO_MANY_TARGET_DESCRIPTORS = 0x2606
    UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE = 0x2607
    TOO_MANY_SEGMENT_DESCRIPTORS = 0x2608
    UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE = 0x2609
    UNEXPECTED_INEXACT_SEGMENT = 0x260A
    INLINE_DATA_LENGTH_EXCEEDED = 0x260B
    WRITE_PROTECTED = 0x2700
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT = 0x2707
    NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED = 0x2800
    POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED = 0x2900
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = 0x2F00
    COMMANDS_CLEARED_BY_DEVICE_SERVER = 0x2F02
    MEDIUM_FORMAT_CORRUPTED = 0x3100
    MEDIUM_NOT_PRESENT = 0x3A00
    SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900
    INTERNAL_TARGET_FAILURE = 0x4400
    INSUFFICIENT_RESOURCES = 0x5503
    INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN = 0x550D
    MEDIUM_REMOVAL_PREVENTED = 0x5302
    # SMC-3
    INVALID_ELEMENT_ADDRESS = 0x2101
    IMPORT_OR_EXPORT_ELEMENT_ACCESSED = 0x2801
    MEDIUM_DESTINATION_ELEMENT_FULL = 0x3B0D
    MEDIUM_SOURCE_ELEMENT_EMPTY = 0x3B0E

    @property
    def asc(self) -> int:
        return self.value >> 8

    @property
    def ascq(self) -> int:
        return self.value & 0xFF


def field_pointer(byte: int, bit: int | None = None, *, in_cdb: bool = True) -> bytes:
    """Sense-key specific field pointer, SPC-4 4.5.2.4.2 (ILLEGAL REQUEST)."""
    if not 0 <= byte <= 0xFFFF or (bit is not None and not 0 <= bit <= 7):
        raise ValueError(f"field pointer out of range: byte {byte} bit {bit}")
    flags = 0x80 | (0x40 if in_cdb else 0)
    if bit is not None:
        flags |= 0x08 | bit
    return struct.pack(">BH", flags, byte)


def segment_pointer(byte: int, bit: int | None = None, *, in_segment: bool = True) -> bytes:
    """Sense-key specific segment pointer, SPC-4 4.5.2.4.6 (COPY ABORTED)."""
    flags = 0x80 | (0x20 if in_segment else 0)
    if bit is not None:
        flags |= 0x08 | bit
    return struct.pack(">BH", flags, byte)


def progress_indication(fraction: float) -> bytes:
    """Sense-key specific progress indication, SPC-4 4.5.2.4.4."""
    return struct.pack(">BH", 0x80, max(0, min(0xFFFF, int(fraction * 0x10000))))


def _sksv(sks: bytes | None) -> tuple[int, int] | None:
    """(flags byte, 16-bit value) of a SENSE KEY SPECIFIC field with SKSV set, else None."""
    if not sks or len(sks) < 3 or not sks[0] & 0x80:
        return None
    return sks[0], int.from_bytes(sks[1:3], "big")


def parse_field_pointer(sks: bytes | None) -> tuple[int, int | None, bool] | None:
    """(byte, bit or None, in CDB) of a field pointer (:func:`field_pointer`)."""
    if (f := _sksv(sks)) is None:
        return None
    flags, byte = f
    return byte, flags & 7 if flags & 0x08 else None, bool(flags & 0x40)


def parse_segment_pointer(sks: bytes | None) -> tuple[int, int | None, bool] | None:
    """(byte, bit or None, in the segment descriptor) of a segment pointer
    (:func:`segment_pointer`)."""
    if (f := _sksv(sks)) is None:
        return None
    flags, byte = f
    return byte, flags & 7 if flags & 0x08 else None, bool(flags & 0x20)


def parse_progress_indication(sks: bytes | None) -> float | None:
    """The fraction done of a progress indication (:func:`progress_indication`)."""
    if (f := _sksv(sks)) is None:
        return None
    return f[1] / 0x10000


def sense_key_specific_words(key: SenseKey, sks: bytes | None) -> str:
    """The 3-byte SENSE KEY SPECIFIC field (SPC-4 4.5.2.4) in words; "" when SKSV is clear.

    ILLEGAL REQUEST carries a field pointer ("at CDB byte 1 bit 7", "at parameter list
    byte 12"), COPY ABORTED a segment pointer, NOT READY / NO SENSE a progress
    indication, RECOVERED / MEDIUM / HARDWARE ERROR an actual retry count (4.5.2.4.3)."""
    f = _sksv(sks)
    if f is None:
        return ""
    flags, value = f
    if key == SenseKey.ILLEGAL_REQUEST or key == SenseKey.COPY_ABORTED:
        field = key == SenseKey.ILLEGAL_REQUEST
        pointer = parse_field_pointer(sks) if field else parse_segment_pointer(sks)
        assert pointer is not None
        byte, bit, inner = pointer
        where = ("CDB" if field else "segment descriptor") if inner else "parameter list"
        return f"at {where} byte {byte}" + (f" bit {bit}" if bit is not None else "")
    if key in (SenseKey.NOT_READY, SenseKey.NO_SENSE):
        return f"progress {100 * value / 0x10000:.0f}%"
    if key in (SenseKey.RECOVERED_ERROR, SenseKey.MEDIUM_ERROR, SenseKey.HARDWARE_ERROR):
        return f"after {value} retries"
    if key == SenseKey.UNIT_ATTENTION and flags & 0x01:
        return "(unit attention queue overflowed: some conditions were lost)"
    return ""


#: SAM-5 5.3.1 status codes by name, with the obsolete ones an initiator may still meet.
STATUS_NAMES = {
    0x00: "GOOD", 0x02: "CHECK CONDITION", 0x04: "CONDITION MET", 0x08: "BUSY",
    0x10: "INTERMEDIATE", 0x14: "INTERMEDIATE-CONDITION MET", 0x18: "RESERVATION CONFLICT",
    0x22: "COMMAND TERMINATED", 0x28: "TASK SET FULL", 0x30: "ACA ACTIVE",
    0x40: "TASK ABORTED",
}


#: The statuses that report success (SAM-5 5.3.1): GOOD, CONDITION MET and the
#: obsolete INTERMEDIATE and INTERMEDIATE-CONDITION MET.
SUCCESS_STATUSES = frozenset({0x00, 0x04, 0x10, 0x14})


def status_name(status: int) -> str:
    """The SAM-5 name of a status code, or its hex value."""
    return STATUS_NAMES.get(status, f"status {status:02X}h")


#: Additional sense codes the initiator may meet beyond the ones lio-xcopy's devices
#: raise (:class:`Asc`); names from SPC-4 Annex D.
MORE_ASC_NAMES = {
    0x0006: "I/O PROCESS TERMINATED",
    0x0017: "CLEANING REQUESTED",
    0x0400: "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE",
    0x0401: "LOGICAL UNIT IS IN PROCESS OF BECOMING READY",
    0x0402: "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED",
    0x0404: "LOGICAL UNIT NOT READY, FORMAT IN PROGRESS",
    0x0D00: "ERROR DETECTED BY THIRD PARTY TEMPORARY INITIATOR",
    0x1400: "RECORDED ENTITY NOT FOUND",
    0x1403: "END-OF-DATA NOT FOUND",
    0x1500: "RANDOM POSITIONING ERROR",
    0x2305: "INVALID TOKEN OPERATION, TOKEN CORRUPT",
    0x2306: "INVALID TOKEN OPERATION, TOKEN REVOKED",
    0x2601: "PARAMETER NOT SUPPORTED",
    0x2602: "PARAMETER VALUE INVALID",
    0x260C: "INVALID OPERATION FOR COPY SOURCE OR DESTINATION",
    0x260D: "COPY SEGMENT GRANULARITY VIOLATION",
    0x2901: "POWER ON OCCURRED",
    0x2902: "SCSI BUS RESET OCCURRED",
    0x2903: "BUS DEVICE RESET FUNCTION OCCURRED",
    0x2904: "DEVICE INTERNAL RESET",
    0x2907: "I_T NEXUS LOSS OCCURRED",
    0x2A00: "PARAMETERS CHANGED",
    0x2A01: "MODE PARAMETERS CHANGED",
    0x2A09: "CAPACITY DATA HAS CHANGED",
    0x2C00: "COMMAND SEQUENCE ERROR",
    0x3000: "INCOMPATIBLE MEDIUM INSTALLED",
    0x3002: "CANNOT READ MEDIUM - INCOMPATIBLE FORMAT",
    0x3700: "ROUNDED PARAMETER",
    0x3B00: "SEQUENTIAL POSITIONING ERROR",
    0x3E03: "LOGICAL UNIT FAILED SELF-TEST",
    0x3F01: "MICROCODE HAS BEEN CHANGED",
    0x3F03: "INQUIRY DATA HAS CHANGED",
    0x3F0E: "REPORTED LUNS DATA HAS CHANGED",
    0x4700: "SCSI PARITY ERROR",
    0x4900: "INVALID MESSAGE ERROR",
    0x4A00: "COMMAND PHASE ERROR",
    0x4B00: "DATA PHASE ERROR",
    0x4E00: "OVERLAPPED COMMANDS ATTEMPTED",
    0x5000: "WRITE APPEND ERROR",
    0x5200: "CARTRIDGE FAULT",
    0x5500: "SYSTEM RESOURCE FAILURE",
    0x5A01: "OPERATOR MEDIUM REMOVAL REQUEST",
}


def asc_name(asc: int) -> str:
    """The SPC-4 name of ASC << 8 | ASCQ, or words saying why there is none."""
    try:
        return Asc(asc).name.replace("_", " ")
    except ValueError:
        pass
    if asc in MORE_ASC_NAMES:
        return MORE_ASC_NAMES[asc]
    if asc >> 8 >= 0x80 or asc & 0xFF >= 0x80:
        return "vendor specific"
    return "not in lio-xcopy's table; see SPC-4 Annex D"


@dataclass(frozen=True, slots=True)
class SenseData:
    """One sense report, independent of its encoding (SPC-4 4.5)."""

    key: SenseKey
    asc: int = 0  # ASC << 8 | ASCQ, normally an :class:`Asc`
    information: int | None = None  # VALID is set when present
    command_specific: int = 0
    sense_key_specific: bytes | None = None  # 3 bytes, SKSV set
    filemark: bool = False
    eom: bool = False
    ili: bool = False
    deferred: bool = False
    #: vendor-specific additional sense bytes (fixed format bytes 18 and on; descriptor
    #: format: a vendor-specific descriptor, type 80h); at most :data:`VENDOR_MAX`
    vendor: bytes = b""

    # --- fixed format, SPC-4 4.5.3 ---------------------------------------------------
    def fixed(self) -> bytes:
        """Encode in fixed format (18 bytes, then the vendor-specific bytes)."""
        vendor = self.vendor[:VENDOR_MAX]
        buf = bytearray(FIXED_LENGTH + len(vendor))
        buf[FIXED_LENGTH:] = vendor
        info = self.information
        # a 64-bit LBA does not fit: VALID stays clear (SPC-4 4.5.3)
        info = info if info is not None and -(1 << 31) <= info <= 0xFFFFFFFF else None
        info_valid = info is not None
        buf[0] = (FIXED_DEFERRED if self.deferred else FIXED_CURRENT) | (0x80 if info_valid else 0)
        buf[2] = (
            (0x80 if self.filemark else 0)
            | (0x40 if self.eom else 0)
            | (0x20 if self.ili else 0)
            | int(self.key)
        )
        if info is not None:
            struct.pack_into(">I", buf, 3, info & 0xFFFFFFFF)
        buf[7] = FIXED_LENGTH - 8 + len(vendor)
        struct.pack_into(">I", buf, 8, self.command_specific & 0xFFFFFFFF)
        buf[12] = self.asc >> 8
        buf[13] = self.asc & 0xFF
        if self.sense_key_specific is not None:
            buf[15:18] = self.sense_key_specific
        return bytes(buf)

    # --- descriptor format, SPC-4 4.5.2 ---------------------------------------------
    def descriptor(self) -> bytes:
        """Encode in descriptor format with the information, command-specific,
        sense-key specific and stream commands descriptors that apply."""
        descs = bytearray()
        if self.information is not None:
            descs += struct.pack(">BBBxQ", 0x00, 0x0A, 0x80, self.information & (2**64 - 1))
        if self.command_specific:
            descs += struct.pack(">BBxxQ", 0x01, 0x0A, self.command_specific)
        if self.sense_key_specific is not None:
            descs += struct.pack(">BBxx3sx", 0x02, 0x06, self.sense_key_specific)
        if self.filemark or self.eom or self.ili:
            bits = (0x80 if self.filemark else 0) | (0x40 if self.eom else 0) | (
                0x20 if self.ili else 0
            )
            descs += struct.pack(">BBxB", 0x04, 0x02, bits)
        if self.vendor:
            vendor = self.vendor[:VENDOR_MAX - 2]
            descs += struct.pack(">BB", VENDOR_DESCRIPTOR, len(vendor)) + vendor
        head = struct.pack(
            ">BBBBxxxB",
            DESCRIPTOR_DEFERRED if self.deferred else DESCRIPTOR_CURRENT,
            int(self.key),
            self.asc >> 8,
            self.asc & 0xFF,
            len(descs),
        )
        return head + bytes(descs)

    def encode(self, *, descriptor: bool = False) -> bytes:
        return self.descriptor() if descriptor else self.fixed()

    # --- parsing (used by tests and the initiator tool) -----------------------------
    @classmethod
    def parse(cls, buf: bytes | memoryview) -> SenseData:
        """Decode fixed or descriptor format sense data."""
        buf = bytes(buf)
        if len(buf) < 8:
            raise SenseFormatError(f"sense data too short: {len(buf)} bytes")
        code = buf[0] & 0x7F
        if code in (FIXED_CURRENT, FIXED_DEFERRED):
            if len(buf) < 14:
                raise SenseFormatError(f"fixed sense too short: {len(buf)} bytes")
            sks = buf[15:18] if len(buf) >= 18 and buf[15] & 0x80 else None
            return cls(
                vendor=buf[FIXED_LENGTH:8 + buf[7]],
                key=SenseKey(buf[2] & 0x0F),
                asc=buf[12] << 8 | buf[13],
                information=struct.unpack_from(">I", buf, 3)[0] if buf[0] & 0x80 else None,
                command_specific=struct.unpack_from(">I", buf, 8)[0],
                sense_key_specific=sks,
                filemark=bool(buf[2] & 0x80),
                eom=bool(buf[2] & 0x40),
                ili=bool(buf[2] & 0x20),
                deferred=code == FIXED_DEFERRED,
            )
        if code in (DESCRIPTOR_CURRENT, DESCRIPTOR_DEFERRED):
            fields: dict[str, Any] = {}
            end = min(len(buf), 8 + buf[7])
            pos = 8
            while pos + 2 <= end:
                dtype, dlen = buf[pos], buf[pos + 1]
                body = buf[pos + 2 : pos + 2 + dlen]
                if dtype == 0x00 and len(body) >= 10 and body[0] & 0x80:
                    fields["information"] = struct.unpack_from(">Q", body, 2)[0]
                elif dtype == 0x01 and len(body) >= 10:
                    fields["command_specific"] = struct.unpack_from(">Q", body, 2)[0]
                elif dtype == 0x02 and len(body) >= 5:
                    fields["sense_key_specific"] = body[2:5]
                elif dtype == VENDOR_DESCRIPTOR:
                    fields["vendor"] = body
                elif dtype == 0x04 and len(body) >= 2:
                    fields.update(
                        filemark=bool(body[1] & 0x80),
                        eom=bool(body[1] & 0x40),
                        ili=bool(body[1] & 0x20),
                    )
                pos += 2 + dlen
            return cls(
                key=SenseKey(buf[1] & 0x0F),
                asc=buf[2] << 8 | buf[3],
                deferred=code == DESCRIPTOR_DEFERRED,
                **fields,
            )
        raise SenseFormatError(f"unknown sense response code {code:#04x}")

    @property
    def information_signed(self) -> int | None:
        """The INFORMATION field as the signed residue SSC-4 reports (4.2.x)."""
        if self.information is None:
            return None
        v = self.information & 0xFFFFFFFF
        return v - (1 << 32) if v & 0x80000000 else v

    def describe(self) -> str:
        """One line for logs and the initiator tool: key, ASC/ASCQ and name."""
        return (
            f"{self.key.name.replace('_', ' ')}, ASC/ASCQ {self.asc >> 8:02X}h/"
            f"{self.asc & 0xFF:02X}h ({asc_name(self.asc)})"
        )


class SenseFormatError(LioXcopyError, ValueError):
    """Bytes that are not sense data."""


def parse_sense(raw: bytes) -> SenseData | None:
    """SenseData from an initiator's sense buffer, or None when it is empty or not
    decodable (an unknown response code, a reserved sense key: SPC-4 4.5.1)."""
    if len(raw) < 8:
        return None
    try:
        return SenseData.parse(raw)
    except ValueError:  # SenseFormatError, or a reserved sense key
        return None
