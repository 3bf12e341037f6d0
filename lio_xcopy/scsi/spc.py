"""SPC-4 primary commands: CDB layouts and the data they return or take.

Pure builders and parsers only; the devices decide what to put in them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi.cdb import Cdb, bitfield
from lio_xcopy.scsi.errors import InvalidFieldInParameterList, ParameterListLengthError
from lio_xcopy.scsi.layout import Layout

# --- peripheral device types, SPC-4 Table 142 ----------------------------------------
TYPE_DISK = 0x00
TYPE_TAPE = 0x01
TYPE_MEDIUM_CHANGER = 0x08

# --- CDB layouts (SPC-4 clause 6) ------------------------------------------------------


class TestUnitReady(Cdb, name="TEST UNIT READY", opcode=0x00, length=6, clause="SPC-4 6.47"):
    pass


class RequestSense(Cdb, name="REQUEST SENSE", opcode=0x03, length=6, clause="SPC-4 6.39"):
    desc: int = bitfield(1, 1)
    allocation_length: int = bitfield(4, 8)


class Inquiry(Cdb, name="INQUIRY", opcode=0x12, length=6, clause="SPC-4 6.6"):
    evpd: int = bitfield(1, 1)
    page_code: int = bitfield(2, 8)
    allocation_length: int = bitfield(3, 16)


class ModeSelect6(
    Cdb, name="MODE SELECT (6)", opcode=0x15, length=6, clause="SPC-4 6.9", data_out=True,
):
    pf: int = bitfield(1, 1, lsb=4)
    sp: int = bitfield(1, 1)
    parameter_list_length: int = bitfield(4, 8)


class ModeSense6(Cdb, name="MODE SENSE (6)", opcode=0x1A, length=6, clause="SPC-4 6.11"):
    dbd: int = bitfield(1, 1, lsb=3)
    pc: int = bitfield(2, 2, lsb=6)
    page_code: int = bitfield(2, 6)
    subpage_code: int = bitfield(3, 8)
    allocation_length: int = bitfield(4, 8)


class ModeSelect10(
    Cdb, name="MODE SELECT (10)", opcode=0x55, length=10, clause="SPC-4 6.10", data_out=True,
):
    pf: int = bitfield(1, 1, lsb=4)
    sp: int = bitfield(1, 1)
    parameter_list_length: int = bitfield(7, 16)


class ModeSense10(Cdb, name="MODE SENSE (10)", opcode=0x5A, length=10, clause="SPC-4 6.12"):
    llbaa: int = bitfield(1, 1, lsb=4)
    dbd: int = bitfield(1, 1, lsb=3)
    pc: int = bitfield(2, 2, lsb=6)
    page_code: int = bitfield(2, 6)
    subpage_code: int = bitfield(3, 8)
    allocation_length: int = bitfield(7, 16)


class ReportSupportedOperationCodes(
    Cdb, name="REPORT SUPPORTED OPERATION CODES", opcode=0xA3, length=12, clause="SPC-4 6.35",
    service_action=0x0C,
):
    rctd: int = bitfield(2, 1, lsb=7)
    reporting_options: int = bitfield(2, 3)
    requested_operation_code: int = bitfield(3, 8)
    requested_service_action: int = bitfield(4, 16)
    allocation_length: int = bitfield(6, 32)


AnyModeSense: TypeAlias = ModeSense6 | ModeSense10
AnyModeSelect: TypeAlias = ModeSelect6 | ModeSelect10

# Mode page control values, SPC-4 6.11.3
PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED = 0, 1, 2, 3
ALL_PAGES = 0x3F


def truncate(data: bytes, allocation_length: int) -> bytes:
    """SPC-4 4.2.5.6: return at most ALLOCATION LENGTH bytes."""
    return data[:allocation_length]


# --- INQUIRY data, SPC-4 6.6.2 -----------------------------------------------------------
class InquiryFormatError(LioXcopyError, ValueError):
    """Standard INQUIRY data that is too short to decode."""


@dataclass(frozen=True, slots=True)
class StandardInquiry:
    """The fields of standard INQUIRY data that differ between LUNs: ours when we
    answer, a device's when an initiator asks. Text fields are stripped of padding."""

    device_type: int
    vendor: str = "LIO-ORG"
    product: str = ""
    revision: str = "0001"
    removable: bool = False
    third_party_copy: bool = False
    version_descriptors: tuple[int, ...] = (0x00A0, 0x0460)  # SAM-5, SPC-4
    peripheral_qualifier: int = 0
    version: int = 0x06  # SPC-4

    def encode(self) -> bytes:
        buf = bytearray(58 + 2 * 8)
        buf[0] = (self.peripheral_qualifier & 0x07) << 5 | self.device_type & 0x1F
        buf[1] = 0x80 if self.removable else 0
        buf[2] = self.version
        buf[3] = 0x10 | 0x02  # HISUP, response data format 2
        buf[4] = len(buf) - 5
        buf[5] = 0x08 if self.third_party_copy else 0
        buf[7] = 0x02  # CMDQUE
        buf[8:16] = _ascii(self.vendor, 8)
        buf[16:32] = _ascii(self.product, 16)
        buf[32:36] = _ascii(self.revision, 4)
        for i, v in enumerate(self.version_descriptors[:8]):
            struct.pack_into(">H", buf, 58 + 2 * i, v)
        return bytes(buf)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> StandardInquiry:
        """Decode the first 36 bytes every device returns, and the VERSION DESCRIPTORs
        (bytes 58-73) that are there and not zero."""
        data = bytes(data)
        if len(data) < 36:
            raise InquiryFormatError(f"standard INQUIRY data of {len(data)} bytes: a device "
                                     "returns at least 36")

        def text(a: int, b: int) -> str:
            return data[a:b].decode("ascii", "replace").strip()

        descriptors = tuple(
            v for i in range(58, min(len(data), 74) - 1, 2)
            if (v := int.from_bytes(data[i:i + 2], "big"))
        )
        return cls(
            device_type=data[0] & 0x1F, vendor=text(8, 16), product=text(16, 32),
            revision=text(32, 36), removable=bool(data[1] & 0x80),
            third_party_copy=bool(data[5] & 0x08), version_descriptors=descriptors,
            peripheral_qualifier=data[0] >> 5, version=data[2],
        )


def _ascii(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width].ljust(width, b" ")


def vpd_page(device_type: int, page_code: int, body: bytes) -> bytes:
    """VPD page header, SPC-4 7.8.1 (PAGE LENGTH is two bytes)."""
    return struct.pack(">BBH", device_type & 0x1F, page_code, len(body)) + body


def vpd_supported_pages(device_type: int, pages: Iterable[int]) -> bytes:
    """Supported VPD Pages, SPC-4 7.8.16."""
    return vpd_page(device_type, 0x00, bytes(sorted({0x00, *pages})))


def vpd_unit_serial(device_type: int, serial: str) -> bytes:
    """Unit Serial Number, SPC-4 7.8.18."""
    return vpd_page(device_type, 0x80, serial.encode("ascii", "replace"))


def parse_vpd_unit_serial(page: bytes | memoryview) -> str:
    """PRODUCT SERIAL NUMBER of a Unit Serial Number page with its header (SPC-4 7.8.18),
    without the padding a device may add."""
    page = bytes(page)
    end = 4 + int.from_bytes(page[2:4], "big")
    return page[4:end].decode("ascii", "replace").strip()


LIO_COMPANY_ID = 0x001405  # the OUI LIO uses in its NAA designators (target_core_spc.c)


def naa_ieee_registered_extended(unit_serial: str, company_id: int = LIO_COMPANY_ID) -> bytes:
    """NAA 6h designator as LIO builds it (spc_gen_naa_6h_vendor_specific): the company
    ID, then the first 25 hex digits of the unit serial number, zero filled."""
    digits = [int(c, 16) for c in unit_serial if c in "0123456789abcdefABCDEF"][:25]
    nibbles = [0x6, *((company_id >> s) & 0xF for s in (20, 16, 12, 8, 4, 0)), *digits]
    nibbles += [0] * (32 - len(nibbles))
    return bytes(nibbles[i] << 4 | nibbles[i + 1] for i in range(0, 32, 2))


@dataclass(frozen=True, slots=True)
class Designator:
    """One designation descriptor, SPC-4 7.8.6.1."""

    code_set: int  # 1 binary, 2 ASCII, 3 UTF-8
    designator_type: int  # 1 T10 vendor ID, 3 NAA, 4 relative target port, ...
    value: bytes
    association: int = 0  # 0 logical unit
    piv: bool = False
    protocol: int = 0

    def encode(self) -> bytes:
        return struct.pack(
            ">BBxB",
            self.protocol << 4 | self.code_set,
            (0x80 if self.piv else 0) | self.association << 4 | self.designator_type,
            len(self.value),
        ) + self.value

    @classmethod
    def parse_all(cls, page: bytes | memoryview) -> list[Designator]:
        """Every designator of a Device Identification VPD page (with its header)."""
        page = bytes(page)
        out: list[Designator] = []
        end = min(len(page), 4 + struct.unpack_from(">H", page, 2)[0])
        pos = 4
        while pos + 4 <= end:
            b0, b1, length = page[pos], page[pos + 1], page[pos + 3]
            out.append(
                cls(b0 & 0xF, b1 & 0xF, page[pos + 4 : pos + 4 + length],
                    association=(b1 >> 4) & 3, piv=bool(b1 & 0x80), protocol=b0 >> 4)
            )
            pos += 4 + length
        return out


#: DESIGNATOR TYPE -> the prefix of its text form (SPC-4 7.8.6.1, Table 596).
DESIGNATOR_PREFIXES = {1: "t10", 2: "eui", 3: "naa", 8: "name"}
#: The designator types that name a logical unit for good (no relative port numbers).
STABLE_DESIGNATOR_TYPES = (3, 2, 8, 1)  # in order of preference


def designator_text(d: Designator) -> str:
    """The text form of a logical unit designator for configuration files: the type's
    prefix and the DESIGNATOR in lowercase hex (``naa.6001405...``, ``eui.``, ``t10.``,
    ``name.``)."""
    prefix = DESIGNATOR_PREFIXES.get(d.designator_type, f"type{d.designator_type}")
    return f"{prefix}.{bytes(d.value).hex()}"


def designator_matches(text: str, d: Designator) -> bool:
    """Whether a logical unit designator (association 0) is the one ``text`` names:
    its text form, or the bare hex of its DESIGNATOR."""
    if d.association != 0:
        return False
    text = text.strip().lower()
    return text in (designator_text(d), bytes(d.value).hex())


def lun_designators(unit_serial: str, vendor: str = "LIO-ORG") -> list[Designator]:
    """The logical unit designators LIO reports for a backstore: NAA 6h and T10 vendor ID."""
    return [
        Designator(1, 3, naa_ieee_registered_extended(unit_serial)),
        Designator(2, 1, _ascii(vendor, 8) + unit_serial.encode("ascii", "replace")),
    ]


def vpd_device_identification(device_type: int, designators: Sequence[Designator]) -> bytes:
    """Device Identification, SPC-4 7.8.6."""
    return vpd_page(device_type, 0x83, b"".join(d.encode() for d in designators))


# --- mode parameters, SPC-4 7.5 -----------------------------------------------------------
#: Mode parameter headers, SPC-4 7.5.5 tables 451 (6) and 452 (10)
MODE_HEADER_6 = Layout(
    "mode parameter header (6)", 4, mode_data_length=bitfield(0),
    medium_type=bitfield(1), device_specific_parameter=bitfield(2),
    block_descriptor_length=bitfield(3),
)
MODE_HEADER_10 = Layout(
    "mode parameter header (10)", 8, mode_data_length=bitfield(0, 16),
    medium_type=bitfield(2), device_specific_parameter=bitfield(3),
    longlba=bitfield(4, 1), block_descriptor_length=bitfield(6, 16),
)
#: Mode page headers, SPC-4 7.5.7 tables 454 (page_0 format) and 455 (sub_page format)
MODE_PAGE_0_HEADER = Layout(
    "mode page header (page_0)", 2, ps=bitfield(0, 1, lsb=7), spf=bitfield(0, 1, lsb=6),
    page_code=bitfield(0, 6), page_length=bitfield(1),
)
MODE_SUBPAGE_HEADER = Layout(
    "mode page header (sub_page)", 4, ps=bitfield(0, 1, lsb=7), spf=bitfield(0, 1, lsb=6),
    page_code=bitfield(0, 6), subpage_code=bitfield(1), page_length=bitfield(2, 16),
)


def mode_header(*, ten: bool) -> Layout:
    """The mode parameter header of MODE SELECT/SENSE (10) or (6) (SPC-4 7.5.5)."""
    return MODE_HEADER_10 if ten else MODE_HEADER_6


def mode_parameter_list(
    *, ten: bool, pages: bytes, block_descriptors: bytes = b"", device_specific: int = 0,
    medium_type: int = 0,
) -> bytes:
    """Mode parameter header (6) or (10) + block descriptors + pages (SPC-4 7.5.5)."""
    layout = mode_header(ten=ten)
    total = layout.length + len(block_descriptors) + len(pages)
    # MODE DATA LENGTH counts the bytes after itself; the 6-byte form's one byte saturates
    after = total - layout.field("mode_data_length").nbytes
    head = layout.encode({
        "mode_data_length": after if ten else min(after, 0xFF), "medium_type": medium_type,
        "device_specific_parameter": device_specific,
        "block_descriptor_length": len(block_descriptors),
    })
    return bytes(head) + block_descriptors + pages


@dataclass(frozen=True, slots=True)
class ModeParameters:
    """A parsed MODE SELECT parameter list."""

    medium_type: int
    device_specific: int
    block_descriptors: tuple[bytes, ...]  # 8 bytes each (short descriptors)
    block_descriptor_offset: int
    pages: tuple[tuple[int, int, int, bytes], ...]  # (page, subpage, offset, whole page)


def parse_mode_parameters(data: bytes | memoryview, *, ten: bool) -> ModeParameters:
    """Split a MODE SELECT parameter list, SPC-4 7.5.5; bad lengths raise the sense
    SPC-4 names (PARAMETER LIST LENGTH ERROR, INVALID FIELD IN PARAMETER LIST)."""
    data = bytes(data)
    layout = mode_header(ten=ten)
    head_len = layout.length
    if len(data) < head_len:
        if not data:
            return ModeParameters(0, 0, (), head_len, ())
        raise ParameterListLengthError(message="mode parameter header truncated")
    head = layout.decode(data)
    medium_type, dsp = head["medium_type"], head["device_specific_parameter"]
    bdl = head["block_descriptor_length"]
    if head.get("longlba"):
        raise InvalidFieldInParameterList(*layout.pointer("longlba"),
                                          "long LBA block descriptors unsupported")
    if bdl % 8 or head_len + bdl > len(data):
        raise InvalidFieldInParameterList(layout.offset("block_descriptor_length"),
                                          message="block descriptor length")
    bds = tuple(data[head_len + i : head_len + i + 8] for i in range(0, bdl, 8))
    pages = []
    pos = head_len + bdl
    while pos < len(data):
        if pos + MODE_PAGE_0_HEADER.length > len(data):
            raise ParameterListLengthError(message="mode page header truncated")
        page = MODE_PAGE_0_HEADER.get("page_code", data, pos)
        if MODE_PAGE_0_HEADER.get("spf", data, pos):
            if pos + MODE_SUBPAGE_HEADER.length > len(data):
                raise ParameterListLengthError(message="mode subpage header truncated")
            page_header = MODE_SUBPAGE_HEADER
            sub = page_header.get("subpage_code", data, pos)
        else:
            page_header, sub = MODE_PAGE_0_HEADER, 0
        plen, hlen = page_header.get("page_length", data, pos), page_header.length
        if pos + hlen + plen > len(data):
            raise ParameterListLengthError(message=f"mode page {page:#x} truncated")
        pages.append((page, sub, pos, data[pos : pos + hlen + plen]))
        pos += hlen + plen
    return ModeParameters(medium_type, dsp, bds, head_len, tuple(pages))


# --- REPORT SUPPORTED OPERATION CODES, SPC-4 6.35 ----------------------------------------
SUPPORT_NOT_SUPPORTED = 0b001
SUPPORT_STANDARD = 0b011

_TIMEOUTS = struct.pack(">HxBII", 10, 0, 0, 0)  # command timeouts descriptor, SPC-4 6.35.4


@dataclass(frozen=True, slots=True)
class CommandDescriptor:
    """One command descriptor of the all commands parameter data, SPC-4 6.35.2: the
    opcode, its service action (when SERVACTV), the CDB length, and the command timeouts
    descriptor's bytes when CTDP is set (b"" otherwise)."""

    opcode: int
    service_action: int | None
    cdb_length: int
    timeouts: bytes = b""

    def encode(self) -> bytes:
        return struct.pack(
            ">BxHxBH", self.opcode, self.service_action or 0,
            (0x02 if self.timeouts else 0) | (self.service_action is not None),
            self.cdb_length) + self.timeouts

    @classmethod
    def of(cls, layout: type[Cdb], *, rctd: bool) -> CommandDescriptor:
        return cls(layout.OPCODE, layout.SERVICE_ACTION, layout.LENGTH,
                   _TIMEOUTS if rctd else b"")


def all_commands_data(descriptors: Iterable[CommandDescriptor]) -> bytes:
    """All commands parameter data (reporting options 000b), SPC-4 6.35.2, in opcode
    and service action order."""
    body = b"".join(d.encode() for d in sorted(
        descriptors, key=lambda d: (d.opcode, d.service_action or 0)))
    return struct.pack(">I", len(body)) + body


def parse_all_commands(data: bytes | memoryview) -> list[CommandDescriptor]:
    """The command descriptors of all commands parameter data (SPC-4 6.35.2), up to the
    COMMAND DATA LENGTH or the bytes given, whichever ends first; a descriptor cut off
    at the end is left out."""
    data = bytes(data)
    if len(data) < 4:
        return []
    end = min(len(data), 4 + struct.unpack_from(">I", data, 0)[0])
    out, pos = [], 4
    while pos + 8 <= end:
        op, sa, flags, length = struct.unpack_from(">BxHxBH", data, pos)
        size = 8 + (12 if flags & 0x02 else 0)
        if pos + size > end:
            break
        out.append(CommandDescriptor(op, sa if flags & 0x01 else None, length,
                                     data[pos + 8:pos + size]))
        pos += size
    return out


def report_all_commands(layouts: Iterable[type[Cdb]], *, rctd: bool) -> bytes:
    """All commands parameter data (reporting options 000b), SPC-4 6.35.2."""
    return all_commands_data(CommandDescriptor.of(c, rctd=rctd) for c in layouts)


def one_command_supported(data: bytes) -> bool:
    """Whether one command parameter data (SPC-4 6.35.3) says the command is supported:
    SUPPORT (byte 1, bits 2-0) 011b (as the standard defines it) or 101b (in a vendor
    specific manner)."""
    return len(data) >= 2 and data[1] & 0x07 in (SUPPORT_STANDARD, 0b101)


def report_one_command(layout: type[Cdb] | None, *, rctd: bool) -> bytes:
    """One command parameter data (reporting options 001b-011b), SPC-4 6.35.3."""
    if layout is None:
        return struct.pack(">xBH", SUPPORT_NOT_SUPPORTED, 0)
    usage = layout.usage_data()
    out = struct.pack(">xBH", (0x80 if rctd else 0) | SUPPORT_STANDARD, len(usage)) + usage
    return out + (_TIMEOUTS if rctd else b"")
