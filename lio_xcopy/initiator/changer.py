"""The backup server's side of a medium changer (SMC-3) over SG_IO.

:func:`parse_element_status` decodes READ ELEMENT STATUS data (SMC-3 6.11) — a pure
function on bytes; :class:`Changer` sends READ ELEMENT STATUS (with VOLTAG and DVCID)
and MOVE MEDIUM (SMC-3 6.9), numbers the storage elements 1.. as mtx does, finds a
cartridge by its barcode, and finds which data transfer element is a given tape
device: the drive element's device identifier (DVCID) is the drive's VPD page 83h
NAA designator (or, for libraries that report the serial number, its VPD page 80h).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import smc, spc
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.scsi.smc import ElementType
from lio_xcopy.sg import sgio

#: Element status header and element status page header (SMC-3 6.11.2, 6.11.3).
_HEADER = struct.Struct(">HHxBH")
_PAGE = struct.Struct(">BBHxBH")
_DESCRIPTOR = struct.Struct(">HBxBBxxxBH")
PVOLTAG = 0x80
AVOLTAG = 0x40
SVALID = 0x80
#: How many UNIT ATTENTIONs a command may meet before we give up (one per change).
UNIT_ATTENTION_RETRIES = 5


class ChangerError(LioXcopyError):
    """The library cannot do what was asked; the message says what to do."""


class ElementStatusFormatError(ChangerError, ValueError):
    """READ ELEMENT STATUS data that does not add up."""


@dataclass(frozen=True, slots=True)
class ElementStatus:
    """One element as READ ELEMENT STATUS reports it (SMC-3 6.11.4 - 6.11.7)."""

    element_type: ElementType
    address: int
    full: bool
    flags: int  # byte 2: FULL, IMPEXP, EXCEPT, ACCESS, EXENAB, INENAB
    asc: int = 0  # ASC << 8 | ASCQ, meaningful with EXCEPT
    source: int | None = None  # SOURCE STORAGE ELEMENT ADDRESS when SVALID
    barcode: str | None = None  # primary volume identifier, trailing spaces removed
    identifier: spc.Designator | None = None  # DVCID: the drive's device identifier

    @property
    def exception(self) -> bool:
        return bool(self.flags & smc.EXCEPT)

    @property
    def accessible(self) -> bool:
        return bool(self.flags & smc.ACCESS)


def _volume_identifier(raw: bytes) -> str | None:
    """The 32-byte volume identifier (SMC-3 6.11.8): left aligned, space (or NUL)
    filled; all blank means no label."""
    text = raw[: smc.VOLUME_IDENTIFIER_LENGTH].decode("ascii", "replace").rstrip(" \0")
    return text or None


def parse_element_status(data: bytes | bytearray | memoryview) -> list[ElementStatus]:
    """Every element descriptor of READ ELEMENT STATUS data, in the order reported.

    Each page says its element type, whether descriptors carry a primary (PVOLTAG) and
    alternate (AVOLTAG) volume tag, and its descriptor length; a descriptor longer than
    12 bytes plus its tags holds the device identifier (code set, type, length,
    identifier: DVCID one) or 4 reserved bytes. Data cut short by the allocation length
    yields the descriptors that are whole."""
    buf = bytes(data)
    if len(buf) < _HEADER.size:
        raise ElementStatusFormatError(f"element status data of {len(buf)} bytes: the "
                                       "header alone is 8")
    _first, _count, hi, lo = _HEADER.unpack_from(buf)
    end = min(len(buf), _HEADER.size + (hi << 16 | lo))
    out: list[ElementStatus] = []
    pos = _HEADER.size
    while pos + _PAGE.size <= end:
        code, tags, dlen, hi, lo = _PAGE.unpack_from(buf, pos)
        pos += _PAGE.size
        try:
            etype = ElementType(code & 0x0F)
        except ValueError:
            raise ElementStatusFormatError(f"element status page of type {code & 0x0F} at "
                                           f"byte {pos - _PAGE.size}: SMC-3 defines 1-4") from None
        if dlen < _DESCRIPTOR.size:
            raise ElementStatusFormatError(f"element descriptor length {dlen} at byte "
                                           f"{pos - 6}: SMC-3 descriptors are at least 12")
        page_end = min(end, pos + (hi << 16 | lo))
        ntags = (VOLUME_TAG if tags & PVOLTAG else 0) + (VOLUME_TAG if tags & AVOLTAG else 0)
        while pos + dlen <= page_end:
            out.append(_descriptor(etype, buf[pos:pos + dlen], tags, ntags))
            pos += dlen
        pos = max(pos, page_end)
    return out


VOLUME_TAG = smc.VOLUME_TAG_LENGTH


def _descriptor(etype: ElementType, d: bytes, tags: int, ntags: int) -> ElementStatus:
    address, flags, asc, ascq, b9, source = _DESCRIPTOR.unpack(d[:_DESCRIPTOR.size])
    barcode = _volume_identifier(d[12:12 + VOLUME_TAG]) if tags & PVOLTAG else None
    ident = None
    rest = d[12 + ntags:]
    if len(rest) >= 4 and rest[3]:
        n = rest[3]
        if 4 + n <= len(rest):
            ident = spc.Designator(rest[0] & 0x0F, rest[1] & 0x0F, rest[4:4 + n],
                                   association=(rest[1] >> 4) & 3)
    return ElementStatus(etype, address, bool(flags & smc.FULL), flags, asc << 8 | ascq,
                         source if b9 & SVALID else None, barcode, ident)


# --- the changer -----------------------------------------------------------------------------
def _retry_unit_attention(send: Callable[[], sgio.Result]) -> sgio.Result:
    """A changer reports each change (cartridges imported, power on) once as UNIT
    ATTENTION without running the command (SPC-4 5.9): send it again."""
    for _ in range(UNIT_ATTENTION_RETRIES):
        try:
            return send()
        except sgio.ScsiCommandError as e:
            if e.key != SenseKey.UNIT_ATTENTION:
                raise
    return send()


@dataclass(frozen=True, slots=True)
class Inventory:
    """The library's elements, by kind; storage slots numbered 1.. in address order,
    import/export slots after them (as ``mtx status`` numbers them)."""

    transports: tuple[ElementStatus, ...]
    slots: tuple[ElementStatus, ...]  # storage, then import/export
    drives: tuple[ElementStatus, ...]

    @classmethod
    def of(cls, elements: Sequence[ElementStatus]) -> Inventory:
        def kind(*types: ElementType) -> tuple[ElementStatus, ...]:
            return tuple(sorted((e for e in elements if e.element_type in types),
                                key=lambda e: (types.index(e.element_type), e.address)))

        return cls(kind(ElementType.MEDIUM_TRANSPORT),
                   kind(ElementType.STORAGE, ElementType.IMPORT_EXPORT),
                   kind(ElementType.DATA_TRANSFER))

    def slot(self, number: int) -> ElementStatus:
        if not 1 <= number <= len(self.slots):
            raise ChangerError(f"slot {number} does not exist: the library has slots 1-"
                               f"{len(self.slots)} (`mtx status` lists them)")
        return self.slots[number - 1]

    def slot_number(self, address: int) -> int | None:
        return next((i + 1 for i, e in enumerate(self.slots) if e.address == address), None)

    def drive_number(self, address: int) -> int | None:
        return next((i for i, e in enumerate(self.drives) if e.address == address), None)

    def find(self, barcode: str) -> ElementStatus | None:
        """The slot or drive that holds the cartridge labelled ``barcode``."""
        return next((e for e in (*self.slots, *self.drives) if e.full and e.barcode == barcode),
                    None)

    def drive_for(self, naa: bytes | None, serial: str | None = None) -> ElementStatus | None:
        """The data transfer element whose device identifier is this drive: its NAA
        designator (VPD 83h), or its unit serial number (VPD 80h) for libraries that
        report that (ASCII, vendor specific or T10 vendor ID type)."""
        for e in self.drives:
            ident = e.identifier
            if ident is None:
                continue
            if ident.designator_type == 3 and naa and ident.value == naa:
                return e
            if serial and ident.code_set in (2, 3):
                text = ident.value.decode("ascii", "replace").strip(" \0")
                if text == serial or (ident.designator_type == 1 and text.endswith(serial)):
                    return e
        return None

    def free_slot(self) -> ElementStatus | None:
        return next((e for e in self.slots if not e.full
                     and e.element_type == ElementType.STORAGE), None)


class Changer:
    """A medium changer reached through an open :class:`~lio_xcopy.sg.sgio.ScsiDevice`."""

    def __init__(self, dev: sgio.ScsiDevice):
        self.dev = dev
        self.dvcid = True  # cleared when the changer refuses DVCID

    @property
    def path(self) -> str:
        return self.dev.path

    def check_type(self) -> None:
        pdt = self.dev.peripheral_device_type()
        if pdt != spc.TYPE_MEDIUM_CHANGER:
            raise ChangerError(f"{self.path} is peripheral device type {pdt:#04x}, not a "
                               "medium changer (08h): give the library's changer (`lsscsi "
                               "-g` shows it as mediumx)")

    def read_element_status(self, allocation: int = 0x10000) -> list[ElementStatus]:
        """Every element with volume tags and, when the changer supports it, device
        identifiers (SMC-3 6.11: VOLTAG one, DVCID one); read again at the full length
        when the first allocation was too short."""
        while True:
            cdb = smc.ReadElementStatus(
                voltag=1, element_type_code=ElementType.ALL, starting_element_address=0,
                number_of_elements=0xFFFF, dvcid=int(self.dvcid),
                allocation_length=allocation).encode()
            try:
                r = _retry_unit_attention(
                    partial(self.dev.execute, cdb, data_in=allocation, timeout=120))
            except sgio.ScsiCommandError as e:
                if self.dvcid and e.asc == Asc.INVALID_FIELD_IN_CDB:
                    self.dvcid = False  # an SMC-2 changer: no device identifiers
                    continue
                raise
            data = r.data
            if len(data) >= 8:
                want = 8 + int.from_bytes(data[5:8], "big")
                if want > len(data) and allocation < 0xFFFFFF and len(data) >= allocation:
                    allocation = min(want, 0xFFFFFF)
                    continue
            return parse_element_status(data)

    def inventory(self) -> Inventory:
        return Inventory.of(self.read_element_status())

    def move(self, source: int, destination: int, inv: Inventory | None = None) -> None:
        """MOVE MEDIUM (SMC-3 6.9) with the library's first medium transport."""
        inv = inv or self.inventory()
        transport = inv.transports[0].address if inv.transports else 0
        cdb = smc.MoveMedium(transport_element_address=transport, source_address=source,
                              destination_address=destination).encode()
        try:
            _retry_unit_attention(lambda: self.dev.execute(cdb, timeout=600))
        except sgio.ScsiCommandError as e:
            raise ChangerError(f"{self.path}: moving the cartridge from element "
                               f"{source:#06x} to {destination:#06x} failed: {e}") from e


def wait_ready(dev: sgio.ScsiDevice, timeout: float = 120,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> int:
    """TEST UNIT READY until the drive is ready: UNIT ATTENTION (the new cartridge,
    SPC-4 5.9) is consumed and retried, NOT READY BECOMING READY waited for; MEDIUM
    NOT PRESENT after ``timeout`` is an error. Returns the unit attentions seen."""
    deadline = clock() + timeout
    attentions = 0
    while True:
        try:
            dev.test_unit_ready()
            return attentions
        except sgio.ScsiCommandError as e:
            if e.key == SenseKey.UNIT_ATTENTION and attentions < UNIT_ATTENTION_RETRIES:
                attentions += 1
                continue
            if e.key != SenseKey.NOT_READY or clock() > deadline:
                if e.asc == Asc.MEDIUM_NOT_PRESENT:
                    raise ChangerError(f"{dev.path}: no cartridge in the drive; load one "
                                       "(--changer/--slot, or mtx load)") from e
                raise
        sleep(0.2)
