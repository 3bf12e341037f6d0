"""The backup server's side of a medium changer (SMC-3) over SG_IO.

:func:`parse_element_status` reads READ ELEMENT STATUS data (SMC-3 6.11, decoded by
:func:`lio_xcopy.scsi.smc.parse_element_status`); :class:`Changer` sends READ ELEMENT
STATUS (with VOLTAG and DVCID) and MOVE MEDIUM (SMC-3 6.9), numbers the storage
elements 1.. as mtx does, finds a cartridge by its barcode, and finds which data
transfer element is a given tape device: the drive element's device identifier (DVCID)
is the drive's VPD page 83h NAA designator (or, for libraries that report the serial
number, its VPD page 80h).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import smc, spc
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.scsi.smc import ElementType
from lio_xcopy.sg import sgio
from lio_xcopy.sg.transport import ScsiTransport

#: How many UNIT ATTENTIONs a command may meet before we give up (one per change).
UNIT_ATTENTION_RETRIES = 5


class ChangerError(LioXcopyError):
    """The library cannot do what was asked; the message says what to do."""


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


def parse_element_status(data: bytes | bytearray | memoryview) -> list[ElementStatus]:
    """Every element of READ ELEMENT STATUS data (:func:`smc.parse_element_status`), in
    the order reported, a data transfer element's device identifier as a designator."""
    out = []
    for etype, d in smc.parse_element_status(data):
        ident = None
        if d.identifier is not None:
            code_set, kind, value = d.identifier
            ident = spc.Designator(code_set, kind & 0x0F, value, association=(kind >> 4) & 3)
        out.append(ElementStatus(etype, d.address, d.full, d.flags, d.asc, d.source,
                                 d.barcode, ident))
    return out


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
    """A medium changer reached through an open :class:`~lio_xcopy.sg.transport.ScsiTransport`."""

    def __init__(self, dev: ScsiTransport):
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


def wait_ready(dev: ScsiTransport, timeout: float = 120,
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
