"""SMC-3 medium changer over a cartridge library (:mod:`lio_xcopy.devices.library`).

What mtx, the Linux ``ch`` driver and backup applications send: INITIALIZE ELEMENT
STATUS (and WITH RANGE), READ ELEMENT STATUS with volume tags and device identifiers,
MOVE MEDIUM, POSITION TO ELEMENT, PREVENT ALLOW MEDIUM REMOVAL and MODE SENSE of pages
1Dh, 1Eh and 1Fh. EXCHANGE MEDIUM is not supported (INVALID COMMAND OPERATION CODE; the
device capabilities page says so).

An operator importing or exporting cartridges (another process, through the library
directory) makes the next command see UNIT ATTENTION, IMPORT OR EXPORT ELEMENT
ACCESSED; other operator changes to the storage slots NOT READY TO READY CHANGE,
MEDIUM MAY HAVE CHANGED (ASC/ASCQ 28h/01h and 28h/00h, SPC-4 Annex D).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from itertools import groupby
from typing import Any

from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity, command
from lio_xcopy.devices.library import Library, Place, State
from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import smc, spc
from lio_xcopy.scsi.errors import CheckCondition, HardwareError, IllegalRequest, UnitAttention
from lio_xcopy.scsi.sense import Asc
from lio_xcopy.scsi.smc import ElementDescriptor, ElementType

#: Commands that neither report nor clear a unit attention (SPC-4's unit attention
#: conditions; REPORT LUNS is answered by the kernel).
_NO_ATTENTION = (spc.Inquiry.OPCODE, spc.RequestSense.OPCODE)
#: SAM-5, SPC-4, SMC-3 (no version claimed).
VERSION_DESCRIPTORS = (0x00A0, 0x0460, 0x0480)


class MediumChanger(LogicalUnit):
    """A library's robot: peripheral device type 08h."""

    DEVICE_TYPE = spc.TYPE_MEDIUM_CHANGER
    PRODUCT = "lio-xcopy lib"
    REMOVABLE = True
    LONG_OPCODES = frozenset(c.OPCODE for c in (
        smc.MoveMedium, smc.InitializeElementStatus, smc.InitializeElementStatusWithRange))
    VERSION_DESCRIPTORS = VERSION_DESCRIPTORS

    def __init__(self, identity: LunIdentity, library: Library):
        self.library = library
        super().__init__(identity)
        self._lock = threading.RLock()
        s = library.state()
        self._seen = (s.ie_accesses, s.inventory_changes)
        if s.prevent_removal:  # a power on ends the prevention
            library.set_prevent(prevent=False)

    # a changer is no copy source or destination: it never claims 3PC
    @property
    def copy_manager(self) -> Any:
        return None

    @copy_manager.setter
    def copy_manager(self, value: Any) -> None:
        pass

    # --- the handler boundary ----------------------------------------------------------------
    def handle(self, cmd: Command) -> int | Future[int]:
        with self._lock:
            try:
                attention = self._attention(report=cmd.opcode not in _NO_ATTENTION)
                if attention is not None and cmd.opcode not in _NO_ATTENTION:
                    raise UnitAttention(attention)
                return super().handle(cmd)
            except CheckCondition:
                raise
            except LioXcopyError as e:  # the library directory failed us
                self.log.error("%s", e)
                raise HardwareError(str(e)) from e

    def _attention(self, *, report: bool) -> Asc | None:
        """The unit attention an operator's change established, cleared when reported."""
        s = self.library.state()
        seen = (s.ie_accesses, s.inventory_changes)
        if seen == self._seen:
            return None
        ie_changed = seen[0] != self._seen[0]
        if report:
            self._seen = seen
        return (Asc.IMPORT_OR_EXPORT_ELEMENT_ACCESSED if ie_changed
                else Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED)

    def standard_inquiry(self) -> spc.StandardInquiry:
        return spc.StandardInquiry(
            device_type=self.DEVICE_TYPE, vendor=self.identity.vendor,
            product=self.identity.product or self.PRODUCT, revision=self.identity.revision,
            removable=self.REMOVABLE, third_party_copy=False,
            version_descriptors=self.VERSION_DESCRIPTORS,
        )

    # --- element status ----------------------------------------------------------------------
    def descriptors(self, s: State) -> list[tuple[ElementType, ElementDescriptor]]:
        """Every element in address order."""
        ranges = self.library.ranges(s)
        out: list[tuple[ElementType, ElementDescriptor]] = [
            (ElementType.MEDIUM_TRANSPORT, ElementDescriptor(a))
            for a in ranges[ElementType.MEDIUM_TRANSPORT].addresses()
        ]
        ie_flags = smc.INENAB | smc.EXENAB | smc.ACCESS
        for i, p in enumerate(s.ie):
            flags = ie_flags | (smc.IMPEXP if p is not None and p.by_operator else 0)
            out.append((ElementType.IMPORT_EXPORT,
                        _descriptor(ranges[ElementType.IMPORT_EXPORT].first + i, flags, p)))
        for i, p in enumerate(s.drives):
            serial = s.drive_serials[i]
            ident = (1, 3, spc.naa_ieee_registered_extended(serial)) if serial else None
            out.append((ElementType.DATA_TRANSFER,
                        _descriptor(ranges[ElementType.DATA_TRANSFER].first + i, smc.ACCESS, p,
                                    ident)))
        for i, p in enumerate(s.slots):
            out.append((ElementType.STORAGE,
                        _descriptor(ranges[ElementType.STORAGE].first + i, smc.ACCESS, p)))
        return sorted(out, key=lambda e: e[1].address)

    @command(smc.ReadElementStatus)
    def read_element_status(self, cmd: Command, cdb: smc.ReadElementStatus) -> int:
        layout = smc.ReadElementStatus
        try:
            want = ElementType(cdb.element_type_code)
        except ValueError as e:
            raise layout.invalid("element_type_code") from e
        s = self.library.state()
        chosen = [(t, d) for t, d in self.descriptors(s)
                  if (want is ElementType.ALL or t is want)
                  and d.address >= cdb.starting_element_address]
        if not chosen:
            raise IllegalRequest(Asc.INVALID_ELEMENT_ADDRESS, 2,
                                 message=f"no {want.name} element at or above "
                                 f"{cdb.starting_element_address:#06x}")
        chosen = chosen[: cdb.number_of_elements]
        pages = [
            smc.element_status_page(t, [d for _, d in group], voltag=bool(cdb.voltag),
                                    dvcid=bool(cdb.dvcid))
            for t, group in ((t, list(g)) for t, g in groupby(chosen, key=lambda e: e[0]))
        ]
        first = chosen[0][1].address if chosen else cdb.starting_element_address
        data = smc.element_status_data(first, len(chosen), pages)
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    @command(smc.InitializeElementStatus)
    def initialize_element_status(self, cmd: Command, cdb: smc.InitializeElementStatus) -> int:  # noqa: ARG002
        """Our inventory is the library file: read it again."""
        self.library.state()
        return 0

    @command(smc.InitializeElementStatusWithRange)
    def initialize_element_status_with_range(self, cmd: Command,  # noqa: ARG002
                                             cdb: smc.InitializeElementStatusWithRange) -> int:
        s = self.library.state()
        if cdb.range and self.library.element(cdb.starting_element_address, s) is None:
            raise IllegalRequest(Asc.INVALID_ELEMENT_ADDRESS, 2,
                                 message=f"no element at {cdb.starting_element_address:#06x}")
        return 0

    # --- moving media ------------------------------------------------------------------------
    @command(smc.MoveMedium)
    def move_medium(self, cmd: Command, cdb: smc.MoveMedium) -> int:  # noqa: ARG002
        if cdb.invert:
            raise smc.MoveMedium.invalid("invert", "media cannot be inverted")
        self.library.check_transport(cdb.transport_element_address, self.library.state())
        barcode = self.library.move(cdb.source_address, cdb.destination_address)
        self.log.info("MOVE MEDIUM %s: %#06x -> %#06x", barcode, cdb.source_address,
                      cdb.destination_address)
        return 0

    @command(smc.PositionToElement)
    def position_to_element(self, cmd: Command, cdb: smc.PositionToElement) -> int:  # noqa: ARG002
        if cdb.invert:
            raise smc.PositionToElement.invalid("invert", "media cannot be inverted")
        s = self.library.state()
        self.library.check_transport(cdb.transport_element_address, s)
        hit = self.library.element(cdb.destination_address, s)
        if hit is None or hit[0] is ElementType.MEDIUM_TRANSPORT:
            raise IllegalRequest(Asc.INVALID_ELEMENT_ADDRESS, 4,
                                 message=f"no element at {cdb.destination_address:#06x}")
        return 0

    @command(smc.PreventAllowMediumRemoval)
    def prevent_allow_medium_removal(self, cmd: Command, cdb: smc.PreventAllowMediumRemoval) -> int:  # noqa: ARG002
        """Locks the import/export door against the operator (SMC-3)."""
        if cdb.prevent not in (smc.ALLOW, smc.PREVENT):
            raise smc.PreventAllowMediumRemoval.invalid("prevent")
        self.library.set_prevent(prevent=cdb.prevent == smc.PREVENT)
        return 0

    # --- mode parameters ---------------------------------------------------------------------
    def mode_pages(self, pc: int) -> dict[tuple[int, int], bytes]:
        r = self.library.ranges()
        pages = {
            (smc.ELEMENT_ADDRESS_ASSIGNMENT_PAGE, 0): smc.element_address_assignment_page(
                r[ElementType.MEDIUM_TRANSPORT], r[ElementType.STORAGE],
                r[ElementType.IMPORT_EXPORT], r[ElementType.DATA_TRANSFER]),
            (smc.TRANSPORT_GEOMETRY_PAGE, 0): smc.transport_geometry_page(
                r[ElementType.MEDIUM_TRANSPORT].count),
            (smc.DEVICE_CAPABILITIES_PAGE, 0): smc.device_capabilities_page(),
        }
        if pc == spc.PC_CHANGEABLE:  # nothing is changeable
            return {k: v[:2] + bytes(len(v) - 2) for k, v in pages.items()}
        return pages


def _descriptor(address: int, flags: int, place: Place | None,
                identifier: tuple[int, int, bytes] | None = None) -> ElementDescriptor:
    if place is None:
        return ElementDescriptor(address, flags, identifier=identifier)
    return ElementDescriptor(address, flags | smc.FULL, place.barcode, place.source,
                             medium_type=smc.MEDIUM_TYPE_DATA, identifier=identifier)
