"""SPC-4 third-party copy wire formats: EXTENDED COPY (LID1 and LID4), RECEIVE COPY
RESULTS (LID1), RECEIVE COPY STATUS and DATA (LID4), COPY OPERATION ABORT.

Pure builders and parsers only; the copy manager decides what to do with them.
:func:`parse_extended_copy` turns a Data-Out buffer into an
:class:`ExtendedCopyParameterList` or raises the ILLEGAL REQUEST that SPC-4 names,
with a field pointer into the parameter list (SPC-4 4.5.2.4.2, C/D bit clear).
Every length field is read at its full width: tcmu-runner read the 4-byte SEGMENT
DESCRIPTOR LIST LENGTH into a ``uint16_t`` (then a ``uint8_t``), so a length with
high bytes set slipped past its TOO MANY SEGMENT DESCRIPTORS check.

Clause numbers follow SPC-4 r37 for EXTENDED COPY (6.4.3 shared parameter list
fields, 6.4.5 CSCD descriptors, 6.4.6 segment descriptors, 6.5 EXTENDED COPY(LID1))
and SPC-4 r31 for RECEIVE COPY RESULTS (6.18; r37 and SPC-5 split it into RECEIVE
COPY STATUS(LID1), RECEIVE COPY OPERATING PARAMETERS and RECEIVE COPY FAILURE
DETAILS(LID1) with the same bytes). Offsets were checked against T10 draft text
(SPC-5 tables 129, 132, 136-140, 147-152, 172, 244, 246, 253, 254; SPC-4 r31/r37
as quoted by LIO and tcmu-runner) and against code that encodes or decodes them:

* header (16 bytes): sg3_utils ``sg_xcopy.c`` ``scsi_extended_copy``; libiscsi
  ``test-tool/iscsi-support.c`` ``populate_param_header``; QEMU ``block/iscsi.c``
  ``iscsi_xcopy_populate_header``; FreeBSD ``scsi_all.h``
  ``scsi_extended_copy_lid1_data``; Linux ``target_core_xcopy.c``
  ``target_parse_xcopy_cmd``.
* E4h CSCD (32 bytes): sg_xcopy ``desc_from_vpd_id``; libiscsi ``populate_tgt_desc``;
  QEMU ``iscsi_populate_target_desc``; FreeBSD ``scsi_ec_cscd_id`` and
  ``scsi_ec_cscd_dtsp`` (FIXED 01h, PAD 04h in byte 28); python-scsi
  ``scsi_cdb_extended_copy_spc4.py``; Linux ``target_xcopy_parse_tiddesc_e4``.
* segment 02h: sg_xcopy ``scsi_encode_seg_desc``; libiscsi ``populate_seg_desc_b2b``;
  QEMU ``iscsi_xcopy_populate_desc``; FreeBSD ``scsi_ec_segment_b2b``; Linux
  ``target_xcopy_parse_segdesc_02``; tcmu-runner ``xcopy_parse_segment_descs``.
* segments 00h/01h/03h: SPC-5 tables 149, 150, 152; python-scsi (00h/01h offsets);
  libiscsi ``get_desc_len`` (descriptor lengths 14h, 14h, 18h, 10h).
* EXTENDED COPY(LID4) header, RECEIVE COPY STATUS(LID4) and RECEIVE COPY DATA(LID4)
  (SPC-4 r37 6.4.2 table 126, 6.20 table 240, 6.24 tables 248-251): FreeBSD
  ``scsi_extended_copy_lid4_data`` and ``scsi_receive_copy_status_lid4_data`` with
  ``ctl_extended_copy_lid4`` and ``ctl_receive_copy_status_lid4`` in ``ctl_tpc.c``.
  (sg3_utils ``sg_copy_results`` 1.26 sends only the LID1 service actions 00h-04h.)
* RECEIVE COPY RESULTS CDB and data: sg3_utils ``sg_ll_receive_copy_results`` and
  ``sg_copy_results.c``; FreeBSD ``scsi_receive_copy_*`` structs and ``ctl_tpc.c``;
  Linux ``target_rcr_operating_parameters``; libiscsi ``scsi_copy_results_*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Self, cast

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi.cdb import Cdb, bitfield
from lio_xcopy.scsi.errors import (
    IllegalRequest,
    InvalidFieldInParameterList,
    ParameterListLengthError,
)
from lio_xcopy.scsi.layout import Layout
from lio_xcopy.scsi.sense import Asc, SenseData
from lio_xcopy.scsi.spc import Designator

# --- CDB layouts -------------------------------------------------------------------------


class ExtendedCopyLid1(
    Cdb, name="EXTENDED COPY (LID1)", opcode=0x83, length=16, clause="SPC-4 6.5",
    service_action=0x00, data_out=True,
):
    parameter_list_length: int = bitfield(10, 32)


class ExtendedCopyLid4(
    Cdb, name="EXTENDED COPY (LID4)", opcode=0x83, length=16, clause="SPC-4 6.4.1",
    service_action=0x01, data_out=True,
):
    parameter_list_length: int = bitfield(10, 32)


class CopyOperationAbort(
    Cdb, name="COPY OPERATION ABORT", opcode=0x83, length=16, clause="SPC-4 6.3",
    service_action=0x1C,
):
    list_identifier: int = bitfield(2, 32)


class ReceiveCopyResultsCopyStatus(
    Cdb, name="RECEIVE COPY RESULTS (COPY STATUS)", opcode=0x84, length=16,
    clause="SPC-4 6.18.3 (r31)", service_action=0x00,
):
    list_identifier: int = bitfield(2, 8)
    allocation_length: int = bitfield(10, 32)


class ReceiveCopyResultsReceiveData(
    Cdb, name="RECEIVE COPY RESULTS (RECEIVE DATA)", opcode=0x84, length=16,
    clause="SPC-4 6.18.2 (r31)", service_action=0x01,
):
    list_identifier: int = bitfield(2, 8)
    allocation_length: int = bitfield(10, 32)


class ReceiveCopyResultsOperatingParameters(
    Cdb, name="RECEIVE COPY RESULTS (OPERATING PARAMETERS)", opcode=0x84, length=16,
    clause="SPC-4 6.18.4 (r31)", service_action=0x03,
):
    allocation_length: int = bitfield(10, 32)


class ReceiveCopyResultsFailedSegmentDetails(
    Cdb, name="RECEIVE COPY RESULTS (FAILED SEGMENT DETAILS)", opcode=0x84, length=16,
    clause="SPC-4 6.18.5 (r31)", service_action=0x04,
):
    list_identifier: int = bitfield(2, 8)
    allocation_length: int = bitfield(10, 32)


# RECEIVE COPY ... (LID4): 32-bit LIST IDENTIFIER in bytes 2-5, ALLOCATION LENGTH in
# 10-13 (SPC-4 tables 239, 247).
class ReceiveCopyStatusLid4(
    Cdb, name="RECEIVE COPY STATUS (LID4)", opcode=0x84, length=16, clause="SPC-4 6.24",
    service_action=0x05,
):
    list_identifier: int = bitfield(2, 32)
    allocation_length: int = bitfield(10, 32)


class ReceiveCopyDataLid4(
    Cdb, name="RECEIVE COPY DATA (LID4)", opcode=0x84, length=16, clause="SPC-4 6.20",
    service_action=0x06,
):
    list_identifier: int = bitfield(2, 32)
    allocation_length: int = bitfield(10, 32)


#: The third-party copy commands with a 32-bit list identifier that read a copy's results.
RECEIVE_COPY_LID4 = (ReceiveCopyStatusLid4, ReceiveCopyDataLid4)
#: Vendor specific (SPC-4 4.3.4: opcodes C0h-FFh; group 6 is a 10-byte CDB): the digest
#: (XXH3-128 or SHA-256, :class:`DigestAlgorithm`) of the bytes a copy moved, so a backup
#: can be verified without the data crossing the initiator. Data: :class:`CopyDigest`.


class ReceiveCopyDigest(
    Cdb, name="RECEIVE COPY DIGEST (lio-xcopy)", opcode=0xC5, length=10,
    clause="vendor specific, docs/copy-digest.md",
):
    list_identifier: int = bitfield(2, 8)
    allocation_length: int = bitfield(5, 32)


#: The RECEIVE COPY RESULTS service actions we answer (01h returns the held data of the
#: segment types 0Bh-0Fh).
RECEIVE_COPY_RESULTS = (
    ReceiveCopyResultsCopyStatus,
    ReceiveCopyResultsReceiveData,
    ReceiveCopyResultsOperatingParameters,
    ReceiveCopyResultsFailedSegmentDetails,
)

# --- parameter list constants --------------------------------------------------------------
HEADER_LENGTH = 16
CSCD_LENGTH = 32
IDENTIFICATION_CSCD = 0xE4  # SPC-4 6.4.5.6 Identification Descriptor CSCD descriptor
ROD_CSCD = 0xFE  # SPC-4 6.4.5.9 ROD CSCD descriptor
MAX_DESIGNATOR_LENGTH = 20

#: PERIPHERAL DEVICE TYPE values with device type specific parameters (SPC-4 6.4.5.1).
BLOCK_DEVICE_TYPES = frozenset({0x00, 0x04, 0x05, 0x07, 0x0E})
SEQUENTIAL_ACCESS = 0x01
PROCESSOR = 0x03

# CSCD descriptor ID values, SPC-4 r37 table 150 (SPC-5 table 148)
MAX_CSCD_INDEX = 0x07FF  # 0000h-07FFh: the CSCD descriptor at 16 + 32 * id
CSCD_ID_NULL_BLOCK = 0xC000  # a null logical unit of peripheral device type 00h
CSCD_ID_NULL_STREAM = 0xC001  # a null logical unit of peripheral device type 01h
CSCD_ID_ROD = 0xF800  # only valid in a ROD CSCD descriptor: elsewhere it is unreachable
CSCD_ID_LOCAL = 0xFFFF  # the logical unit that received the EXTENDED COPY command
SPECIAL_CSCD_IDS = frozenset({CSCD_ID_NULL_BLOCK, CSCD_ID_NULL_STREAM, CSCD_ID_ROD, CSCD_ID_LOCAL})


class ListIdUsage(IntEnum):
    """LIST ID USAGE for EXTENDED COPY(LID1), SPC-4 6.4.3.2 (01b is reserved). In
    SPC-2 bit 4 was NRCR (no RECEIVE COPY RESULTS), hence 10b = results not held."""

    HOLD = 0b00  # held data retained for RECEIVE COPY RESULTS
    DISCARD = 0b10  # list identifier used, held data may be discarded
    NO_LIST_ID = 0b11  # LIST IDENTIFIER must be zero (needs SNLID)


class CopyCommandStatus(IntEnum):
    """COPY MANAGER STATUS of the COPY STATUS data, SPC-4 r31 6.18.3 (SPC-5 table 254)."""

    IN_PROGRESS = 0x00
    COMPLETED = 0x01
    COMPLETED_WITH_ERRORS = 0x02


class TransferCountUnits(IntEnum):
    """TRANSFER COUNT UNITS, SPC-5 table 251: a power of 1024, or destination blocks."""

    BYTES = 0x00
    KIBIBYTES = 0x01
    MEBIBYTES = 0x02
    GIBIBYTES = 0x03
    TEBIBYTES = 0x04
    PEBIBYTES = 0x05
    EXBIBYTES = 0x06
    BLOCKS = 0xF1  # block size of the copy destination


class XcopyFormatError(LioXcopyError, ValueError):
    """Bytes that are not RECEIVE COPY RESULTS parameter data (initiator side)."""


def _fits(name: str, value: int, bits: int) -> int:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name}={value} does not fit {bits} bits")
    return value


# --- copy manager limits ---------------------------------------------------------------------
#: Segment descriptor type codes this module parses and the copy manager runs (SPC-4
#: 6.4.6): 00h-03h and their held-data forms 0Bh-0Eh, 04h inline->stream, 05h
#: embedded->stream, 06h stream->discard and its held-data form 0Fh, 07h verify CSCD,
#: 08h-0Ah the byte-offset forms, 10h write filemarks, 11h space, 12h locate, 13h tape
#: device image copy. OPERATING PARAMETERS lists them; any other type (14h and up) is
#: UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
SEGMENT_TYPES = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
                 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13)
#: MAXIMUM INLINE DATA LENGTH we report and accept (SPC-4 r31 6.18.4): room for tape
#: labels and a backup application's headers, carried by 04h segments.
MAX_INLINE_DATA = 1 << 16
#: HELD DATA LIMIT we report (SPC-4 r31 6.18.4): the bytes of held data (segments
#: 0Bh-0Fh) each copy keeps for RECEIVE DATA; beyond it the oldest bytes are discarded
#: and HDD is set in its COPY STATUS.
HELD_DATA_LIMIT = 1 << 18


@dataclass(frozen=True, slots=True)
class Limits:
    """What the copy manager accepts; reported by OPERATING PARAMETERS (SPC-4 r31 6.18.4)."""

    max_cscd: int = 64
    max_segments: int = 256
    max_descriptor_list_length: int = (64 + 256) * 32
    max_segment_length: int = 1 << 30  # bytes written by one segment; 0 = no limit
    max_inline_data: int = MAX_INLINE_DATA  # INLINE DATA LENGTH (04h segments' data)
    held_data_limit: int = HELD_DATA_LIMIT  # bytes of held data kept per copy (0Bh-0Fh)
    max_stream_transfer: int = 0xFFFFFF  # largest 24-bit tape TRANSFER LENGTH
    total_concurrent_copies: int = 16
    max_concurrent_copies: int = 16
    data_segment_granularity: int = 0  # log2 bytes
    inline_data_granularity: int = 0
    held_data_granularity: int = 0
    snlid: bool = True  # LIST ID USAGE 11b accepted
    segment_types: tuple[int, ...] = SEGMENT_TYPES

    def __post_init__(self) -> None:
        for name, bits in (
            ("max_cscd", 16), ("max_segments", 16), ("max_descriptor_list_length", 32),
            ("max_segment_length", 32), ("max_inline_data", 32), ("held_data_limit", 32),
            ("max_stream_transfer", 32), ("total_concurrent_copies", 16),
            ("max_concurrent_copies", 8), ("data_segment_granularity", 8),
            ("inline_data_granularity", 8), ("held_data_granularity", 8),
        ):
            _fits(name, getattr(self, name), bits)
        if not set(self.segment_types) <= set(SEGMENT_TYPES):
            raise ValueError(f"segment types {self.segment_types} beyond {SEGMENT_TYPES}")
        if self.snlid and self.total_concurrent_copies < self.max_concurrent_copies:
            raise ValueError("TOTAL CONCURRENT COPIES must be >= MAXIMUM CONCURRENT COPIES")

    @property
    def implemented_descriptor_types(self) -> tuple[int, ...]:
        """Segment and CSCD type codes, ascending (SPC-4 r31 6.18.4)."""
        return tuple(sorted({*self.segment_types, IDENTIFICATION_CSCD, ROD_CSCD}))


# --- parameter list header, SPC-4 6.5 table (SPC-5 table 172) ---------------------------------
#: Byte 1 of either header: STR, LIST ID USAGE, PRIORITY (SPC-4 6.4.3.1 to 6.4.3.3).
_LIST_FLAGS = {"sequential_striped": bitfield(1, 1, lsb=5),
               "list_id_usage": bitfield(1, 2, lsb=3), "priority": bitfield(1, 3)}
#: The three list lengths each header carries, in this order (SPC-4 6.4.3.4 to 6.4.3.6).
_LIST_LENGTHS = ("cscd_list_length", "segment_list_length", "inline_length")
HEADER_LAYOUT = Layout(
    "EXTENDED COPY (LID1) parameter list header", HEADER_LENGTH,
    list_identifier=bitfield(0), **_LIST_FLAGS, cscd_list_length=bitfield(2, 16),
    segment_list_length=bitfield(8, 32), inline_length=bitfield(12, 32),
)


@dataclass(frozen=True, slots=True)
class ParameterListHeader:
    """Bytes 0-1 of the EXTENDED COPY(LID1) parameter list; the three list lengths
    (bytes 2-3, 8-11, 12-15) are written by :meth:`encode` from the lists themselves."""

    list_identifier: int = 0
    list_id_usage: int = ListIdUsage.NO_LIST_ID
    priority: int = 1  # SPC-4 6.4.3.3: 0 highest; other commands run at 1
    sequential_striped: bool = False  # STR, SPC-4 6.4.3.1

    LENGTH: ClassVar[int] = HEADER_LENGTH
    NAME: ClassVar[str] = "EXTENDED COPY (LID1)"
    SERVICE_ACTION: ClassVar[int] = 0x00
    LAYOUT: ClassVar[Layout] = HEADER_LAYOUT
    #: the bytes of the CSCD DESCRIPTOR, SEGMENT DESCRIPTOR and INLINE DATA LENGTH fields
    LENGTH_FIELDS: ClassVar[tuple[int, int, int]] = (
        HEADER_LAYOUT.offset("cscd_list_length"), HEADER_LAYOUT.offset("segment_list_length"),
        HEADER_LAYOUT.offset("inline_length"))
    immed: ClassVar[bool] = False  # no IMMED bit: the copy runs in the foreground

    def encode(self, cscd_list_length: int, segment_list_length: int, inline_length: int) -> bytes:
        return _encode_header(self, {"list_identifier": self.list_identifier},
                              (cscd_list_length, segment_list_length, inline_length))

    def describe(self) -> str:
        return _header_text(self, 2)


def _encode_header(header: ParameterListHeader | Lid4Header, values: dict[str, int],
                   lengths: tuple[int, int, int]) -> bytes:
    """Either header from its table: ``values``, byte 1's flags and the list lengths."""
    values = {**values, "list_id_usage": header.list_id_usage, "priority": header.priority,
              "sequential_striped": header.sequential_striped}
    values.update(zip(_LIST_LENGTHS, lengths, strict=True))
    return bytes(header.LAYOUT.encode(values))


def _header_text(header: ParameterListHeader | Lid4Header, digits: int) -> str:
    try:
        usage = ListIdUsage(header.list_id_usage).name
    except ValueError:
        usage = f"reserved {header.list_id_usage:02b}b"
    return (f"list id {header.list_identifier:#0{digits + 2}x} ({usage}), priority "
            f"{header.priority}" + (", STR" if header.sequential_striped else "")
            + (", IMMED" if header.immed else ""))


# --- EXTENDED COPY(LID4) parameter list header, SPC-4 6.4.2 table 126 -------------------------
LID4_HEADER_LENGTH = 48
LID4_LIST_FORMAT = 0x01  # PARAMETER LIST FORMAT (table 127)
LID4_HEADER_CSCD_LIST_LENGTH = 0x0020  # one SPC-3 target descriptor's room
LID4_HEADER_CSCD_TYPE_CODE = 0xFF  # the CSCD descriptor extension code, invalid as a CSCD
LID4_HEADER_LAYOUT = Layout(
    "EXTENDED COPY (LID4) parameter list header", LID4_HEADER_LENGTH,
    list_format=bitfield(0), **_LIST_FLAGS, header_cscd_list_length=bitfield(2, 16),
    g_sense=bitfield(15, 1, lsb=1), immed=bitfield(15, 1),
    header_cscd_type_code=bitfield(16), list_identifier=bitfield(20, 32),
    cscd_list_length=bitfield(42, 16), segment_list_length=bitfield(44, 16),
    inline_length=bitfield(46, 16),
)


@dataclass(frozen=True, slots=True)
class Lid4Header:
    """The 48-byte header of the EXTENDED COPY(LID4) parameter list, SPC-4 6.4.2 table
    126: byte 0 PARAMETER LIST FORMAT (01h), byte 1 STR, LIST ID USAGE and PRIORITY as
    in LID1, 2-3 HEADER CSCD DESCRIPTOR LIST LENGTH (0020h), byte 15 G_SENSE (bit 1) and
    IMMED (bit 0), byte 16 HEADER CSCD DESCRIPTOR TYPE CODE (FFh), 20-23 LIST
    IDENTIFIER, 42-43 CSCD DESCRIPTOR LIST LENGTH, 44-45 SEGMENT DESCRIPTOR LIST LENGTH,
    46-47 INLINE DATA LENGTH; the CSCD descriptors start at byte 48 (CSCD ID 0). Bytes
    2-47 stand, for an SPC-3 copy manager, where a 16-byte header and one invalid target
    descriptor would be. FreeBSD's ``scsi_extended_copy_lid4_data`` has the same
    offsets. The three list lengths are written by :meth:`encode`."""

    list_identifier: int = 0
    list_id_usage: int = ListIdUsage.HOLD
    priority: int = 1
    sequential_striped: bool = False
    immed: bool = False  # SPC-4 5.17.4.3: GOOD once the list is checked, copy in background
    g_sense: bool = False  # GOOD with sense data (COMPLETED, EXTENDED COPY INFORMATION ...)

    LENGTH: ClassVar[int] = LID4_HEADER_LENGTH
    NAME: ClassVar[str] = "EXTENDED COPY (LID4)"
    SERVICE_ACTION: ClassVar[int] = 0x01
    LAYOUT: ClassVar[Layout] = LID4_HEADER_LAYOUT
    LENGTH_FIELDS: ClassVar[tuple[int, int, int]] = (
        LID4_HEADER_LAYOUT.offset("cscd_list_length"),
        LID4_HEADER_LAYOUT.offset("segment_list_length"),
        LID4_HEADER_LAYOUT.offset("inline_length"))

    def encode(self, cscd_list_length: int, segment_list_length: int, inline_length: int) -> bytes:
        return _encode_header(self, {
            "list_format": LID4_LIST_FORMAT,
            "header_cscd_list_length": LID4_HEADER_CSCD_LIST_LENGTH,
            "g_sense": self.g_sense, "immed": self.immed,
            "header_cscd_type_code": LID4_HEADER_CSCD_TYPE_CODE,
            "list_identifier": self.list_identifier,
        }, (cscd_list_length, segment_list_length, inline_length))

    def describe(self) -> str:
        return _header_text(self, 8) + (", G_SENSE" if self.g_sense else "")


# --- CSCD descriptors, SPC-4 6.4.5 ------------------------------------------------------------
#: Identification Descriptor CSCD descriptor (E4h), SPC-4 6.4.5.6 table 141 with the
#: device type specific parameters of 6.4.5.3-6.4.5.5 (tables 136-138) in bytes 28-31.
IDENTIFICATION_CSCD_LAYOUT = Layout(
    "Identification Descriptor CSCD descriptor", CSCD_LENGTH,
    type_code=bitfield(0), lu_id_type=bitfield(1, 2, lsb=6), nul=bitfield(1, 1, lsb=5),
    peripheral_device_type=bitfield(1, 5), relative_initiator_port=bitfield(2, 16),
    code_set=bitfield(4, 4), association=bitfield(5, 2, lsb=4),
    designator_type=bitfield(5, 4), designator_length=bitfield(7),
    designator=bitfield(8, 8 * MAX_DESIGNATOR_LENGTH), pad=bitfield(28, 1, lsb=2),
    fixed=bitfield(28, 1), block_length=bitfield(29, 24),
)


@dataclass(frozen=True, slots=True)
class IdentificationCscd:
    """Identification Descriptor CSCD descriptor (E4h), SPC-4 6.4.5.6, with the device
    type specific parameters of 6.4.5.3 (block: PAD, DISK BLOCK LENGTH), 6.4.5.4
    (sequential-access: PAD, FIXED, STREAM BLOCK LENGTH) or 6.4.5.5 (processor: PAD)
    in bytes 28-31. ``block_length`` is the DISK or STREAM BLOCK LENGTH (bytes 29-31,
    reserved for a processor); zero on a disk means "ask READ CAPACITY". sg_xcopy
    leaves byte 1 zero, so a tape it names arrives with PERIPHERAL DEVICE TYPE 00h and
    its block size as DISK BLOCK LENGTH."""

    designator: bytes  # DESIGNATOR (at most 20 bytes; zero padded on the wire)
    peripheral_device_type: int = 0x00
    code_set: int = 1  # binary
    designator_type: int = 3  # NAA
    association: int = 0  # logical unit
    block_length: int = 0
    pad: bool = False
    fixed: bool = False  # sequential-access only
    relative_initiator_port: int = 0
    lu_id_type: int = 0  # ignored in E4h (SPC-4 6.4.5.6)
    nul: bool = False  # byte 1 bit 5: NUL in SPC-3, obsolete since

    TYPE_CODE: ClassVar[int] = IDENTIFICATION_CSCD
    LAYOUT: ClassVar[Layout] = IDENTIFICATION_CSCD_LAYOUT

    @property
    def is_block(self) -> bool:
        return self.peripheral_device_type in BLOCK_DEVICE_TYPES

    @property
    def is_stream(self) -> bool:
        return self.peripheral_device_type in (SEQUENTIAL_ACCESS, PROCESSOR)

    @classmethod
    def from_designator(
        cls, d: Designator, peripheral_device_type: int, block_length: int = 0, *,
        pad: bool = False, fixed: bool = False,
    ) -> Self:
        """The CSCD naming the logical unit that reports ``d`` in its VPD page 83h."""
        return cls(
            d.value, peripheral_device_type, d.code_set, d.designator_type, d.association,
            block_length, pad, fixed,
        )

    def identifies(self, d: Designator) -> bool:
        """True when designator ``d`` (from a Device Identification page) is this one."""
        return (d.code_set, d.designator_type, d.association, bytes(d.value)) == (
            self.code_set, self.designator_type, self.association, bytes(self.designator)
        )

    def encode(self) -> bytes:
        if len(self.designator) > MAX_DESIGNATOR_LENGTH:
            raise ValueError(f"designator of {len(self.designator)} bytes (at most 20)")
        if self.fixed and self.peripheral_device_type != SEQUENTIAL_ACCESS:
            raise ValueError("FIXED is defined for sequential-access CSCDs only")
        designator = bytes(self.designator)
        return bytes(self.LAYOUT.encode({
            "type_code": IDENTIFICATION_CSCD, "lu_id_type": self.lu_id_type,
            "nul": self.nul, "peripheral_device_type": self.peripheral_device_type,
            "relative_initiator_port": self.relative_initiator_port,
            "code_set": self.code_set, "association": self.association,
            "designator_type": self.designator_type, "designator_length": len(designator),
            "designator": int.from_bytes(designator.ljust(MAX_DESIGNATOR_LENGTH, b"\0"), "big"),
            "pad": self.pad, "fixed": self.fixed, "block_length": self.block_length,
        }))

    def describe(self) -> str:
        kind = (
            "block" if self.is_block else "tape" if self.peripheral_device_type == 1
            else "processor" if self.peripheral_device_type == 3 else "reserved type"
        )
        flags = ("PAD " if self.pad else "") + ("FIXED " if self.fixed else "")
        return (
            f"E4h designator type {self.designator_type} code set {self.code_set} "
            f"assoc {self.association}: {bytes(self.designator).hex()}; "
            f"{kind} (PDT {self.peripheral_device_type:02X}h), {flags}block length "
            f"{self.block_length}"
        )


ROD_CSCD_LAYOUT = Layout(
    "ROD CSCD descriptor", CSCD_LENGTH,
    type_code=bitfield(0), peripheral_device_type=bitfield(1, 5),
    relative_initiator_port=bitfield(2, 16), producer=bitfield(4, 16),
    rod_type=bitfield(8, 32), lifetime=bitfield(12, 32), inactivity_timeout=bitfield(16, 32),
    r_token=bitfield(22, 1), del_tkn=bitfield(23, 1), rod_token_offset=bitfield(24, 32),
    device_type_specific=bitfield(28, 32),
)


@dataclass(frozen=True, slots=True)
class RodCscd:
    """ROD CSCD descriptor (FEh), SPC-4 6.4.5.9 table 143: 1 PERIPHERAL DEVICE TYPE, 2-3
    RELATIVE INITIATOR PORT IDENTIFIER, 4-5 ROD PRODUCER CSCD DESCRIPTOR ID, 8-11 ROD
    TYPE, 12-15 REQUESTED ROD TOKEN LIFETIME, 16-19 REQUESTED ROD TOKEN INACTIVITY
    TIMEOUT, 22 bit 0 R_TOKEN, 23 bit 0 DEL_TKN, 24-27 ROD TOKEN OFFSET, 28-31 the device
    type specific parameters. With ROD TYPE zero it names the ROD a ROD token represents;
    the token is in the inline data, ROD TOKEN OFFSET bytes into it. This copy manager
    takes only that form (it populates no ROD during an EXTENDED COPY)."""

    rod_token_offset: int = 0
    rod_type: int = 0
    producer: int = CSCD_ID_LOCAL  # ROD PRODUCER CSCD DESCRIPTOR ID
    del_tkn: bool = False
    peripheral_device_type: int = 0  # ignored with ROD TYPE zero
    lifetime: int = 0
    inactivity_timeout: int = 0
    r_token: bool = False
    relative_initiator_port: int = 0
    device_type_specific: bytes = bytes(4)

    TYPE_CODE: ClassVar[int] = ROD_CSCD
    LAYOUT: ClassVar[Layout] = ROD_CSCD_LAYOUT

    def encode(self) -> bytes:
        if len(self.device_type_specific) != 4:
            raise ValueError("device type specific parameters are 4 bytes")
        return bytes(self.LAYOUT.encode({
            "type_code": ROD_CSCD, "peripheral_device_type": self.peripheral_device_type,
            "relative_initiator_port": self.relative_initiator_port,
            "producer": self.producer, "rod_type": self.rod_type, "lifetime": self.lifetime,
            "inactivity_timeout": self.inactivity_timeout, "r_token": self.r_token,
            "del_tkn": self.del_tkn, "rod_token_offset": self.rod_token_offset,
            "device_type_specific": int.from_bytes(self.device_type_specific, "big"),
        }))

    @classmethod
    def parse(cls, buf: memoryview, off: int, inline_length: int) -> Self:
        """The descriptor at ``off``, checked as SPC-4 6.4.5.9 asks: a ROD TYPE other
        than zero (a ROD to populate), R_TOKEN, a token lifetime or inactivity timeout
        without R_TOKEN, or a ROD token not wholly inside the inline data are INVALID
        FIELD IN PARAMETER LIST at the field."""
        f = cls.LAYOUT.decode(buf, off)

        def invalid(name: str, message: str) -> InvalidFieldInParameterList:
            byte, bit = cls.LAYOUT.pointer(name)
            return InvalidFieldInParameterList(off + byte, bit, message)

        if f["rod_type"]:
            raise invalid("rod_type", f"ROD TYPE {f['rod_type']:#010x}: no ROD is populated here")
        if f["r_token"]:
            raise invalid("r_token", "R_TOKEN: no ROD token is made here")
        for name in ("lifetime", "inactivity_timeout"):
            if f[name]:
                raise invalid(name, "a ROD token lifetime without R_TOKEN")
        offset = f["rod_token_offset"]
        if offset + ROD_TOKEN_BYTES > inline_length:
            raise invalid("rod_token_offset",
                          f"ROD TOKEN OFFSET {offset} with {inline_length} bytes of inline data")
        return cls(offset, f["rod_type"], f["producer"], bool(f["del_tkn"]),
                   f["peripheral_device_type"], f["lifetime"], f["inactivity_timeout"],
                   bool(f["r_token"]), f["relative_initiator_port"],
                   f["device_type_specific"].to_bytes(4, "big"))

    def describe(self) -> str:
        return (f"FEh ROD: the ROD token at inline byte {self.rod_token_offset}"
                + (", DEL_TKN" if self.del_tkn else ""))


ROD_TOKEN_BYTES = 512  # SPC-4 5.17.6.1: a ROD token as the inline data carries it
#: A CSCD descriptor of either kind this copy manager takes
Cscd = IdentificationCscd | RodCscd


def _parse_cscd(buf: memoryview, off: int, inline_length: int = 0) -> Cscd:
    """One CSCD descriptor at parameter list offset ``off`` (32 bytes available)."""
    if buf[off] == ROD_CSCD:
        return RodCscd.parse(buf, off, inline_length)
    layout = IDENTIFICATION_CSCD_LAYOUT
    f = layout.decode(buf, off)

    def invalid(name: str, message: str) -> InvalidFieldInParameterList:
        byte, bit = layout.pointer(name)
        return InvalidFieldInParameterList(off + byte, bit, message)

    if f["type_code"] != IDENTIFICATION_CSCD:
        raise IllegalRequest(
            Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, off + layout.offset("type_code"),
            in_cdb=False, message=f"CSCD descriptor type {f['type_code']:#04x} at byte {off}",
        )
    pdt = f["peripheral_device_type"]
    if pdt not in BLOCK_DEVICE_TYPES and pdt not in (SEQUENTIAL_ACCESS, PROCESSOR):
        raise invalid("peripheral_device_type", f"reserved peripheral device type {pdt:#x}")
    dlen = f["designator_length"]
    if dlen > MAX_DESIGNATOR_LENGTH:
        raise invalid("designator_length", f"designator length {dlen} > 20")
    block_length = f["block_length"]
    fixed = False
    if pdt == SEQUENTIAL_ACCESS:
        # SPC-4 6.4.5.4 table "Stream device transfer lengths": FIXED and STREAM BLOCK
        # LENGTH must agree (both set or both clear)
        fixed = bool(f["fixed"])
        if fixed != (block_length != 0):
            raise invalid("block_length",
                          f"FIXED={int(fixed)} with STREAM BLOCK LENGTH {block_length}")
    designator = f["designator"].to_bytes(MAX_DESIGNATOR_LENGTH, "big")
    return IdentificationCscd(
        designator=designator[:dlen],
        peripheral_device_type=pdt,
        code_set=f["code_set"],
        designator_type=f["designator_type"],
        association=f["association"],
        block_length=block_length,
        pad=bool(f["pad"]),
        fixed=fixed,
        relative_initiator_port=f["relative_initiator_port"],
        lu_id_type=f["lu_id_type"],
        nul=bool(f["nul"]),
    )


# --- segment descriptors, SPC-4 6.4.6 ----------------------------------------------------------
#: The bytes every segment descriptor starts with (SPC-4 6.4.6.1 table 131): type code,
#: CAT (byte 1 bit 0), DESCRIPTOR LENGTH (the bytes after byte 3), SOURCE and
#: DESTINATION CSCD DESCRIPTOR ID. DC (byte 1 bit 1) is 02h's alone.
SEGMENT_HEADER = Layout(
    "segment descriptor header", 8,
    type_code=bitfield(0), cat=bitfield(1, 1), descriptor_length=bitfield(2, 16),
    source=bitfield(4, 16), destination=bitfield(6, 16),
)
#: The header of a descriptor that names only a destination (04h, 05h; 10h-12h have
#: no CAT either): bytes 4-5 are reserved.
_TO_STREAM_HEADER = Layout(
    "segment descriptor header (destination only)", 8,
    type_code=bitfield(0), cat=bitfield(1, 1), descriptor_length=bitfield(2, 16),
    destination=bitfield(6, 16),
)
_TAPE_OPERATION_HEADER = Layout(
    "segment descriptor header (tape operation)", 8,
    type_code=bitfield(0), descriptor_length=bitfield(2, 16), destination=bitfield(6, 16),
)
#: Fields the descriptor's class supplies itself rather than an attribute.
_CLASS_FIELDS = frozenset({"type_code", "descriptor_length"})


class SegmentDescriptor:
    """Common header (SPC-4 6.4.6.1): type code, DC (02h only) and CAT bits, DESCRIPTOR
    LENGTH (bytes after byte 3), SOURCE and DESTINATION CSCD DESCRIPTOR ID.

    Each type's :attr:`LAYOUT` is its field table: :meth:`encode` writes the attribute
    of each field's name (a one-bit field is a flag), :meth:`decode` reads them back,
    and :meth:`field_offset` is the byte a COPY ABORTED segment pointer names."""

    __slots__ = ()
    TYPE_CODE: ClassVar[int]
    DESCRIPTOR_LENGTH: ClassVar[int]  # the value SPC-4 requires in bytes 2-3
    SHORTHAND: ClassVar[str]
    #: the "+application client" forms (0Bh-0Fh): the data the segment processes is also
    #: held for RECEIVE COPY RESULTS RECEIVE DATA (SPC-4 6.4.6)
    HOLDS_DATA: ClassVar[bool] = False
    LAYOUT: ClassVar[Layout]

    source: int
    destination: int
    cat: bool

    @classmethod
    def size(cls) -> int:
        """Bytes of the descriptor on the wire (the shortest, for variable ones)."""
        return 4 + cls.DESCRIPTOR_LENGTH

    @classmethod
    def length_ok(cls, descriptor_length: int) -> bool:
        """Whether a DESCRIPTOR LENGTH is the one this type requires."""
        return descriptor_length == cls.DESCRIPTOR_LENGTH

    @classmethod
    def field_offset(cls, name: str) -> int:
        """The byte of field ``name`` in the descriptor (SPC-4 4.5.2.4.6 segment pointer)."""
        return cls.LAYOUT.offset(name)

    @classmethod
    def transfer_length_offset(cls, role: str = "source") -> int:
        """The byte of the STREAM DEVICE TRANSFER LENGTH the ``role`` end moves its
        records with (03h has one per end: SOURCE and DESTINATION)."""
        name = f"{role}_transfer_length"
        return cls.LAYOUT.offset(name if name in cls.LAYOUT else "stream_transfer_length")

    def wire_size(self) -> int:
        """Bytes of this descriptor on the wire."""
        return self.size()

    def cscd_ids(self) -> tuple[tuple[str, int, int], ...]:
        """(role, CSCD DESCRIPTOR ID, its byte in the descriptor) for each copy end the
        descriptor names: both for the copy segments, one for 04h-06h and 10h-12h."""
        return tuple((role, getattr(self, role), self.LAYOUT.offset(role))
                     for role in ("source", "destination") if role in self.LAYOUT)

    def _values(self, **wire: int) -> dict[str, int]:
        """The value of every field of :attr:`LAYOUT`, for :meth:`encode`: the attribute
        of the field's name unless ``wire`` gives the value on the wire."""
        values = {"type_code": self.TYPE_CODE, "descriptor_length": self.DESCRIPTOR_LENGTH}
        values.update({f.name: int(getattr(self, f.name)) for f in self.LAYOUT.fields
                       if f.name not in _CLASS_FIELDS and f.name not in wire})
        values.update(wire)
        return values

    def encode(self) -> bytes:
        return bytes(self.LAYOUT.encode(self._values()))

    @classmethod
    def _fields(cls, buf: memoryview | bytes, off: int) -> dict[str, Any]:
        """The attributes :attr:`LAYOUT` holds at ``off``."""
        return _attributes(cls.LAYOUT, buf, off)

    @classmethod
    def decode(cls, buf: memoryview | bytes, off: int = 0) -> Self:
        """The descriptor at ``off``; its DESCRIPTOR LENGTH is already checked."""
        return cls._build(buf, off)

    @classmethod
    def _build(cls, buf: memoryview | bytes, off: int) -> Self:
        built: Self = cast(Any, cls)(**cls._fields(buf, off))
        return built

    def _ids(self) -> str:
        return f"CSCD {_cscd_id_name(self.source)} -> CSCD {_cscd_id_name(self.destination)}"


def _attributes(layout: Layout, buf: memoryview | bytes, off: int) -> dict[str, Any]:
    """The fields of ``layout`` at ``off`` as a descriptor's attributes: one-bit fields
    are flags; the type code and the DESCRIPTOR LENGTH belong to the class."""
    return {name: bool(value) if layout.field(name).width == 1 else value
            for name, value in layout.decode(buf, off).items() if name not in _CLASS_FIELDS}


def _cscd_id_name(cscd_id: int) -> str:
    return {
        CSCD_ID_NULL_BLOCK: "null block (C000h)",
        CSCD_ID_NULL_STREAM: "null stream (C001h)",
        CSCD_ID_ROD: "ROD (F800h)",
        CSCD_ID_LOCAL: "local LU (FFFFh)",
    }.get(cscd_id, str(cscd_id))


@dataclass(frozen=True, slots=True)
class _BlockStream(SegmentDescriptor):
    """Bytes 8-23 of 00h and 01h (SPC-5 tables 149, 150): byte 8 reserved, 9-11 STREAM
    DEVICE TRANSFER LENGTH, 12-13 reserved, 14-15 BLOCK DEVICE NUMBER OF BLOCKS, 16-23
    BLOCK DEVICE LOGICAL BLOCK ADDRESS."""

    source: int
    destination: int
    number_of_blocks: int
    lba: int
    stream_transfer_length: int
    cat: bool = False

    DESCRIPTOR_LENGTH: ClassVar[int] = 0x14
    LAYOUT: ClassVar[Layout] = SEGMENT_HEADER.extend(
        "block<->stream", 24, stream_transfer_length=bitfield(9, 24),
        number_of_blocks=bitfield(14, 16), lba=bitfield(16, 64),
    )


@dataclass(frozen=True, slots=True)
class BlockToStream(_BlockStream):
    """Copy from block device to stream device (00h), SPC-4 6.4.6.2."""

    TYPE_CODE: ClassVar[int] = 0x00
    SHORTHAND: ClassVar[str] = "block->stream"

    def describe(self) -> str:
        return (
            f"{self.TYPE_CODE:02X}h {self.SHORTHAND}: {self.number_of_blocks} blocks from "
            f"LBA {self.lba}, "
            f"{self._ids()}, stream transfer length {self.stream_transfer_length}"
            f"{', CAT' if self.cat else ''}"
        )


@dataclass(frozen=True, slots=True)
class StreamToBlock(_BlockStream):
    """Copy from stream device to block device (01h), SPC-4 6.4.6.3."""

    TYPE_CODE: ClassVar[int] = 0x01
    SHORTHAND: ClassVar[str] = "stream->block"

    def describe(self) -> str:
        return (
            f"{self.TYPE_CODE:02X}h {self.SHORTHAND}: {self.number_of_blocks} blocks to LBA "
            f"{self.lba}, "
            f"{self._ids()}, stream transfer length {self.stream_transfer_length}"
            f"{', CAT' if self.cat else ''}"
        )


@dataclass(frozen=True, slots=True)
class BlockToBlock(SegmentDescriptor):
    """Copy from block device to block device (02h), SPC-4 6.4.6.4: bytes 8-9 reserved,
    10-11 BLOCK DEVICE NUMBER OF BLOCKS, 12-19 SOURCE and 20-27 DESTINATION BLOCK DEVICE
    LOGICAL BLOCK ADDRESS. DC set: NUMBER OF BLOCKS counts destination blocks."""

    source: int
    destination: int
    number_of_blocks: int
    source_lba: int
    destination_lba: int
    dc: bool = False
    cat: bool = False

    TYPE_CODE: ClassVar[int] = 0x02
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x18
    SHORTHAND: ClassVar[str] = "block->block"
    LAYOUT: ClassVar[Layout] = SEGMENT_HEADER.extend(
        "block->block", 28, dc=bitfield(1, 1, lsb=1), number_of_blocks=bitfield(10, 16),
        source_lba=bitfield(12, 64), destination_lba=bitfield(20, 64),
    )

    def describe(self) -> str:
        return (
            f"{self.TYPE_CODE:02X}h {self.SHORTHAND}: {self.number_of_blocks} "
            f"{'destination' if self.dc else 'source'} blocks, LBA {self.source_lba} -> "
            f"LBA {self.destination_lba}, {self._ids()}{', CAT' if self.cat else ''}"
        )


@dataclass(frozen=True, slots=True)
class StreamToStream(SegmentDescriptor):
    """Copy from stream device to stream device (03h), SPC-4 6.4.6.5: byte 8 reserved,
    9-11 SOURCE STREAM DEVICE TRANSFER LENGTH, 12 reserved, 13-15 DESTINATION STREAM
    DEVICE TRANSFER LENGTH, 16-19 BYTE COUNT."""

    source: int
    destination: int
    byte_count: int
    source_transfer_length: int
    destination_transfer_length: int
    cat: bool = False

    TYPE_CODE: ClassVar[int] = 0x03
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x10
    SHORTHAND: ClassVar[str] = "stream->stream"
    LAYOUT: ClassVar[Layout] = SEGMENT_HEADER.extend(
        "stream->stream", 20, source_transfer_length=bitfield(9, 24),
        destination_transfer_length=bitfield(13, 24), byte_count=bitfield(16, 32),
    )

    def describe(self) -> str:
        return (
            f"{self.TYPE_CODE:02X}h {self.SHORTHAND}: {self.byte_count} bytes, {self._ids()}, "
            "transfer "
            f"lengths {self.source_transfer_length}/{self.destination_transfer_length}"
            f"{', CAT' if self.cat else ''}"
        )


class _ToStream(SegmentDescriptor):
    """A descriptor naming only a destination stream device (bytes 4-5 reserved)."""

    __slots__ = ()

    @property
    def source(self) -> int:  # type: ignore[override]
        """Reserved in this descriptor: it names no copy source."""
        return CSCD_ID_LOCAL


def _to_stream(seg: InlineToStream | EmbeddedToStream) -> str:
    return (f" to CSCD {_cscd_id_name(seg.destination)}, stream transfer length "
            f"{seg.stream_transfer_length}{', CAT' if seg.cat else ''}")


@dataclass(frozen=True, slots=True)
class InlineToStream(_ToStream):
    """Inline data to stream device (04h), SPC-4 6.4.6.8: bytes 4-5 reserved, 6-7
    DESTINATION CSCD DESCRIPTOR ID, 9-11 STREAM DEVICE TRANSFER LENGTH, 12-15 reserved,
    16-19 INLINE DATA OFFSET (a multiple of four), 20-23 INLINE DATA NUMBER OF BYTES:
    that many bytes of the parameter list's inline data, from the offset, are written to
    the stream device. An offset plus count beyond INLINE DATA LENGTH is COPY ABORTED,
    INLINE DATA LENGTH EXCEEDED (checked by the copy manager)."""

    destination: int
    inline_data_offset: int
    number_of_bytes: int
    stream_transfer_length: int
    cat: bool = False

    TYPE_CODE: ClassVar[int] = 0x04
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x14
    SHORTHAND: ClassVar[str] = "inline->stream"
    LAYOUT: ClassVar[Layout] = _TO_STREAM_HEADER.extend(
        "inline->stream", 24, stream_transfer_length=bitfield(9, 24),
        inline_data_offset=bitfield(16, 32), number_of_bytes=bitfield(20, 32),
    )

    def encode(self) -> bytes:
        if self.inline_data_offset % 4:
            raise ValueError(f"INLINE DATA OFFSET {self.inline_data_offset} not a multiple of 4")
        return SegmentDescriptor.encode(self)

    @classmethod
    def decode(cls, buf: memoryview | bytes, off: int = 0) -> Self:
        offset = cls.LAYOUT.get("inline_data_offset", buf, off)
        if offset % 4:
            byte, bit = cls.LAYOUT.pointer("inline_data_offset")
            raise InvalidFieldInParameterList(
                off + byte, bit, f"INLINE DATA OFFSET {offset} not a multiple of 4")
        return cls._build(buf, off)

    def describe(self) -> str:
        return (f"04h {self.SHORTHAND}: {self.number_of_bytes} bytes of inline data from "
                f"offset {self.inline_data_offset}{_to_stream(self)}")


@dataclass(frozen=True, slots=True)
class EmbeddedToStream(_ToStream):
    """Embedded data to stream device (05h), SPC-4 6.4.6.9: bytes 4-5 reserved, 6-7
    DESTINATION CSCD DESCRIPTOR ID, 9-11 STREAM DEVICE TRANSFER LENGTH, 12-13 reserved,
    14-15 EMBEDDED DATA NUMBER OF BYTES, then the embedded data, padded so that the
    DESCRIPTOR LENGTH (12 plus the data area) is a multiple of four. ``data`` is the
    whole data area; a NUMBER OF BYTES beyond it is COPY ABORTED, INVALID FIELD IN
    PARAMETER LIST (checked by the copy manager)."""

    destination: int
    data: bytes
    stream_transfer_length: int
    number_of_bytes: int | None = None  # None: len(data)
    cat: bool = False

    TYPE_CODE: ClassVar[int] = 0x05
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x0C  # without embedded data
    SHORTHAND: ClassVar[str] = "embedded->stream"
    LAYOUT: ClassVar[Layout] = _TO_STREAM_HEADER.extend(
        "embedded->stream", 16, stream_transfer_length=bitfield(9, 24),
        number_of_bytes=bitfield(14, 16),
    )

    @classmethod
    def length_ok(cls, descriptor_length: int) -> bool:
        return descriptor_length >= cls.DESCRIPTOR_LENGTH and descriptor_length % 4 == 0

    @property
    def embedded_bytes(self) -> int:
        """EMBEDDED DATA NUMBER OF BYTES."""
        return len(self.data) if self.number_of_bytes is None else self.number_of_bytes

    @property
    def payload(self) -> bytes:
        """The bytes the segment writes (at most the data area)."""
        return bytes(self.data[: self.embedded_bytes])

    def wire_size(self) -> int:
        return self.LAYOUT.length + -(-len(self.data) // 4) * 4

    def encode(self) -> bytes:
        area = bytes(self.data) + bytes(-len(self.data) % 4)
        values = self._values(descriptor_length=self.DESCRIPTOR_LENGTH + len(area),
                              number_of_bytes=self.embedded_bytes)
        return bytes(self.LAYOUT.encode(values)) + area

    @classmethod
    def decode(cls, buf: memoryview | bytes, off: int = 0) -> Self:
        fields = cls._fields(buf, off)
        end = off + 4 + cls.LAYOUT.get("descriptor_length", buf, off)
        return cls(fields["destination"], bytes(buf[off + cls.LAYOUT.length : end]),
                   fields["stream_transfer_length"], fields["number_of_bytes"], fields["cat"])

    def describe(self) -> str:
        return (f"05h {self.SHORTHAND}: {self.embedded_bytes} bytes of embedded data"
                f"{_to_stream(self)}")


@dataclass(frozen=True, slots=True)
class StreamToDiscard(SegmentDescriptor):
    """Stream device to discard (06h), SPC-4 6.4.6.10: 4-5 SOURCE CSCD DESCRIPTOR ID,
    6-7 reserved, 9-11 STREAM DEVICE TRANSFER LENGTH, 12-15 NUMBER OF BYTES read from
    the stream device and discarded."""

    source: int
    byte_count: int
    stream_transfer_length: int
    cat: bool = False

    TYPE_CODE: ClassVar[int] = 0x06
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x0C
    SHORTHAND: ClassVar[str] = "stream->discard"
    LAYOUT: ClassVar[Layout] = Layout(
        "stream->discard", 16, type_code=bitfield(0), cat=bitfield(1, 1),
        descriptor_length=bitfield(2, 16), source=bitfield(4, 16),
        stream_transfer_length=bitfield(9, 24), byte_count=bitfield(12, 32),
    )

    @property
    def destination(self) -> int:  # type: ignore[override]
        """Reserved in this descriptor: the data goes nowhere."""
        return CSCD_ID_LOCAL

    def describe(self) -> str:
        return (
            f"{self.TYPE_CODE:02X}h {self.SHORTHAND}: {self.byte_count} bytes from CSCD "
            f"{_cscd_id_name(self.source)}, stream transfer length "
            f"{self.stream_transfer_length}{', CAT' if self.cat else ''}"
        )


class _TapeOperation(_ToStream):
    """10h-12h: DESCRIPTOR LENGTH 8, no CAT, and bytes 8-11 the bytes 1-4 (or 3-6) of
    the SSC-4 command the copy manager sends to the destination stream device."""

    __slots__ = ()
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x08

    @property
    def cat(self) -> bool:  # type: ignore[override]
        return False

    def _on(self) -> str:
        return f"CSCD {_cscd_id_name(self.destination)}"


@dataclass(frozen=True, slots=True)
class WriteFilemarks(_TapeOperation):
    """Write filemarks operation (10h), SPC-4 6.4.6.18: 6-7 DESTINATION CSCD DESCRIPTOR
    ID, then bytes 1-4 of a WRITE FILEMARKS (6) CDB (SSC-4): byte 8 WSMK (bit 1) and
    IMMED (bit 0), 9-11 TRANSFER LENGTH (the filemark count)."""

    destination: int
    count: int
    immed: bool = False
    wsmk: bool = False

    TYPE_CODE: ClassVar[int] = 0x10
    SHORTHAND: ClassVar[str] = "write filemarks"
    LAYOUT: ClassVar[Layout] = _TAPE_OPERATION_HEADER.extend(
        "write filemarks", 12, wsmk=bitfield(8, 1, lsb=1), immed=bitfield(8, 1),
        count=bitfield(9, 24),
    )

    def describe(self) -> str:
        return (f"10h {self.SHORTHAND}: {self.count} to {self._on()}"
                f"{', IMMED' if self.immed else ''}{', WSMK' if self.wsmk else ''}")


@dataclass(frozen=True, slots=True)
class Space(_TapeOperation):
    """Space operation (11h), SPC-4 6.4.6.19: 6-7 DESTINATION CSCD DESCRIPTOR ID, then
    bytes 1-4 of a SPACE (6) CDB (SSC-4): byte 8 CODE (bits 3-0), 9-11 COUNT (signed:
    negative spaces toward the beginning)."""

    destination: int
    code: int
    count: int

    TYPE_CODE: ClassVar[int] = 0x11
    SHORTHAND: ClassVar[str] = "space"
    LAYOUT: ClassVar[Layout] = _TAPE_OPERATION_HEADER.extend(
        "space", 12, code=bitfield(8, 4), count=bitfield(9, 24),
    )

    def _values(self, **wire: int) -> dict[str, int]:
        if not -(1 << 23) <= self.count < 1 << 23:
            raise ValueError(f"count={self.count} does not fit a signed 24-bit COUNT")
        return SegmentDescriptor._values(self, count=self.count & 0xFFFFFF, **wire)

    @classmethod
    def _fields(cls, buf: memoryview | bytes, off: int) -> dict[str, Any]:
        fields = _attributes(cls.LAYOUT, buf, off)
        count = fields["count"]
        fields["count"] = count - (1 << 24) if count >> 23 else count
        return fields

    def describe(self) -> str:
        what = {0: "blocks", 1: "filemarks", 3: "to end of data"}.get(
            self.code, f"code {self.code}")
        return f"11h {self.SHORTHAND}: {self.count} {what} on {self._on()}"


@dataclass(frozen=True, slots=True)
class Locate(_TapeOperation):
    """Locate operation (12h), SPC-4 6.4.6.20: 6-7 DESTINATION CSCD DESCRIPTOR ID, 8-11
    the LOGICAL OBJECT IDENTIFIER (block address) of a LOCATE (10) (SSC-4), in
    partition 0."""

    destination: int
    logical_object_identifier: int

    TYPE_CODE: ClassVar[int] = 0x12
    SHORTHAND: ClassVar[str] = "locate"
    LAYOUT: ClassVar[Layout] = _TAPE_OPERATION_HEADER.extend(
        "locate", 12, logical_object_identifier=bitfield(8, 32),
    )

    def describe(self) -> str:
        return (f"12h {self.SHORTHAND}: logical object {self.logical_object_identifier} on "
                f"{self._on()}")


@dataclass(frozen=True, slots=True)
class TapeImageCopy(SegmentDescriptor):
    """Tape device image copy (13h), SPC-4 6.4.6: 4-5 SOURCE and 6-7 DESTINATION CSCD
    DESCRIPTOR ID, byte 8 reserved, 9-11 COUNT. The copy manager makes an image of the
    source medium on the destination from both current positions, logical block for
    logical block and filemark for filemark, until the source reaches end of data (or
    end of partition), or until COUNT consecutive filemarks have been copied; a COUNT of
    zero ends on end of data only."""

    source: int
    destination: int
    count: int = 0

    TYPE_CODE: ClassVar[int] = 0x13
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x08
    SHORTHAND: ClassVar[str] = "tape image copy"
    LAYOUT: ClassVar[Layout] = Layout(
        "tape image copy", 12, type_code=bitfield(0), descriptor_length=bitfield(2, 16),
        source=bitfield(4, 16), destination=bitfield(6, 16), count=bitfield(9, 24),
    )

    @property
    def cat(self) -> bool:  # type: ignore[override]
        return False

    def describe(self) -> str:
        end = (f"{self.count} consecutive filemarks or end of data" if self.count
               else "end of data")
        return f"13h {self.SHORTHAND}: {self._ids()}, until {end}"


@dataclass(frozen=True, slots=True)
class VerifyCscd(SegmentDescriptor):
    """Verify CSCD (07h), SPC-4 6.4.6: 4-5 SOURCE CSCD DESCRIPTOR ID, 6-7 reserved, byte
    8 TUR (bit 0). The copy manager checks that the CSCD is reachable (and is the device
    its descriptor names); with TUR set it also sends it TEST UNIT READY. No data
    moves."""

    source: int
    tur: bool = False

    TYPE_CODE: ClassVar[int] = 0x07
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x08
    SHORTHAND: ClassVar[str] = "verify CSCD"
    LAYOUT: ClassVar[Layout] = Layout(
        "verify CSCD", 12, type_code=bitfield(0), descriptor_length=bitfield(2, 16),
        source=bitfield(4, 16), tur=bitfield(8, 1),
    )

    @property
    def destination(self) -> int:  # type: ignore[override]
        """Reserved in this descriptor."""
        return CSCD_ID_LOCAL

    @property
    def cat(self) -> bool:  # type: ignore[override]
        return False

    def describe(self) -> str:
        return (f"07h {self.SHORTHAND}: CSCD {_cscd_id_name(self.source)}"
                f"{', TEST UNIT READY' if self.tur else ''}")


@dataclass(frozen=True, slots=True)
class _BlockStreamOffset(SegmentDescriptor):
    """Bytes 8-27 of 08h and 09h (SPC-4 6.4.6): byte 8 reserved, 9-11 STREAM DEVICE
    TRANSFER LENGTH, 12-15 BYTE COUNT, 16-23 BLOCK DEVICE LOGICAL BLOCK ADDRESS, 24-25
    reserved, 26-27 BLOCK DEVICE BYTE OFFSET: the copy's bytes on the block device start
    that many bytes into the block at the LBA."""

    source: int
    destination: int
    byte_count: int
    lba: int
    block_byte_offset: int
    stream_transfer_length: int
    cat: bool = False

    DESCRIPTOR_LENGTH: ClassVar[int] = 0x18
    LAYOUT: ClassVar[Layout] = SEGMENT_HEADER.extend(
        "block+offset<->stream", 28, stream_transfer_length=bitfield(9, 24),
        byte_count=bitfield(12, 32), lba=bitfield(16, 64), block_byte_offset=bitfield(26, 16),
    )

    @property
    def start(self) -> tuple[int, int]:
        """(LBA, byte offset) of the first byte on the block device."""
        return self.lba, self.block_byte_offset

    def describe(self) -> str:
        where = "from" if self.TYPE_CODE == 0x08 else "to"
        return (f"{self.TYPE_CODE:02X}h {self.SHORTHAND}: {self.byte_count} bytes {where} LBA "
                f"{self.lba} + {self.block_byte_offset} bytes, {self._ids()}, stream transfer "
                f"length {self.stream_transfer_length}{', CAT' if self.cat else ''}")


@dataclass(frozen=True, slots=True)
class BlockToStreamOffset(_BlockStreamOffset):
    """Copy from block device with offset to stream device (08h), SPC-4 6.4.6."""

    TYPE_CODE: ClassVar[int] = 0x08
    SHORTHAND: ClassVar[str] = "block+offset->stream"


@dataclass(frozen=True, slots=True)
class StreamToBlockOffset(_BlockStreamOffset):
    """Copy from stream device to block device with offset (09h), SPC-4 6.4.6: bytes of
    the first and last destination blocks outside the copy's range keep their data."""

    TYPE_CODE: ClassVar[int] = 0x09
    SHORTHAND: ClassVar[str] = "stream->block+offset"


@dataclass(frozen=True, slots=True)
class BlockToBlockOffset(SegmentDescriptor):
    """Copy from block device with offset to block device with offset (0Ah), SPC-4
    6.4.6: 8-11 BYTE COUNT, 12-19 SOURCE and 20-27 DESTINATION BLOCK DEVICE LOGICAL
    BLOCK ADDRESS, 28-29 SOURCE and 30-31 DESTINATION BLOCK DEVICE BYTE OFFSET. Bytes of
    the first and last destination blocks outside the range keep their data."""

    source: int
    destination: int
    byte_count: int
    source_lba: int
    destination_lba: int
    source_byte_offset: int = 0
    destination_byte_offset: int = 0
    cat: bool = False

    TYPE_CODE: ClassVar[int] = 0x0A
    DESCRIPTOR_LENGTH: ClassVar[int] = 0x1C
    SHORTHAND: ClassVar[str] = "block+offset->block+offset"
    LAYOUT: ClassVar[Layout] = SEGMENT_HEADER.extend(
        "block+offset->block+offset", 32, byte_count=bitfield(8, 32),
        source_lba=bitfield(12, 64), destination_lba=bitfield(20, 64),
        source_byte_offset=bitfield(28, 16), destination_byte_offset=bitfield(30, 16),
    )

    def describe(self) -> str:
        return (f"0Ah {self.SHORTHAND}: {self.byte_count} bytes, LBA {self.source_lba} + "
                f"{self.source_byte_offset} -> LBA {self.destination_lba} + "
                f"{self.destination_byte_offset}, {self._ids()}{', CAT' if self.cat else ''}")


# The "+application client" forms share the layout of the segment they extend (SPC-4
# 6.4.6: 0Bh is 00h's, 0Ch 01h's, 0Dh 02h's, 0Eh 03h's, 0Fh 06h's) and hold a copy of the
# data they process for RECEIVE COPY RESULTS RECEIVE DATA.
@dataclass(frozen=True, slots=True)
class BlockToStreamHeld(BlockToStream):
    """Copy from block device to stream device and hold a copy for the application
    client (0Bh): the blocks read are held."""

    TYPE_CODE: ClassVar[int] = 0x0B
    SHORTHAND: ClassVar[str] = "block->stream+application client"
    HOLDS_DATA: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class StreamToBlockHeld(StreamToBlock):
    """Copy from stream device to block device and hold a copy for the application
    client (0Ch): the bytes read for the segment are held."""

    TYPE_CODE: ClassVar[int] = 0x0C
    SHORTHAND: ClassVar[str] = "stream->block+application client"
    HOLDS_DATA: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class BlockToBlockHeld(BlockToBlock):
    """Copy from block device to block device and hold a copy for the application
    client (0Dh): the blocks read are held."""

    TYPE_CODE: ClassVar[int] = 0x0D
    SHORTHAND: ClassVar[str] = "block->block+application client"
    HOLDS_DATA: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class StreamToStreamHeld(StreamToStream):
    """Copy from stream device to stream device and hold a copy for the application
    client (0Eh): the bytes read for the segment are held."""

    TYPE_CODE: ClassVar[int] = 0x0E
    SHORTHAND: ClassVar[str] = "stream->stream+application client"
    HOLDS_DATA: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class StreamToDiscardHeld(StreamToDiscard):
    """Read from stream device, hold for the application client (0Fh): the bytes read
    are not written anywhere, only held."""

    TYPE_CODE: ClassVar[int] = 0x0F
    SHORTHAND: ClassVar[str] = "stream->discard+application client"
    HOLDS_DATA: ClassVar[bool] = True


#: The segments that move data from one device to another (00h-03h, 08h-0Eh).
CopySegment = (BlockToStream | StreamToBlock | BlockToBlock | StreamToStream
               | BlockToStreamOffset | StreamToBlockOffset | BlockToBlockOffset)
Segment = (BlockToStream | StreamToBlock | BlockToBlock | StreamToStream | InlineToStream
           | EmbeddedToStream | StreamToDiscard | VerifyCscd | BlockToStreamOffset
           | StreamToBlockOffset | BlockToBlockOffset | WriteFilemarks | Space | Locate
           | TapeImageCopy)
SEGMENT_CLASSES: dict[int, type[Segment]] = {
    c.TYPE_CODE: c for c in (BlockToStream, StreamToBlock, BlockToBlock, StreamToStream,
                             InlineToStream, EmbeddedToStream, StreamToDiscard, VerifyCscd,
                             BlockToStreamOffset, StreamToBlockOffset, BlockToBlockOffset,
                             BlockToStreamHeld, StreamToBlockHeld, BlockToBlockHeld,
                             StreamToStreamHeld, StreamToDiscardHeld, WriteFilemarks, Space,
                             Locate, TapeImageCopy)
}


# --- the whole list -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExtendedCopyParameterList:
    """An EXTENDED COPY(LID1) parameter list (SPC-4 6.5.2) or, with a
    :class:`Lid4Header`, an EXTENDED COPY(LID4) one (SPC-4 6.4.2): header, CSCD
    descriptor list, segment descriptor list, inline data."""

    header: ParameterListHeader | Lid4Header
    cscds: tuple[Cscd, ...]
    segments: tuple[Segment, ...]
    inline_data: bytes = b""

    def encode(self) -> bytes:
        cscds = b"".join(c.encode() for c in self.cscds)
        segments = b"".join(s.encode() for s in self.segments)
        head = self.header.encode(len(cscds), len(segments), len(self.inline_data))
        return head + cscds + segments + bytes(self.inline_data)

    def cscd_offset(self, index: int) -> int:
        """Byte offset of CSCD descriptor ``index`` in the parameter list."""
        return self.header.LENGTH + CSCD_LENGTH * index

    def segment_offset(self, index: int) -> int:
        """Byte offset of segment descriptor ``index`` in the parameter list (for the
        COPY ABORTED segment pointer, SPC-4 4.5.2.4.6)."""
        return self.cscd_offset(len(self.cscds)) + sum(
            s.wire_size() for s in self.segments[:index]
        )

    def cscd(self, cscd_id: int) -> Cscd | None:
        """The CSCD descriptor a segment's CSCD DESCRIPTOR ID names, or None for the
        special IDs (null logical units, ROD, the local logical unit)."""
        return self.cscds[cscd_id] if cscd_id <= MAX_CSCD_INDEX else None

    def describe(self) -> str:
        lines = [f"{self.header.NAME}: {self.header.describe()}"]
        lines += [f"  CSCD {i}: {c.describe()}" for i, c in enumerate(self.cscds)]
        lines += [f"  segment {i}: {s.describe()}" for i, s in enumerate(self.segments)]
        if self.inline_data:
            lines.append(f"  inline data: {len(self.inline_data)} bytes")
        return "\n".join(lines)


def build_extended_copy(
    cscds: Iterable[Cscd],
    segments: Iterable[Segment],
    *,
    list_identifier: int = 0,
    list_id_usage: int = ListIdUsage.NO_LIST_ID,
    priority: int = 1,
    sequential_striped: bool = False,
    inline_data: bytes = b"",
) -> bytes:
    """A complete EXTENDED COPY(LID1) parameter list (the Data-Out buffer)."""
    header = ParameterListHeader(list_identifier, list_id_usage, priority, sequential_striped)
    return ExtendedCopyParameterList(header, tuple(cscds), tuple(segments), inline_data).encode()


def build_extended_copy_lid4(
    cscds: Iterable[Cscd],
    segments: Iterable[Segment],
    *,
    list_identifier: int = 0,
    list_id_usage: int = ListIdUsage.HOLD,
    priority: int = 1,
    sequential_striped: bool = False,
    immed: bool = False,
    g_sense: bool = False,
    inline_data: bytes = b"",
) -> bytes:
    """A complete EXTENDED COPY(LID4) parameter list (SPC-4 6.4.2)."""
    header = Lid4Header(list_identifier, list_id_usage, priority, sequential_striped, immed,
                        g_sense)
    return ExtendedCopyParameterList(header, tuple(cscds), tuple(segments), inline_data).encode()


def _check_cscd_id(cscd_id: int, ncscd: int, byte: int) -> None:
    """SPC-4 r37 table 150: an index into the list, or one of the special IDs."""
    if cscd_id <= MAX_CSCD_INDEX:
        if cscd_id >= ncscd:
            raise InvalidFieldInParameterList(
                byte, None, f"CSCD descriptor ID {cscd_id} beyond {ncscd} CSCD descriptors"
            )
    elif cscd_id not in SPECIAL_CSCD_IDS:
        raise InvalidFieldInParameterList(byte, None, f"reserved CSCD descriptor ID {cscd_id:#x}")


def parse_extended_copy(
    data: bytes | bytearray | memoryview, limits: Limits | None = None
) -> ExtendedCopyParameterList:
    """Decode and check an EXTENDED COPY(LID1) parameter list (SPC-4 6.5, 6.4.3-6.4.6).

    A PARAMETER LIST LENGTH of zero is not an error (SPC-4 6.5): the caller completes
    that command with GOOD before calling this. Otherwise, in this order:

    * fewer than 16 bytes: PARAMETER LIST LENGTH ERROR pointing at the CDB's
      PARAMETER LIST LENGTH (byte 10);
    * LIST ID USAGE 01b, or 11b without SNLID: INVALID FIELD IN PARAMETER LIST (1/4);
      11b with a nonzero LIST IDENTIFIER: INVALID FIELD IN PARAMETER LIST (byte 0);
    * more CSCD descriptors than ``limits.max_cscd``: TOO MANY TARGET DESCRIPTORS (2)
      (SPC-4 6.4.3.4), even when the lists are also too long together: SPC-4 ranks
      neither condition, and this follows the header's fields in SPC-4's order (LIO
      checks the combined length first);
    * CSCD plus segment list longer than MAXIMUM DESCRIPTOR LIST LENGTH: PARAMETER LIST
      LENGTH ERROR (SPC-4 6.4.3.5), pointing at byte 8 (byte 2 if the CSCD list alone);
    * INLINE DATA LENGTH above MAXIMUM INLINE DATA LENGTH: INLINE DATA LENGTH EXCEEDED
      (12);
    * a list shorter than its lengths say: PARAMETER LIST LENGTH ERROR pointing at the
      first length (2, 8 or 12) that runs past the data;
    * each CSCD descriptor: type other than E4h is UNSUPPORTED TARGET DESCRIPTOR TYPE
      CODE (its byte 0); a CSCD list that ends inside a descriptor, a reserved
      PERIPHERAL DEVICE TYPE, a DESIGNATOR LENGTH over 20, FIXED disagreeing with STREAM
      BLOCK LENGTH are INVALID FIELD IN PARAMETER LIST;
    * each segment descriptor: more than ``limits.max_segments`` is TOO MANY SEGMENT
      DESCRIPTORS (8); a type not in ``limits.segment_types`` is UNSUPPORTED SEGMENT
      DESCRIPTOR TYPE CODE (its byte 0); a DESCRIPTOR LENGTH other than the type's
      (e.g. sg_xcopy's empty 00h) is INVALID FIELD IN PARAMETER LIST at bytes 2-3 of
      the descriptor; a descriptor running past the segment list is INVALID FIELD IN
      PARAMETER LIST (8); a CSCD DESCRIPTOR ID naming no CSCD descriptor, or reserved,
      is INVALID FIELD IN PARAMETER LIST at that ID (an error in the list found before
      any segment is processed: ILLEGAL REQUEST, where LIO answers COPY ABORTED, COPY
      TARGET DEVICE NOT REACHABLE).

    What needs the devices (their types, ranges, reachability) the copy manager checks
    next, segment by segment (:meth:`~lio_xcopy.copy.manager.CopyManager.extended_copy`).

    Bytes after the inline data are ignored. ``limits`` defaults to :class:`Limits`.
    """
    limits = limits or Limits()
    buf = memoryview(data).cast("B")
    if len(buf) < HEADER_LENGTH:
        raise ParameterListLengthError(ExtendedCopyLid1.field("parameter_list_length").byte,
                                       f"EXTENDED COPY parameter list of {len(buf)} bytes")
    f = HEADER_LAYOUT.decode(buf)
    list_id, usage = f["list_identifier"], f["list_id_usage"]
    if usage == 0b01 or (usage == ListIdUsage.NO_LIST_ID and not limits.snlid):
        raise _invalid(HEADER_LAYOUT, "list_id_usage", f"LIST ID USAGE {usage:02b}b")
    if usage == ListIdUsage.NO_LIST_ID and list_id:
        raise _invalid(HEADER_LAYOUT, "list_identifier",
                       f"LIST IDENTIFIER {list_id} with usage 11b")
    header = ParameterListHeader(list_id, usage, f["priority"], bool(f["sequential_striped"]))
    return _parse_lists(buf, header, f["cscd_list_length"], f["segment_list_length"],
                        f["inline_length"], limits)


def _invalid(layout: Layout, name: str, message: str, off: int = 0
             ) -> InvalidFieldInParameterList:
    """INVALID FIELD IN PARAMETER LIST at field ``name`` of the format at ``off``."""
    byte, bit = layout.pointer(name)
    return InvalidFieldInParameterList(off + byte, bit, message)


def parse_extended_copy_lid4(
    data: bytes | bytearray | memoryview, limits: Limits | None = None
) -> ExtendedCopyParameterList:
    """Decode and check an EXTENDED COPY(LID4) parameter list (SPC-4 6.4.2, 6.4.3).

    The 48-byte header first, then the descriptor lists exactly as for LID1
    (:func:`parse_extended_copy`, with field pointers to the LID4 header's lengths at
    bytes 42, 44 and 46):

    * fewer than 48 bytes: PARAMETER LIST LENGTH ERROR (the CDB's byte 10);
    * PARAMETER LIST FORMAT other than 01h (byte 0), HEADER CSCD DESCRIPTOR LIST LENGTH
      other than 0020h (byte 2), HEADER CSCD DESCRIPTOR TYPE CODE other than FFh (byte
      16), LIST ID USAGE 01b (byte 1 bit 4), or 11b with a nonzero LIST IDENTIFIER (byte
      20): INVALID FIELD IN PARAMETER LIST (table 128);
    * IMMED with G_SENSE or with LIST ID USAGE 11b: INVALID FIELD IN CDB, as 6.4.2
      words it, pointing at IMMED (byte 15 bit 0 of the parameter list);
    * G_SENSE alone: INVALID FIELD IN PARAMETER LIST (byte 15 bit 1). It asks for sense
      data with GOOD status, which the TCMU ring cannot carry (the kernel takes sense
      only with CHECK CONDITION): refusing says so before anything moves.
    """
    limits = limits or Limits()
    buf = memoryview(data).cast("B")
    if len(buf) < LID4_HEADER_LENGTH:
        raise ParameterListLengthError(
            ExtendedCopyLid4.field("parameter_list_length").byte,
            f"EXTENDED COPY (LID4) parameter list of {len(buf)} bytes (header is 48)")
    layout = LID4_HEADER_LAYOUT
    f = layout.decode(buf)
    fmt, usage, list_id = f["list_format"], f["list_id_usage"], f["list_identifier"]
    if fmt != LID4_LIST_FORMAT:
        raise _invalid(layout, "list_format", f"PARAMETER LIST FORMAT {fmt:#04x}")
    if usage == 0b01:
        raise _invalid(layout, "list_id_usage", "LIST ID USAGE 01b")
    if f["header_cscd_list_length"] != LID4_HEADER_CSCD_LIST_LENGTH:
        raise _invalid(layout, "header_cscd_list_length",
                       f"HEADER CSCD DESCRIPTOR LIST LENGTH {f['header_cscd_list_length']:#06x}")
    immed, g_sense = bool(f["immed"]), bool(f["g_sense"])
    if immed and (g_sense or usage == ListIdUsage.NO_LIST_ID):
        raise IllegalRequest(Asc.INVALID_FIELD_IN_CDB, *layout.pointer("immed"), in_cdb=False,
                             message="IMMED with " + ("G_SENSE" if g_sense
                                                      else "LIST ID USAGE 11b"))
    if g_sense:
        raise _invalid(layout, "g_sense",
                       "G_SENSE: sense data with GOOD status cannot reach the initiator")
    if f["header_cscd_type_code"] != LID4_HEADER_CSCD_TYPE_CODE:
        raise _invalid(layout, "header_cscd_type_code",
                       f"HEADER CSCD DESCRIPTOR TYPE CODE {f['header_cscd_type_code']:#04x}")
    if usage == ListIdUsage.NO_LIST_ID and list_id:
        raise _invalid(layout, "list_identifier", f"LIST IDENTIFIER {list_id} with usage 11b")
    header = Lid4Header(list_id, usage, f["priority"], bool(f["sequential_striped"]), immed,
                        g_sense)
    return _parse_lists(buf, header, f["cscd_list_length"], f["segment_list_length"],
                        f["inline_length"], limits)


def _parse_lists(buf: memoryview, header: ParameterListHeader | Lid4Header, cscd_len: int,
                 seg_len: int, inline_len: int, limits: Limits) -> ExtendedCopyParameterList:
    """The CSCD and segment descriptor lists and the inline data after either header
    (SPC-4 6.4.3.4 to 6.4.3.6): the checks :func:`parse_extended_copy` lists."""
    cscd_byte, seg_byte, inline_byte = header.LENGTH_FIELDS
    head = header.LENGTH

    if -(-cscd_len // CSCD_LENGTH) > limits.max_cscd:
        raise IllegalRequest(
            Asc.TOO_MANY_TARGET_DESCRIPTORS, cscd_byte, in_cdb=False,
            message=f"CSCD descriptor list of {cscd_len} bytes (max {limits.max_cscd})",
        )
    if cscd_len + seg_len > limits.max_descriptor_list_length:
        raise IllegalRequest(
            Asc.PARAMETER_LIST_LENGTH_ERROR,
            cscd_byte if cscd_len > limits.max_descriptor_list_length else seg_byte,
            in_cdb=False,
            message=f"descriptor lists of {cscd_len} + {seg_len} bytes "
            f"(max {limits.max_descriptor_list_length})",
        )
    if inline_len > limits.max_inline_data:
        raise IllegalRequest(
            Asc.INLINE_DATA_LENGTH_EXCEEDED, inline_byte, in_cdb=False,
            message=f"inline data of {inline_len} bytes (max {limits.max_inline_data})",
        )
    cscd_end = head + cscd_len
    seg_end = cscd_end + seg_len
    inline_end = seg_end + inline_len
    for end, byte in ((cscd_end, cscd_byte), (seg_end, seg_byte), (inline_end, inline_byte)):
        if end > len(buf):
            raise IllegalRequest(
                Asc.PARAMETER_LIST_LENGTH_ERROR, byte, in_cdb=False,
                message=f"parameter list of {len(buf)} bytes, header says {inline_end}",
            )

    cscds = []
    for off in range(head, cscd_end, CSCD_LENGTH):
        if off + CSCD_LENGTH > cscd_end:  # the list ends inside this descriptor
            if buf[off] not in (IDENTIFICATION_CSCD, ROD_CSCD):
                raise IllegalRequest(
                    Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, off, in_cdb=False,
                    message=f"CSCD descriptor type {buf[off]:#04x} at byte {off}",
                )
            raise InvalidFieldInParameterList(
                cscd_byte, None, f"CSCD descriptor list length {cscd_len} not a multiple of 32"
            )
        cscds.append(_parse_cscd(buf, off, inline_len))

    segments: list[Segment] = []
    off = cscd_end
    while off < seg_end:
        if off + 4 > seg_end:
            raise InvalidFieldInParameterList(seg_byte, None,
                                              f"segment list ends inside byte {off}")
        if len(segments) >= limits.max_segments:
            raise IllegalRequest(
                Asc.TOO_MANY_SEGMENT_DESCRIPTORS, seg_byte, in_cdb=False,
                message=f"more than {limits.max_segments} segment descriptors",
            )
        code = buf[off]
        cls = SEGMENT_CLASSES.get(code) if code in limits.segment_types else None
        if cls is None:
            raise IllegalRequest(
                Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, off, in_cdb=False,
                message=f"segment descriptor type {code:#04x} at byte {off}",
            )
        dlen = SEGMENT_HEADER.get("descriptor_length", buf, off)
        if not cls.length_ok(dlen):
            raise _invalid(
                SEGMENT_HEADER, "descriptor_length",
                f"segment type {code:02X}h DESCRIPTOR LENGTH {dlen:#x}, "
                f"needs {cls.DESCRIPTOR_LENGTH:#x}", off,
            )
        if off + 4 + dlen > seg_end:
            raise InvalidFieldInParameterList(
                seg_byte, None, f"segment descriptor at byte {off} runs past the segment list"
            )
        segment = cls.decode(buf, off)
        for _, cscd_id, byte in segment.cscd_ids():
            _check_cscd_id(cscd_id, len(cscds), off + byte)
        segments.append(segment)
        off += 4 + dlen

    return ExtendedCopyParameterList(
        header, tuple(cscds), tuple(segments), bytes(buf[seg_end:inline_end])
    )


# --- RECEIVE COPY RESULTS parameter data ---------------------------------------------------------
#: COPY STATUS parameter data, SPC-4 r31 6.18.3 (SPC-5 table 253)
COPY_STATUS_LAYOUT = Layout(
    "COPY STATUS", 12, available_data=bitfield(0, 32), hdd=bitfield(4, 1, lsb=7),
    status=bitfield(4, 7), segments_processed=bitfield(5, 16),
    transfer_count_units=bitfield(7), transfer_count=bitfield(8, 32),
)


@dataclass(frozen=True, slots=True)
class CopyStatus:
    """COPY STATUS parameter data, SPC-4 r31 6.18.3 (SPC-5 table 253): AVAILABLE DATA
    (8), HDD and COPY MANAGER STATUS, SEGMENTS PROCESSED, TRANSFER COUNT UNITS and
    TRANSFER COUNT."""

    status: int
    segments_processed: int = 0
    transfer_count: int = 0
    transfer_count_units: int = TransferCountUnits.BYTES
    held_data_discarded: bool = False

    LENGTH: ClassVar[int] = COPY_STATUS_LAYOUT.length
    LAYOUT: ClassVar[Layout] = COPY_STATUS_LAYOUT

    @classmethod
    def for_bytes(
        cls, status: int, segments_processed: int, transferred: int, *, hdd: bool = False
    ) -> Self:
        """Count ``transferred`` bytes in the smallest unit whose count fits 32 bits,
        rounding down (only bytes already written may be counted)."""
        for units in range(TransferCountUnits.EXBIBYTES + 1):
            count = transferred >> (10 * units)
            if count <= 0xFFFFFFFF:
                return cls(status, segments_processed, count, units, hdd)
        raise ValueError(f"transfer count {transferred} too large")

    @property
    def transferred_bytes(self) -> int | None:
        """The count in bytes; None when counted in destination blocks (F1h)."""
        if self.transfer_count_units <= TransferCountUnits.EXBIBYTES:
            return self.transfer_count << (10 * self.transfer_count_units)
        return None

    def encode(self) -> bytes:
        return bytes(self.LAYOUT.encode({
            "available_data": self.LENGTH - 4, "hdd": self.held_data_discarded,
            "status": self.status, "segments_processed": self.segments_processed,
            "transfer_count_units": self.transfer_count_units,
            "transfer_count": self.transfer_count,
        }))

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self:
        if len(data) < cls.LENGTH:
            raise XcopyFormatError(f"COPY STATUS data of {len(data)} bytes (needs 12)")
        f = cls.LAYOUT.decode(data)
        return cls(f["status"], f["segments_processed"], f["transfer_count"],
                   f["transfer_count_units"], bool(f["hdd"]))

    def describe(self) -> str:
        try:
            status = CopyCommandStatus(self.status).name.replace("_", " ").lower()
        except ValueError:
            status = f"reserved status {self.status:#04x}"
        try:
            units = TransferCountUnits(self.transfer_count_units).name.lower()
        except ValueError:
            units = f"units {self.transfer_count_units:#04x}"
        return (
            f"copy {status}, {self.segments_processed} segments processed, "
            f"{self.transfer_count} {units} transferred"
            + (", held data discarded" if self.held_data_discarded else "")
        )


class DigestAlgorithm(IntEnum):
    """DIGEST ALGORITHM of RECEIVE COPY DIGEST data (docs/copy-digest.md). XXH3-128
    detects accidental corruption, not tampering; SHA-256 (FIPS 180-4) does both."""

    SHA256 = 0x01  # 32 bytes
    XXH3_128 = 0x02  # 16 bytes (xxHash's XXH3_128bits, canonical big-endian form)

    @property
    def label(self) -> str:
        """The name options and the catalog use: ``sha256``, ``xxh3-128``."""
        return self.name.lower().replace("_", "-")

    @property
    def title(self) -> str:
        """The name for people: ``SHA-256``, ``XXH3-128``."""
        return "SHA-256" if self is DigestAlgorithm.SHA256 else self.label.upper()

    @property
    def length(self) -> int:
        """Bytes of the digest; DIGEST is zero after them."""
        return 32 if self is DigestAlgorithm.SHA256 else 16

    @classmethod
    def named(cls, label: str) -> DigestAlgorithm:
        """The algorithm of a :attr:`label`; ValueError for any other name."""
        for a in cls:
            if a.label == label:
                return a
        raise ValueError(f"unknown digest algorithm {label!r}: one of "
                         f"{', '.join(a.label for a in cls)}")


DIGEST_LENGTH = 32
COPY_DIGEST_LAYOUT = Layout(
    "RECEIVE COPY DIGEST", 48, available_data=bitfield(0, 32), status=bitfield(4, 7),
    algorithm=bitfield(5), byte_count=bitfield(8, 64), digest=bitfield(16, 8 * DIGEST_LENGTH),
)


@dataclass(frozen=True, slots=True)
class CopyDigest:
    """RECEIVE COPY DIGEST data: AVAILABLE DATA (4), COPY MANAGER STATUS (as in COPY
    STATUS), DIGEST ALGORITHM (:class:`DigestAlgorithm`: 01h SHA-256, 02h XXH3-128),
    BYTES DIGESTED (8), DIGEST (32: the algorithm's bytes, then zero; all zero until the
    copy ends). The digest covers the bytes the copy moved, in order, without pad."""

    status: int
    byte_count: int
    digest: bytes = bytes(32)
    algorithm: int = DigestAlgorithm.SHA256

    LENGTH: ClassVar[int] = COPY_DIGEST_LAYOUT.length
    LAYOUT: ClassVar[Layout] = COPY_DIGEST_LAYOUT

    @property
    def known_algorithm(self) -> DigestAlgorithm | None:
        """The DIGEST ALGORITHM, None for a code this version does not know."""
        try:
            return DigestAlgorithm(self.algorithm)
        except ValueError:
            return None

    @property
    def value(self) -> bytes:
        """The digest's own bytes (16 of DIGEST for XXH3-128); all 32 for an unknown
        algorithm."""
        a = self.known_algorithm
        return bytes(self.digest)[: a.length if a is not None else DIGEST_LENGTH]

    def encode(self) -> bytes:
        digest = bytes(self.digest)[:DIGEST_LENGTH].ljust(DIGEST_LENGTH, b"\0")
        return bytes(self.LAYOUT.encode({
            "available_data": self.LENGTH - 4, "status": self.status,
            "algorithm": self.algorithm, "byte_count": self.byte_count,
            "digest": int.from_bytes(digest, "big"),
        }))


def parse_copy_digest(data: bytes) -> CopyDigest:
    """Parse RECEIVE COPY DIGEST data (the initiator's side)."""
    if len(data) < CopyDigest.LENGTH:
        raise ValueError(f"copy digest data is {len(data)} bytes, expected "
                         f"{CopyDigest.LENGTH}")
    f = COPY_DIGEST_LAYOUT.decode(data)
    return CopyDigest(f["status"], f["byte_count"],
                      f["digest"].to_bytes(DIGEST_LENGTH, "big"), f["algorithm"])


def copy_status_data(
    status: int, segments_processed: int, transferred: int, *, hdd: bool = False
) -> bytes:
    """COPY STATUS parameter data for ``transferred`` bytes written so far."""
    return CopyStatus.for_bytes(status, segments_processed, transferred, hdd=hdd).encode()


@dataclass(frozen=True, slots=True)
class ReceivedData:
    """RECEIVE DATA parameter data, SPC-4 r31 6.18.2 (RECEIVE COPY DATA(LID1) in r37):
    0-3 AVAILABLE DATA (the bytes after it), then the HELD DATA."""

    held_data: bytes = b""

    LAYOUT: ClassVar[Layout] = Layout("RECEIVE DATA", 4, available_data=bitfield(0, 32))

    def encode(self) -> bytes:
        held = bytes(self.held_data)
        return bytes(self.LAYOUT.encode({"available_data": len(held)})) + held

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self:
        """Decode; held data cut short by the allocation length is kept short."""
        if len(data) < cls.LAYOUT.length:
            raise XcopyFormatError(f"RECEIVE DATA data of {len(data)} bytes (needs 4)")
        n = cls.LAYOUT.get("available_data", data)
        return cls(bytes(data[cls.LAYOUT.length : cls.LAYOUT.length + n]))


OPERATING_PARAMETERS_LAYOUT = Layout(
    "OPERATING PARAMETERS", 44, available_data=bitfield(0, 32), snlid=bitfield(4, 1),
    max_cscd_count=bitfield(8, 16), max_segment_count=bitfield(10, 16),
    max_descriptor_list_length=bitfield(12, 32), max_segment_length=bitfield(16, 32),
    max_inline_data_length=bitfield(20, 32), held_data_limit=bitfield(24, 32),
    max_stream_device_transfer_size=bitfield(28, 32),
    total_concurrent_copies=bitfield(34, 16), max_concurrent_copies=bitfield(36),
    data_segment_granularity=bitfield(37), inline_data_granularity=bitfield(38),
    held_data_granularity=bitfield(39), implemented_descriptor_list_length=bitfield(43),
)


@dataclass(frozen=True, slots=True)
class OperatingParameters:
    """OPERATING PARAMETERS parameter data, SPC-4 r31 6.18.4 (SPC-5 table 244): byte 4
    SNLID, 8-9 MAXIMUM CSCD DESCRIPTOR COUNT, 10-11 MAXIMUM SEGMENT DESCRIPTOR COUNT,
    12-15 MAXIMUM DESCRIPTOR LIST LENGTH, 16-19 MAXIMUM SEGMENT LENGTH, 20-23 MAXIMUM
    INLINE DATA LENGTH, 24-27 HELD DATA LIMIT, 28-31 MAXIMUM STREAM DEVICE TRANSFER
    SIZE, 34-35 TOTAL CONCURRENT COPIES, 36 MAXIMUM CONCURRENT COPIES, 37-39 the three
    log2 granularities, 43 IMPLEMENTED DESCRIPTOR LIST LENGTH, then the type codes."""

    snlid: bool
    max_cscd_count: int
    max_segment_count: int
    max_descriptor_list_length: int
    max_segment_length: int
    max_inline_data_length: int
    held_data_limit: int
    max_stream_device_transfer_size: int
    total_concurrent_copies: int
    max_concurrent_copies: int
    data_segment_granularity: int
    inline_data_granularity: int
    held_data_granularity: int
    implemented_descriptor_types: tuple[int, ...]

    LAYOUT: ClassVar[Layout] = OPERATING_PARAMETERS_LAYOUT

    @classmethod
    def from_limits(cls, limits: Limits) -> Self:
        return cls(
            limits.snlid, limits.max_cscd, limits.max_segments,
            limits.max_descriptor_list_length, limits.max_segment_length,
            limits.max_inline_data, limits.held_data_limit, limits.max_stream_transfer,
            limits.total_concurrent_copies if limits.snlid else 0,
            limits.max_concurrent_copies, limits.data_segment_granularity,
            limits.inline_data_granularity, limits.held_data_granularity,
            limits.implemented_descriptor_types,
        )

    def encode(self) -> bytes:
        codes = bytes(self.implemented_descriptor_types)
        values = {f.name: int(getattr(self, f.name)) for f in self.LAYOUT.fields
                  if f.name not in ("available_data", "implemented_descriptor_list_length")}
        values["available_data"] = self.LAYOUT.length - 4 + len(codes)
        values["implemented_descriptor_list_length"] = len(codes)
        return bytes(self.LAYOUT.encode(values)) + codes

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self:
        """Decode; a list of type codes cut short by the allocation length is kept short."""
        head = cls.LAYOUT.length
        if len(data) < head:
            raise XcopyFormatError(f"OPERATING PARAMETERS data of {len(data)} bytes (needs 44)")
        f = cls.LAYOUT.decode(data)
        codes = bytes(data[head : head + f["implemented_descriptor_list_length"]])
        return cls(
            bool(f["snlid"]), f["max_cscd_count"], f["max_segment_count"],
            f["max_descriptor_list_length"], f["max_segment_length"],
            f["max_inline_data_length"], f["held_data_limit"],
            f["max_stream_device_transfer_size"], f["total_concurrent_copies"],
            f["max_concurrent_copies"], f["data_segment_granularity"],
            f["inline_data_granularity"], f["held_data_granularity"], tuple(codes),
        )

    def describe(self) -> str:
        return "\n".join((
            f"SNLID {int(self.snlid)}",
            f"maximum CSCD descriptor count {self.max_cscd_count}",
            f"maximum segment descriptor count {self.max_segment_count}",
            f"maximum descriptor list length {self.max_descriptor_list_length}",
            f"maximum segment length {self.max_segment_length}",
            f"maximum inline data length {self.max_inline_data_length}",
            f"held data limit {self.held_data_limit}",
            f"maximum stream device transfer size {self.max_stream_device_transfer_size}",
            f"total concurrent copies {self.total_concurrent_copies}",
            f"maximum concurrent copies {self.max_concurrent_copies}",
            f"granularity (log2): data {self.data_segment_granularity}, inline "
            f"{self.inline_data_granularity}, held {self.held_data_granularity}",
            "implemented descriptors "
            + " ".join(f"{c:02X}h" for c in self.implemented_descriptor_types),
        ))


def operating_parameters_data(limits: Limits) -> bytes:
    """OPERATING PARAMETERS parameter data for these limits."""
    return OperatingParameters.from_limits(limits).encode()


FAILED_SEGMENT_DETAILS_LAYOUT = Layout(
    "FAILED SEGMENT DETAILS", 60, available_data=bitfield(0, 32),
    copy_command_status=bitfield(56), sense_data_length=bitfield(58, 16),
)


@dataclass(frozen=True, slots=True)
class FailedSegmentDetails:
    """FAILED SEGMENT DETAILS parameter data, SPC-4 r31 6.18.5 (SPC-5 table 246): bytes
    4-55 reserved, 56 COPY COMMAND STATUS (the SCSI status of the EXTENDED COPY), 58-59
    SENSE DATA LENGTH, then the sense data."""

    copy_command_status: int
    sense_data: bytes = b""

    LAYOUT: ClassVar[Layout] = FAILED_SEGMENT_DETAILS_LAYOUT

    def encode(self) -> bytes:
        sense = bytes(self.sense_data)
        return bytes(self.LAYOUT.encode({
            "available_data": self.LAYOUT.length - 4 + len(sense),
            "copy_command_status": self.copy_command_status,
            "sense_data_length": len(sense),
        })) + sense

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self | None:
        """Decode; None when AVAILABLE DATA is zero (no failed segment details)."""
        if len(data) < 4:
            raise XcopyFormatError(f"FAILED SEGMENT DETAILS data of {len(data)} bytes")
        if cls.LAYOUT.get("available_data", data) == 0:
            return None
        if len(data) < cls.LAYOUT.length:
            raise XcopyFormatError(f"FAILED SEGMENT DETAILS data of {len(data)} bytes")
        f = cls.LAYOUT.decode(data)
        head = cls.LAYOUT.length
        return cls(f["copy_command_status"], bytes(data[head : head + f["sense_data_length"]]))

    @property
    def sense(self) -> SenseData | None:
        return SenseData.parse(self.sense_data) if self.sense_data else None

    def describe(self) -> str:
        sense = self.sense
        return f"EXTENDED COPY status {self.copy_command_status:#04x}" + (
            f", {sense.describe()}" if sense else ""
        )


def failed_segment_details_data(
    copy_command_status: int | None,
    sense: SenseData | bytes | None = None,
    *,
    descriptor_format: bool = False,
) -> bytes:
    """FAILED SEGMENT DETAILS parameter data; ``None`` status means none are held, which
    SPC-4 reports as an AVAILABLE DATA of zero and nothing after it."""
    if copy_command_status is None:
        return bytes(4)
    if isinstance(sense, SenseData):
        sense = sense.encode(descriptor=descriptor_format)
    return FailedSegmentDetails(copy_command_status, sense or b"").encode()


# --- RECEIVE COPY STATUS(LID4) and RECEIVE COPY DATA(LID4), SPC-4 6.24 and 6.20 ---------------
class CopyOperationStatus(IntEnum):
    """COPY OPERATION STATUS, SPC-4 6.24 table 249 (03h, partial ROD token usage, is
    never reported for an EXTENDED COPY)."""

    COMPLETED = 0x01
    COMPLETED_WITH_ERRORS = 0x02
    COMPLETED_WITH_RESIDUAL_DATA = 0x04
    IN_PROGRESS = 0x10  # foreground or background unknown
    IN_PROGRESS_FOREGROUND = 0x11
    IN_PROGRESS_BACKGROUND = 0x12
    TERMINATED = 0x60  # e.g. by COPY OPERATION ABORT

    @property
    def ended(self) -> bool:
        return self not in (self.IN_PROGRESS, self.IN_PROGRESS_FOREGROUND,
                            self.IN_PROGRESS_BACKGROUND)


#: ESTIMATED STATUS UPDATE DELAY of an ended copy (SPC-4 6.24) and of one we cannot estimate
STATUS_UPDATE_DELAY_ENDED = 0xFFFFFFFE
STATUS_UPDATE_DELAY_UNKNOWN = 0xFFFFFFFF
COPY_STATUS_LID4_LAYOUT = Layout(
    "COPY STATUS (LID4)", 32, available_data=bitfield(0, 32),
    response_to_service_action=bitfield(4, 5), hdd=bitfield(5, 1, lsb=7),
    status=bitfield(5, 7), operation_counter=bitfield(6, 16),
    estimated_status_update_delay=bitfield(8, 32), completion_status=bitfield(12),
    sense_field_length=bitfield(13), sense_data_length=bitfield(14),
    transfer_count_units=bitfield(15), transfer_count=bitfield(16, 64),
    segments_processed=bitfield(24, 16),
)


@dataclass(frozen=True, slots=True)
class CopyStatusLid4:
    """RECEIVE COPY STATUS(LID4) parameter data, SPC-4 6.24 table 248 (the shared
    third-party copy status header of 5.17.4.4): 0-3 AVAILABLE DATA, 4 RESPONSE TO
    SERVICE ACTION (the originating command's: 00h LID1, 01h LID4), 5 COPY OPERATION
    STATUS (bit 7 is HDD in RECEIVE COPY DATA(LID4)), 6-7 OPERATION COUNTER, 8-11
    ESTIMATED STATUS UPDATE DELAY (ms), 12 EXTENDED COPY COMPLETION STATUS, 13 LENGTH OF
    THE SENSE DATA FIELD (a multiple of four), 14 SENSE DATA LENGTH, 15 TRANSFER COUNT
    UNITS, 16-23 TRANSFER COUNT, 24-25 SEGMENTS PROCESSED, then the sense data from byte
    32. FreeBSD's ``scsi_receive_copy_status_lid4_data`` has the same offsets."""

    response_to_service_action: int
    status: int
    transfer_count: int = 0
    segments_processed: int = 0
    completion_status: int = 0  # a SAM-5 status; reserved (0) while in progress
    sense_data: bytes = b""
    operation_counter: int = 0
    estimated_status_update_delay: int = STATUS_UPDATE_DELAY_UNKNOWN
    transfer_count_units: int = TransferCountUnits.BYTES
    held_data_discarded: bool = False  # HDD: RECEIVE COPY DATA(LID4) only

    LENGTH: ClassVar[int] = COPY_STATUS_LID4_LAYOUT.length  # without the sense data
    LAYOUT: ClassVar[Layout] = COPY_STATUS_LID4_LAYOUT

    @property
    def sense_field_length(self) -> int:
        """LENGTH OF THE SENSE DATA FIELD: the sense data padded to a multiple of 4."""
        return -(-len(self.sense_data) // 4) * 4

    def encode(self, trailer: bytes = b"") -> bytes:
        """The parameter data; ``trailer`` is what follows the sense data field in a
        longer form (RECEIVE COPY DATA(LID4): HELD DATA LENGTH and HELD DATA)."""
        sense = bytes(self.sense_data)
        field = sense + bytes(self.sense_field_length - len(sense))
        return bytes(self.LAYOUT.encode({
            "available_data": self.LENGTH - 4 + len(field) + len(trailer),
            "response_to_service_action": self.response_to_service_action,
            "hdd": self.held_data_discarded, "status": self.status,
            "operation_counter": self.operation_counter,
            "estimated_status_update_delay": self.estimated_status_update_delay,
            "completion_status": self.completion_status, "sense_field_length": len(field),
            "sense_data_length": len(sense), "transfer_count_units": self.transfer_count_units,
            "transfer_count": self.transfer_count, "segments_processed": self.segments_processed,
        })) + field + trailer

    @classmethod
    def decode(cls, data: bytes | memoryview) -> tuple[Self, int]:
        """(status, offset of what follows the sense data field)."""
        if len(data) < cls.LENGTH:
            raise XcopyFormatError(f"COPY STATUS (LID4) data of {len(data)} bytes (needs 32)")
        f = cls.LAYOUT.decode(data)
        field_len = f["sense_field_length"]
        sense = bytes(data[cls.LENGTH : cls.LENGTH + min(f["sense_data_length"], field_len)])
        return cls(f["response_to_service_action"], f["status"], f["transfer_count"],
                   f["segments_processed"], f["completion_status"], sense,
                   f["operation_counter"], f["estimated_status_update_delay"],
                   f["transfer_count_units"], bool(f["hdd"])), cls.LENGTH + field_len

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self:
        return cls.decode(data)[0]

    @property
    def transferred_bytes(self) -> int | None:
        """The count in bytes; None when counted in destination blocks (F1h)."""
        if self.transfer_count_units <= TransferCountUnits.EXBIBYTES:
            return self.transfer_count << (10 * self.transfer_count_units)
        return None

    @property
    def sense(self) -> SenseData | None:
        return SenseData.parse(self.sense_data) if self.sense_data else None

    def describe(self) -> str:
        try:
            status = CopyOperationStatus(self.status).name.replace("_", " ").lower()
        except ValueError:
            status = f"reserved status {self.status:#04x}"
        sense = self.sense
        return (f"copy {status}, {self.segments_processed} segments processed, "
                f"{self.transfer_count} units {self.transfer_count_units:#04x} transferred"
                + (f", status {self.completion_status:#04x}"
                   if self.status not in (0x10, 0x11, 0x12) else "")
                + (f", {sense.describe()}" if sense else ""))


#: What follows the sense data field in RECEIVE COPY DATA(LID4), SPC-4 6.20 table 240
HELD_DATA_LENGTH_LAYOUT = Layout("HELD DATA LENGTH", 4, held_data_length=bitfield(0, 32))


@dataclass(frozen=True, slots=True)
class CopyDataLid4:
    """RECEIVE COPY DATA(LID4) parameter data, SPC-4 6.20 table 240: the COPY STATUS
    (LID4) fields with HDD in byte 5 bit 7, then HELD DATA LENGTH (4 bytes) and the held
    data. HELD DATA LENGTH is zero unless the copy completed without errors."""

    status: CopyStatusLid4
    held_data: bytes = b""

    def encode(self) -> bytes:
        ended_well = self.status.status in (CopyOperationStatus.COMPLETED,
                                            CopyOperationStatus.COMPLETED_WITH_RESIDUAL_DATA)
        held = bytes(self.held_data) if ended_well else b""
        return self.status.encode(
            bytes(HELD_DATA_LENGTH_LAYOUT.encode({"held_data_length": len(held)})) + held)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self:
        status, end = CopyStatusLid4.decode(data)
        if len(data) < end + 4:
            raise XcopyFormatError(f"COPY DATA (LID4) data of {len(data)} bytes: no HELD "
                                   "DATA LENGTH")
        n = HELD_DATA_LENGTH_LAYOUT.get("held_data_length", data, end)
        start = end + HELD_DATA_LENGTH_LAYOUT.length
        return cls(status, bytes(data[start : start + n]))
