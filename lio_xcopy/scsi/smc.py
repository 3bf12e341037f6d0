"""SMC-3 medium changer wire formats: CDB layouts, element status data, mode pages.

Pure encoders and decoders; :mod:`lio_xcopy.devices.changer` decides what to report,
:mod:`lio_xcopy.initiator.changer` reads a library's answer. Element type codes,
element descriptors and the status header follow SMC-3 READ ELEMENT STATUS; the mode
pages are SMC-3's Element Address Assignment (1Dh), Transport Geometry Parameters (1Eh)
and Device Capabilities (1Fh) pages.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi.cdb import Cdb, bitfield
from lio_xcopy.scsi.layout import Layout

# --- CDB layouts ----------------------------------------------------------------------------


class InitializeElementStatus(
    Cdb, name="INITIALIZE ELEMENT STATUS", opcode=0x07, length=6, clause="SMC-3",
):
    pass


class InitializeElementStatusWithRange(
    Cdb, name="INITIALIZE ELEMENT STATUS WITH RANGE", opcode=0x37, length=10, clause="SMC-3",
):
    fast: int = bitfield(1, 1, lsb=1)
    range: int = bitfield(1, 1)
    starting_element_address: int = bitfield(2, 16)
    number_of_elements: int = bitfield(6, 16)


class PreventAllowMediumRemoval(
    Cdb, name="PREVENT ALLOW MEDIUM REMOVAL", opcode=0x1E, length=6, clause="SMC-3",
):
    prevent: int = bitfield(4, 2)


class PositionToElement(Cdb, name="POSITION TO ELEMENT", opcode=0x2B, length=10, clause="SMC-3"):
    transport_element_address: int = bitfield(2, 16)
    destination_address: int = bitfield(4, 16)
    invert: int = bitfield(8, 1)


class MoveMedium(Cdb, name="MOVE MEDIUM", opcode=0xA5, length=12, clause="SMC-3"):
    transport_element_address: int = bitfield(2, 16)
    source_address: int = bitfield(4, 16)
    destination_address: int = bitfield(6, 16)
    invert: int = bitfield(10, 1)


class ReadElementStatus(Cdb, name="READ ELEMENT STATUS", opcode=0xB8, length=12, clause="SMC-3"):
    voltag: int = bitfield(1, 1, lsb=4)
    element_type_code: int = bitfield(1, 4)
    starting_element_address: int = bitfield(2, 16)
    number_of_elements: int = bitfield(4, 16)
    curdata: int = bitfield(6, 1, lsb=1)
    dvcid: int = bitfield(6, 1)
    allocation_length: int = bitfield(7, 24)


#: PREVENT field values (SMC-3): 0 allows, 1 prevents; 2 and 3 are reserved here.
ALLOW, PREVENT = 0, 1


class ElementType(IntEnum):
    """ELEMENT TYPE CODE, SMC-3 Table 20."""

    ALL = 0
    MEDIUM_TRANSPORT = 1
    STORAGE = 2
    IMPORT_EXPORT = 3
    DATA_TRANSFER = 4


# element descriptor byte 2 flags (SMC-3 READ ELEMENT STATUS)
FULL = 0x01
IMPEXP = 0x02  # import/export: placed there by an operator (1) or the transport (0)
EXCEPT = 0x04
ACCESS = 0x08
EXENAB = 0x10  # import/export: can export
INENAB = 0x20  # import/export: can import
#: MEDIUM TYPE, SMC-3 Table 28 (element descriptor byte 9 bits 2-0).
MEDIUM_TYPE_DATA = 0x1
VOLUME_TAG_LENGTH = 36  # 32-byte volume identifier, 2 reserved, 2-byte sequence number
VOLUME_IDENTIFIER_LENGTH = 32


def volume_tag(barcode: str | None) -> bytes:
    """Volume tag information as READ ELEMENT STATUS reports it (SMC-3): a
    32-byte volume identifier left aligned and space filled, 2 reserved bytes and a
    volume sequence number of zero; all zeros for no medium or no label."""
    if not barcode:
        return bytes(VOLUME_TAG_LENGTH)
    raw = barcode.encode("ascii")
    if len(raw) > VOLUME_IDENTIFIER_LENGTH:
        raise ValueError(f"volume identifier {barcode!r} is longer than 32 characters")
    return raw.ljust(VOLUME_IDENTIFIER_LENGTH, b" ") + bytes(4)


@dataclass(frozen=True, slots=True)
class ElementDescriptor:
    """One element's status, independent of its encoding (SMC-3 READ ELEMENT STATUS).

    ``source`` is the SOURCE STORAGE ELEMENT ADDRESS with SVALID set when not None;
    ``identifier`` is a data transfer element's device identifier (a SPC-4 designation
    descriptor: code set, type and value), reported when DVCID is one.
    """

    address: int
    flags: int = 0
    barcode: str | None = None
    source: int | None = None
    asc: int = 0  # ASC << 8 | ASCQ, meaningful with EXCEPT
    medium_type: int = 0
    identifier: tuple[int, int, bytes] | None = None

    @property
    def full(self) -> bool:
        return bool(self.flags & FULL)

    def encode(self, *, voltag: bool, identifier_length: int | None) -> bytes:
        """Bytes of this descriptor; ``identifier_length`` None leaves out the device
        identifier (DVCID zero), else pads the identifier to that length so every
        descriptor of a page has the page's length."""
        svalid = 0x80 if self.source is not None else 0
        head = struct.pack(
            ">HBxBBxxxBH", self.address, self.flags, self.asc >> 8, self.asc & 0xFF,
            svalid | (self.medium_type & 0x7), self.source or 0,
        )
        tail = volume_tag(self.barcode) if voltag else b""
        if identifier_length is None:
            return head + tail + bytes(4)
        if self.identifier is None:
            return head + tail + bytes(4 + identifier_length)
        code_set, kind, value = self.identifier
        if len(value) > identifier_length:
            raise ValueError("identifier longer than the page's identifier length")
        return (head + tail + struct.pack(">BBxB", code_set & 0xF, kind & 0x3F, len(value))
                + value.ljust(identifier_length, b"\0"))


def element_status_page(
    element_type: ElementType, descriptors: Sequence[ElementDescriptor], *, voltag: bool,
    dvcid: bool = False,
) -> bytes:
    """An element status page: its 8-byte header and descriptors (SMC-3).
    Device identifiers appear only in a data transfer element page with DVCID one."""
    ident_len: int | None = None
    if dvcid and element_type == ElementType.DATA_TRANSFER:
        ident_len = max((len(d.identifier[2]) for d in descriptors if d.identifier), default=0)
    body = b"".join(d.encode(voltag=voltag, identifier_length=ident_len) for d in descriptors)
    length = len(body) // len(descriptors) if descriptors else 0
    return struct.pack(">BBHI", int(element_type), 0x80 if voltag else 0, length,
                       len(body) & 0xFFFFFF) + body


def element_status_data(first_address: int, count: int, pages: Sequence[bytes]) -> bytes:
    """READ ELEMENT STATUS data: the element status header (SMC-3) then the pages;
    BYTE COUNT OF REPORT AVAILABLE counts every page byte, whatever the allocation."""
    body = b"".join(pages)
    return struct.pack(">HHI", first_address, count, len(body) & 0xFFFFFF) + body


class ElementStatusFormatError(LioXcopyError, ValueError):
    """READ ELEMENT STATUS data that does not add up."""


#: element status header, element status page header, element descriptor (SMC-3 6.11)
_STATUS_HEADER = struct.Struct(">HHxBH")
_PAGE_HEADER = struct.Struct(">BBHxBH")
_DESCRIPTOR = struct.Struct(">HBxBBxxxBH")
PVOLTAG = 0x80
AVOLTAG = 0x40
SVALID = 0x80


def volume_identifier(raw: bytes) -> str | None:
    """The 32-byte volume identifier of a volume tag: left aligned, space (or NUL)
    filled; all blank means no label (the inverse of :func:`volume_tag`)."""
    text = raw[:VOLUME_IDENTIFIER_LENGTH].decode("ascii", "replace").rstrip(" \0")
    return text or None


def parse_element_status(
    data: bytes | bytearray | memoryview,
) -> list[tuple[ElementType, ElementDescriptor]]:
    """Every element descriptor of READ ELEMENT STATUS data with its page's element
    type, in the order reported (the inverse of :func:`element_status_data`).

    Each page says its element type, whether descriptors carry a primary (PVOLTAG) and
    alternate (AVOLTAG) volume tag, and its descriptor length; a descriptor longer than
    12 bytes plus its tags holds the device identifier (code set, type, length,
    identifier: DVCID one) or 4 reserved bytes. Data cut short by the allocation length
    yields the descriptors that are whole."""
    buf = bytes(data)
    if len(buf) < _STATUS_HEADER.size:
        raise ElementStatusFormatError(f"element status data of {len(buf)} bytes: the "
                                       "header alone is 8")
    _first, _count, hi, lo = _STATUS_HEADER.unpack_from(buf)
    end = min(len(buf), _STATUS_HEADER.size + (hi << 16 | lo))
    out: list[tuple[ElementType, ElementDescriptor]] = []
    pos = _STATUS_HEADER.size
    while pos + _PAGE_HEADER.size <= end:
        code, tags, dlen, hi, lo = _PAGE_HEADER.unpack_from(buf, pos)
        pos += _PAGE_HEADER.size
        try:
            etype = ElementType(code & 0x0F)
        except ValueError:
            raise ElementStatusFormatError(
                f"element status page of type {code & 0x0F} at byte "
                f"{pos - _PAGE_HEADER.size}: SMC-3 defines 1-4") from None
        if dlen < _DESCRIPTOR.size:
            raise ElementStatusFormatError(f"element descriptor length {dlen} at byte "
                                           f"{pos - 6}: SMC-3 descriptors are at least 12")
        page_end = min(end, pos + (hi << 16 | lo))
        while pos + dlen <= page_end:
            out.append((etype, _parse_descriptor(buf[pos:pos + dlen], tags)))
            pos += dlen
        pos = max(pos, page_end)
    return out


def _parse_descriptor(d: bytes, tags: int) -> ElementDescriptor:
    address, flags, asc, ascq, b9, source = _DESCRIPTOR.unpack(d[:_DESCRIPTOR.size])
    barcode = volume_identifier(d[12:12 + VOLUME_TAG_LENGTH]) if tags & PVOLTAG else None
    ntags = (VOLUME_TAG_LENGTH if tags & PVOLTAG else 0) + (
        VOLUME_TAG_LENGTH if tags & AVOLTAG else 0)
    identifier = None
    rest = d[12 + ntags:]
    if len(rest) >= 4 and rest[3] and 4 + rest[3] <= len(rest):
        identifier = (rest[0] & 0x0F, rest[1] & 0x3F, rest[4:4 + rest[3]])
    return ElementDescriptor(address, flags, barcode, source if b9 & SVALID else None,
                             asc << 8 | ascq, b9 & 0x07, identifier)


# --- mode pages ------------------------------------------------------------------------------
ELEMENT_ADDRESS_ASSIGNMENT_PAGE = 0x1D
TRANSPORT_GEOMETRY_PAGE = 0x1E
DEVICE_CAPABILITIES_PAGE = 0x1F


@dataclass(frozen=True, slots=True)
class ElementRange:
    """First address and number of elements of one type."""

    first: int
    count: int

    def __contains__(self, address: object) -> bool:
        return isinstance(address, int) and self.first <= address < self.first + self.count

    def addresses(self) -> range:
        return range(self.first, self.first + self.count)


# Mode page field tables (SMC-3 7.3): the fields we set; the others are zero.
MODE_PAGE_HEADER_LAYOUT = Layout(
    "mode page header", 2, page_code=bitfield(0, 6), page_length=bitfield(1),
)
ELEMENT_ADDRESS_ASSIGNMENT_LAYOUT = MODE_PAGE_HEADER_LAYOUT.extend(
    "Element Address Assignment mode page", 20,
    first_transport=bitfield(2, 16), transports=bitfield(4, 16),
    first_storage=bitfield(6, 16), storage=bitfield(8, 16),
    first_import_export=bitfield(10, 16), import_export=bitfield(12, 16),
    first_data_transfer=bitfield(14, 16), data_transfer=bitfield(16, 16),
)
#: one per medium transport element, after the Transport Geometry page's header
TRANSPORT_GEOMETRY_DESCRIPTOR_LAYOUT = Layout(
    "transport geometry descriptor", 2, rotate=bitfield(0, 1), member_number=bitfield(1),
)
#: bits of each MOVE MEDIUM capability byte: to DT (3), I/E (2), ST (1), MT (0)
DEVICE_CAPABILITIES_LAYOUT = MODE_PAGE_HEADER_LAYOUT.extend(
    "Device Capabilities mode page", 20,
    stor_dt=bitfield(2, 1, lsb=3), stor_ie=bitfield(2, 1, lsb=2),
    stor_st=bitfield(2, 1, lsb=1), stor_mt=bitfield(2, 1),
    transport_move_to=bitfield(4, 4), storage_move_to=bitfield(5, 4),
    import_export_move_to=bitfield(6, 4), data_transfer_move_to=bitfield(7, 4),
    transport_exchange_with=bitfield(12, 4), storage_exchange_with=bitfield(13, 4),
    import_export_exchange_with=bitfield(14, 4), data_transfer_exchange_with=bitfield(15, 4),
)


def element_address_assignment_page(
    transport: ElementRange, storage: ElementRange, import_export: ElementRange,
    data_transfer: ElementRange,
) -> bytes:
    """Element Address Assignment mode page (1Dh, SMC-3): the first address and number
    of each element type; the PS bit stays zero (nothing to save)."""
    layout = ELEMENT_ADDRESS_ASSIGNMENT_LAYOUT
    return bytes(layout.encode({
        "page_code": ELEMENT_ADDRESS_ASSIGNMENT_PAGE, "page_length": layout.length - 2,
        "first_transport": transport.first, "transports": transport.count,
        "first_storage": storage.first, "storage": storage.count,
        "first_import_export": import_export.first, "import_export": import_export.count,
        "first_data_transfer": data_transfer.first, "data_transfer": data_transfer.count,
    }))


def transport_geometry_page(transports: int) -> bytes:
    """Transport Geometry Parameters mode page (1Eh, SMC-3): one descriptor per
    medium transport; ours cannot rotate media (ROTATE zero), each is its own set."""
    body = b"".join(bytes(TRANSPORT_GEOMETRY_DESCRIPTOR_LAYOUT.encode({"member_number": i}))
                    for i in range(transports))
    return bytes(MODE_PAGE_HEADER_LAYOUT.encode({
        "page_code": TRANSPORT_GEOMETRY_PAGE, "page_length": len(body)})) + body


def device_capabilities_page() -> bytes:
    """Device Capabilities mode page (1Fh, SMC-3): storage, import/export and data
    transfer elements hold media (the transport only in passing); MOVE MEDIUM goes from
    each of them to each of them; EXCHANGE MEDIUM is not supported (zero bytes 12-15)."""
    move = 0b1110  # ->DT, ->I/E, ->ST
    layout = DEVICE_CAPABILITIES_LAYOUT
    return bytes(layout.encode({
        "page_code": DEVICE_CAPABILITIES_PAGE, "page_length": layout.length - 2,
        "stor_dt": True, "stor_ie": True, "stor_st": True,  # not StorMT
        "transport_move_to": 0, "storage_move_to": move, "import_export_move_to": move,
        "data_transfer_move_to": move,
    }))
