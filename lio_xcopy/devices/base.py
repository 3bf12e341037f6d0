"""What every SCSI device shares: the handler boundary and the SPC-4 commands.

After tcmu-runner's ``tcmur_handler``: a device is opened over a backing store,
``handle`` answers one command, ``flush`` makes written data durable and ``close``
releases the store. Handlers register with :func:`command` against a CDB layout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Protocol, TypeAlias, TypeVar

from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi import spc, tpc_vpd, xcopy
from lio_xcopy.scsi.cdb import Cdb
from lio_xcopy.scsi.errors import (
    CheckCondition,
    InvalidFieldInCdb,
    InvalidOpcode,
    ParameterListLengthError,
)
from lio_xcopy.scsi.sense import SenseData, SenseKey

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Command:
    """One SCSI command as a device sees it: the CDB and its Data-In/Data-Out buffer."""

    cdb: bytes
    data: DataBuffer = field(default_factory=DataBuffer)

    @property
    def opcode(self) -> int:
        return self.cdb[0]


@dataclass(frozen=True, slots=True)
class LunIdentity:
    """Who a LUN says it is (INQUIRY, VPD 80h/83h). ``unit_serial`` is LIO's
    ``wwn/vpd_unit_serial`` of the storage object, so our NAA equals the kernel's."""

    name: str
    unit_serial: str
    vendor: str = "LIO-ORG"
    product: str = ""
    revision: str = "0001"


@dataclass(frozen=True, slots=True)
class DirectIo:
    """The terms on which a transport may move a LUN's plain READ and WRITE (10/16) itself,
    between its buffers and ``fd``, as the LUN would (SBC-4 5.13, 5.15, 5.37, 5.39):
    blocks of ``block_size`` bytes, LBA ``lba`` at byte ``lba * block_size`` of ``fd``.
    Anything else, and any command outside these terms, is the LUN's to answer."""

    fd: int
    block_size: int
    blocks: int  # the LUN's capacity: a command past it is the LUN's to refuse
    max_blocks: int  # MAXIMUM TRANSFER LENGTH of the Block Limits VPD page (0: none)
    writable: bool  # WRITEs too, each one a shared hold of the LUN's atomicity lock
    dsync: bool  # every write durable before GOOD (the write cache is disabled)


class TaskManagement(Enum):
    """SAM-5 7.1 task management functions, as the transport reports them to a LUN."""

    ABORT_TASK = "ABORT TASK"
    ABORT_TASK_SET = "ABORT TASK SET"
    CLEAR_ACA = "CLEAR ACA"
    CLEAR_TASK_SET = "CLEAR TASK SET"
    LOGICAL_UNIT_RESET = "LOGICAL UNIT RESET"
    TARGET_RESET = "TARGET RESET"


Handler = Callable[[Any, Command, Any], int | Future[int]]

#: a command moving at least this many bytes runs off the transport's loop
LONG_TRANSFER = 256 * 1024


class CopyManagerLink(Protocol):
    """What a device needs of the copy manager (which lives in a higher layer)."""

    #: what it accepts, as OPERATING PARAMETERS and the Third-party Copy VPD page report it
    limits: xcopy.Limits

    def extended_copy(self, receiving: LogicalUnit, data: bytes, *,
                      lid4: bool = False) -> Future[int]: ...

    def receive_copy_results(self, receiving: LogicalUnit, cdb: ReceiveCopyCdb, *,
                             room: int | None = None) -> bytes: ...

    def abort(self, fut: Future[int]) -> bool: ...

    def reset(self, receiving: LogicalUnit) -> list[Any]: ...

    def copy_operation_abort(self, receiving: LogicalUnit,
                             list_id: int) -> Future[int] | None: ...


#: what RECEIVE COPY RESULTS hands the copy manager: the service actions of SPC-4 r31 6.18,
#: RECEIVE COPY STATUS and DATA (LID4) (SPC-4 6.20, 6.24) and the vendor RECEIVE COPY DIGEST
ReceiveCopyCdb: TypeAlias = (
    xcopy.ReceiveCopyResultsCopyStatus | xcopy.ReceiveCopyResultsReceiveData
    | xcopy.ReceiveCopyResultsOperatingParameters
    | xcopy.ReceiveCopyResultsFailedSegmentDetails | xcopy.ReceiveCopyStatusLid4
    | xcopy.ReceiveCopyDataLid4 | xcopy.ReceiveCopyDigest
)


#: the attribute :func:`command` sets on a handler: the CDB layouts it answers
_LAYOUTS = "_scsi_layouts"


H = TypeVar("H", bound=Handler)


def _is_third_party_copy(layout: type[Cdb]) -> bool:
    """EXTENDED COPY, COPY OPERATION ABORT (83h), RECEIVE COPY RESULTS (84h) and the
    vendor RECEIVE COPY DIGEST: the commands a copy manager answers (SPC-4 6.4, 6.5)."""
    return layout.OPCODE in (xcopy.ExtendedCopyLid1.OPCODE, xcopy.ReceiveCopyDigest.OPCODE,
                             xcopy.RECEIVE_COPY_RESULTS[0].OPCODE)


def command(*layouts: type[Cdb]) -> Callable[[H], H]:
    """Register a device method as the handler of these CDB layouts."""

    def mark(fn: H) -> H:
        setattr(fn, _LAYOUTS, layouts)
        return fn

    return mark


class LogicalUnit:
    """A logical unit this target serves (SAM-5: the logical unit and its device server),
    the base of each device type: dispatch by opcode (and service action), SPC-4 commands."""

    #: PERIPHERAL DEVICE TYPE (SPC-4 6.6.2): the class's, or (pass-through) the device's
    DEVICE_TYPE: int
    PRODUCT: ClassVar[str] = "lio-xcopy"
    REMOVABLE: ClassVar[bool] = False
    VERSION_DESCRIPTORS: ClassVar[tuple[int, ...]] = (0x00A0, 0x0460)
    #: opcodes whose cost grows with their CDB fields rather than with their buffer
    #: (a SPACE count, a cartridge to scan, a cache to flush)
    LONG_OPCODES: ClassVar[frozenset[int]] = frozenset()
    #: how many of its :meth:`unordered` commands the transport may run at once (SAM-5
    #: 8.6: SIMPLE tasks may run in any order); every other command runs in the order it
    #: came, as a sequential-access device needs
    IO_WORKERS: ClassVar[int] = 1
    #: the commands that only report state no other command of this class changes
    #: outside its handler (see :meth:`repeatable`)
    REPEATABLE: ClassVar[tuple[type[Cdb], ...]] = ()
    _dispatch: ClassVar[dict[tuple[int, int | None], tuple[type[Cdb], str]]]
    _layouts: ClassVar[tuple[type[Cdb], ...]]  # every layout dispatched
    _layouts_no_copy: ClassVar[tuple[type[Cdb], ...]]  # less the third-party copy ones
    _with_service_action: ClassVar[frozenset[int]]  # opcodes told apart by service action

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        table: dict[tuple[int, int | None], tuple[type[Cdb], str]] = {}
        for klass in reversed(cls.__mro__):
            for name, fn in vars(klass).items():
                for layout in getattr(fn, _LAYOUTS, ()):
                    table[(layout.OPCODE, layout.SERVICE_ACTION)] = (layout, name)
        cls._dispatch = table
        cls._layouts = tuple(layout for layout, _ in table.values())
        cls._layouts_no_copy = tuple(layout for layout in cls._layouts
                                     if not _is_third_party_copy(layout))
        cls._with_service_action = frozenset(op for op, sa in table if sa is not None)

    def __init__(self, identity: LunIdentity):
        self.identity = identity
        self.log = logging.LoggerAdapter(log, {"lun": identity.name})
        self.copy_manager: CopyManagerLink | None = None  # set when copies are served

    @property
    def name(self) -> str:
        """The LUN's name (its storage object's), for logs and copy groups."""
        return self.identity.name

    @property
    def peripheral_device_type(self) -> int:
        """PERIPHERAL DEVICE TYPE of standard INQUIRY data (SPC-4 6.6.2)."""
        return self.DEVICE_TYPE

    # --- the handler boundary -----------------------------------------------------------
    def handle(self, cmd: Command) -> int | Future[int]:
        """Answer one command; return the Data-In byte count or raise CheckCondition.
        A long command (EXTENDED COPY) returns a Future that resolves the same way on
        its worker's thread; ``cmd.data`` stays valid until then."""
        layout, name = self._lookup(cmd.cdb)
        method: Callable[[Command, Any], int | Future[int]] = getattr(self, name)
        return method(cmd, layout.decode(cmd.cdb))

    def runs_long(self, cmd: Command) -> bool:
        """Whether answering ``cmd`` may take long: a transfer of
        :data:`LONG_TRANSFER` bytes or more, one of :attr:`LONG_OPCODES`, or EXTENDED
        COPY (resolving its CSCDs may ask other devices, through the kernel, who they
        are). The transport runs such commands where they hold up no other LUN."""
        return len(cmd.data) >= LONG_TRANSFER or (bool(cmd.cdb) and (
            cmd.cdb[0] in self.LONG_OPCODES or cmd.cdb[0] == xcopy.ExtendedCopyLid1.OPCODE))

    def unordered(self, cdb: bytes) -> bool:  # noqa: ARG002
        """Whether ``cdb`` may run beside the LUN's other commands, in any order (a
        disk's READ or WRITE); the transport runs :attr:`IO_WORKERS` such at once."""
        return False

    def repeatable(self, cdb: bytes) -> bool:
        """Whether the GOOD answer to ``cdb`` may be given again, byte for byte, to the
        same CDB with the same buffer, for as long as no other command reaches
        :meth:`handle` and the LUN's :meth:`direct_io` terms and copy manager stay the
        same: a report of the LUN's own state (one of :attr:`REPEATABLE`), which neither
        READ nor WRITE changes."""
        if not self.REPEATABLE:
            return False
        try:
            layout, _ = self._lookup(cdb)
        except CheckCondition:
            return False
        return layout in self.REPEATABLE

    def carries_data_out(self, cdb: bytes) -> bool:
        """Whether ``cdb`` is a command of ours whose buffer is Data-Out (write data, a
        parameter list). Unknown and malformed CDBs count as Data-In, so the transport
        never leaves bytes it did not produce in a buffer bound for the initiator."""
        try:
            layout, _ = self._lookup(cdb)
        except CheckCondition:
            return False
        return layout.DATA_OUT

    def task_management(self, function: TaskManagement) -> None:
        """SAM-5 7.1: ``function`` reached this LUN, and the transport has aborted the
        commands it names that had not started. A device that answers each command
        by itself has nothing more to do."""

    def flush(self) -> None:
        """Make every acknowledged write durable."""

    def direct_io(self) -> DirectIo | None:
        """The terms on which the transport may serve plain READs and WRITEs itself now
        (:class:`DirectIo`), or None: every command comes to :meth:`handle`. Terms that
        are ``writable`` hold the LUN's writes shared until :meth:`direct_io_done`."""
        return None

    def direct_io_done(self, io: DirectIo) -> None:
        """The transport is done with the terms :meth:`direct_io` gave."""

    def close(self) -> None:
        """Release the backing store."""

    @classmethod
    def layouts(cls) -> list[type[Cdb]]:
        """Every CDB layout the class dispatches."""
        return list(cls._layouts)

    def supported_layouts(self) -> list[type[Cdb]]:
        """The layouts this LUN answers (SPC-4 6.35: what REPORT SUPPORTED OPERATION CODES
        lists): the third-party copy commands only while a copy manager serves it."""
        return list(self._supported())

    def _supported(self) -> tuple[type[Cdb], ...]:
        return self._layouts if self.copy_manager is not None else self._layouts_no_copy

    def _lookup(self, cdb: bytes) -> tuple[type[Cdb], str]:
        if not cdb:
            raise InvalidOpcode(0)
        opcode = cdb[0]
        hit = self._dispatch.get((opcode, None))
        if hit:
            return hit
        if len(cdb) > 1 and opcode in self._with_service_action:
            hit = self._dispatch.get((opcode, cdb[1] & 0x1F))
            if hit:
                return hit
            raise InvalidFieldInCdb(1, 4, f"service action {cdb[1] & 0x1F:#x} of {opcode:#x}")
        raise InvalidOpcode(opcode)

    # --- SPC-4 commands every LUN answers -----------------------------------------------
    @command(spc.TestUnitReady)
    def test_unit_ready(self, cmd: Command, cdb: spc.TestUnitReady) -> int:  # noqa: ARG002
        self.check_ready()
        return 0

    def check_ready(self) -> None:
        """Raise NOT READY when the LUN cannot take media access commands."""

    @command(spc.RequestSense)
    def request_sense(self, cmd: Command, cdb: spc.RequestSense) -> int:
        """SPC-4 6.39: sense is reported with each CHECK CONDITION (autosense), so there
        is nothing pending here."""
        sense = self.pending_sense() or SenseData(SenseKey.NO_SENSE)
        return cmd.data.copy_in(spc.truncate(sense.encode(descriptor=bool(cdb.desc)),
                                             cdb.allocation_length))

    def pending_sense(self) -> SenseData | None:
        return None

    @command(spc.Inquiry)
    def inquiry(self, cmd: Command, cdb: spc.Inquiry) -> int:
        if not cdb.evpd:
            if cdb.page_code:
                raise spc.Inquiry.invalid("page_code")
            data = self.standard_inquiry().encode()
        else:
            pages = self.vpd_pages()
            builder = pages.get(cdb.page_code)
            if builder is None:
                raise spc.Inquiry.invalid("page_code")
            data = builder()
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def standard_inquiry(self) -> spc.StandardInquiry:
        return spc.StandardInquiry(
            device_type=self.DEVICE_TYPE,
            vendor=self.identity.vendor,
            product=self.identity.product or self.PRODUCT,
            revision=self.identity.revision,
            removable=self.REMOVABLE,
            third_party_copy=self.copy_manager is not None,
            version_descriptors=self.VERSION_DESCRIPTORS,
        )

    def vpd_pages(self) -> dict[int, Callable[[], bytes]]:
        """VPD page code -> builder; subclasses add their own pages."""
        t = self.DEVICE_TYPE
        pages: dict[int, Callable[[], bytes]] = {
            0x80: lambda: spc.vpd_unit_serial(t, self.identity.unit_serial),
            0x83: lambda: spc.vpd_device_identification(t, self.designators()),
        }
        if self.copy_manager is not None:
            pages[tpc_vpd.VPD_THIRD_PARTY_COPY] = self.third_party_copy_page
        pages[0x00] = lambda: spc.vpd_supported_pages(t, pages)
        return pages

    def third_party_copy_page(self) -> bytes:
        """Third-party Copy VPD page (SPC-4 7.8.17), required of a LUN that sets 3PC:
        the copy manager's limits, as its OPERATING PARAMETERS reports them, and the
        third-party copy commands this LUN dispatches."""
        if self.copy_manager is None:
            raise spc.Inquiry.invalid("page_code")
        return tpc_vpd.third_party_copy_page(
            self.DEVICE_TYPE, self.copy_manager.limits, self._dispatch).encode()

    def designators(self) -> list[spc.Designator]:
        return spc.lun_designators(self.identity.unit_serial, self.identity.vendor)

    def copy_end(self) -> Any:
        """What the copy manager reads and writes when a copy names this LUN (a block
        or stream port, ``lio_xcopy.copy.ports``): the device itself. A LUN whose data
        lives elsewhere returns a port onto it, which the manager closes after the
        copy."""
        return self

    @command(spc.ReportSupportedOperationCodes)
    def report_supported_operation_codes(self, cmd: Command,
                                         cdb: spc.ReportSupportedOperationCodes) -> int:
        opts = cdb.reporting_options
        layout = spc.ReportSupportedOperationCodes
        if opts == 0:
            data = spc.report_all_commands(list(self._supported()), rctd=bool(cdb.rctd))
        elif opts in (1, 2, 3):
            op, sa = cdb.requested_operation_code, cdb.requested_service_action
            has_sa = op in self._with_service_action
            if opts == 1 and has_sa:
                raise layout.invalid("requested_operation_code")
            if opts == 2 and not has_sa and (op, None) in self._dispatch:
                raise layout.invalid("requested_service_action")
            hit = self._dispatch.get((op, sa if has_sa else None))
            supported = hit is not None and hit[0] in self._supported()
            data = spc.report_one_command(hit[0] if supported and hit else None,
                                          rctd=bool(cdb.rctd))
        else:
            raise layout.invalid("reporting_options")
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    # --- third-party copy: handed to the copy manager (SPC-4 6.3-6.5, 6.20-6.25) ------------
    @command(xcopy.ExtendedCopyLid1, xcopy.ExtendedCopyLid4)
    def extended_copy(self, cmd: Command,
                      cdb: xcopy.ExtendedCopyLid1 | xcopy.ExtendedCopyLid4) -> int | Future[int]:
        """EXTENDED COPY(LID1) (SPC-4 6.5) and EXTENDED COPY(LID4) (SPC-4 6.4): a
        PARAMETER LIST LENGTH of zero moves nothing and is not an error."""
        if self.copy_manager is None:
            raise InvalidOpcode(cdb.OPCODE)
        length = cdb.parameter_list_length
        if length == 0:  # SPC-4 6.5.1: not an error, nothing to copy
            return 0
        if len(cmd.data) < length:
            raise ParameterListLengthError(10, "the Data-Out buffer is shorter than the list")
        plist = cmd.data.tobytes(length)
        if cdb.SERVICE_ACTION == xcopy.ExtendedCopyLid4.SERVICE_ACTION:
            return self.copy_manager.extended_copy(self, plist, lid4=True)
        return self.copy_manager.extended_copy(self, plist)

    @command(xcopy.CopyOperationAbort)
    def copy_operation_abort(self, cmd: Command,  # noqa: ARG002
                             cdb: xcopy.CopyOperationAbort) -> int | Future[int]:
        if self.copy_manager is None:
            raise InvalidOpcode(cdb.OPCODE)
        return self.copy_manager.copy_operation_abort(self, cdb.list_identifier) or 0

    @command(*xcopy.RECEIVE_COPY_RESULTS, *xcopy.RECEIVE_COPY_LID4, xcopy.ReceiveCopyDigest)
    def receive_copy_results(self, cmd: Command, cdb: ReceiveCopyCdb) -> int:
        if self.copy_manager is None:
            raise InvalidOpcode(cdb.OPCODE)
        data = self.copy_manager.receive_copy_results(self, cdb, room=len(cmd.data))
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    # --- MODE SENSE: subclasses supply pages and descriptors ----------------------------
    @command(spc.ModeSense6, spc.ModeSense10)
    def mode_sense(self, cmd: Command, cdb: spc.AnyModeSense) -> int:
        ten = cdb.OPCODE == spc.ModeSense10.OPCODE
        pages = self.mode_pages(cdb.pc)
        if cdb.page_code == spc.ALL_PAGES:
            if cdb.subpage_code not in (0x00, 0xFF):
                raise type(cdb).invalid("subpage_code")
            body = b"".join(p for (code, sub), p in sorted(pages.items())
                            if sub == 0 or cdb.subpage_code == 0xFF)
        else:
            body = pages.get((cdb.page_code, cdb.subpage_code), b"")
            if not body:
                raise type(cdb).invalid("page_code")
        bd = b"" if cdb.dbd else self.block_descriptor()
        if cdb.pc == spc.PC_CHANGEABLE:
            bd = bytes(len(bd))  # SPC-4 7.5.5: nothing in the block descriptor changes here
        data = spc.mode_parameter_list(
            ten=ten, pages=body, block_descriptors=bd,
            device_specific=self.device_specific_parameter(), medium_type=self.medium_type(),
        )
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def mode_pages(self, pc: int) -> dict[tuple[int, int], bytes]:  # noqa: ARG002
        """(page, subpage) -> page bytes for page control ``pc`` (SPC-4 6.11.3)."""
        return {}

    def block_descriptor(self) -> bytes:
        return b""

    def device_specific_parameter(self) -> int:
        return 0

    def medium_type(self) -> int:
        return 0
