"""A pass-through LUN: a real disk, tape drive or medium changer of the target host,
exported by forwarding every command to it with SG_IO.

What the LUN keeps for itself is the copy manager's: EXTENDED COPY, COPY OPERATION
ABORT and RECEIVE COPY RESULTS (SPC-4 6.5, 6.3, 6.18; and the daemon's RECEIVE COPY
DIGEST), the 3PC bit of standard INQUIRY data (SPC-4 6.6.2), the Third-party Copy VPD
page (8Fh, SPC-4 7.8.17) and those commands' entries in REPORT SUPPORTED OPERATION CODES
and the page's in the Supported VPD Pages page, set in the device's own answers.
Everything else, the other VPD pages included, is the device's, so the Device
Identification page an initiator reads (and names in its copy CSCDs) is the real
device's.

The device is named by a stable name (:mod:`lio_xcopy.sg.resolve`) and found again
each time the LUN connects to it: at open, and after the device went away (a
hot-unplug, a renumbering). Nothing is sent to it at open: a drive without a
cartridge is a LUN like any other, and its unit attentions wait for the initiator.
The direction of each command's data comes from the opcode tables of its device type
(:mod:`lio_xcopy.scsi.opcodes`); a command they do not know is refused with INVALID
COMMAND OPERATION CODE. The device's status and sense bytes come back unchanged.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lio_xcopy import threads
from lio_xcopy.devices import foreign
from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity, TaskManagement
from lio_xcopy.scsi import spc, tpc_vpd
from lio_xcopy.scsi.errors import CheckCondition, ForwardedStatus, InvalidOpcode
from lio_xcopy.scsi.opcodes import DataDirection, data_direction, is_long
from lio_xcopy.scsi.sense import GOOD, Asc, SenseData, SenseKey
from lio_xcopy.sg import sgio
from lio_xcopy.sg.resolve import DeviceNotFound, Resolved

#: the copy manager's commands, answered by the daemon (EXTENDED COPY, RECEIVE COPY
#: RESULTS, RECEIVE COPY DIGEST)
OWN_OPCODES = frozenset({0x83, 0x84, 0xC5})
RSOC = spc.ReportSupportedOperationCodes
#: the allocation length the LUN asks the device's whole command list with
RSOC_WHOLE = 0xFFFF
INQUIRY = 0x12
#: the allocation length the LUN asks the device's Supported VPD Pages page with
VPD_SUPPORTED_WHOLE = 4 + 0xFF
#: Linux host bytes (include/scsi/scsi_status.h) meaning the device is not there
_NO_CONNECT = 0x01  # DID_NO_CONNECT: the command never reached the device
_GONE_HOST = frozenset({_NO_CONNECT, 0x04})  # and DID_BAD_TARGET
_TIMED_OUT_HOST = frozenset({0x03})  # DID_TIME_OUT


@dataclass(frozen=True, slots=True)
class Timeouts:
    """SG_IO timeouts in seconds: ``normal`` for data transfers and queries, ``long``
    for commands whose time is mechanical (:func:`~lio_xcopy.scsi.opcodes.is_long`)."""

    normal: float
    long: float


#: st's ST_TIMEOUT and ST_LONG_TIMEOUT (drivers/scsi/st_options.h); ch's timeout_move
#: and a long one for INITIALIZE ELEMENT STATUS of a big library; sg's default for disks
TIMEOUTS = {
    spc.TYPE_TAPE: Timeouts(900, 14000),
    spc.TYPE_MEDIUM_CHANGER: Timeouts(300, 14000),
    spc.TYPE_DISK: Timeouts(60, 14000),
}
DEFAULT_TIMEOUTS = Timeouts(60, 14000)


class SgHandle(foreign.Transport, Protocol):
    """What the LUN needs of an SG_IO device (:class:`lio_xcopy.sg.sgio.SgIoDevice`):
    a copy end's transport that can also be reset."""

    def reset(self, what: int = sgio.SG_SCSI_RESET_DEVICE) -> None: ...


class _Vanished(CheckCondition):
    """The device went away before the command reached it (raised ``from`` the SG_IO
    error, and handled inside :class:`PassThrough`)."""

    def __init__(self) -> None:
        super().__init__(SenseData(SenseKey.HARDWARE_ERROR,
                                   Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE))


def communication_failure(key: SenseKey = SenseKey.HARDWARE_ERROR,
                          asc: Asc = Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE,
                          message: str = "") -> CheckCondition:
    """The CHECK CONDITION of a command that did not reach the device or got no answer
    (SPC-4 Annex D, 08h/00h LOGICAL UNIT COMMUNICATION FAILURE, 08h/01h TIME-OUT)."""
    return CheckCondition(SenseData(key, asc), message=message)


class PassThrough(LogicalUnit):
    """A LUN that forwards its commands to a SCSI device of the target host.

    ``locate`` finds the device now (the stable name resolved to its sg node) and
    ``open_sg`` opens that node; both run again after the device went away. Every
    forwarded command may take long, so the transport runs them all on this LUN's
    worker, in order."""

    DEVICE_TYPE = spc.TYPE_DISK  # set per instance from the device

    def __init__(self, identity: LunIdentity, device_type: int,
                 locate: Callable[[], Resolved],
                 open_sg: Callable[[Path], SgHandle] = sgio.SgIoDevice,
                 timeouts: Timeouts | None = None):
        super().__init__(identity)
        self.DEVICE_TYPE = device_type
        self.timeouts = timeouts or TIMEOUTS.get(device_type, DEFAULT_TIMEOUTS)
        self._locate = locate
        self._open_sg = open_sg
        self._sg: SgHandle | None = None
        self._where: Resolved | None = None
        self._lock = threading.Lock()  # the handle, between the worker and a reset

    # --- the device behind the LUN ------------------------------------------------------
    def connect(self) -> SgHandle:
        """The open SG_IO handle, resolving the stable name and opening it when there is
        none. Sends nothing to the device."""
        with self._lock:
            if self._sg is not None:
                return self._sg
            try:
                where = self._locate()
                sg = self._open_sg(where.sg)
            except (DeviceNotFound, sgio.SgIoError) as e:
                raise communication_failure(message=f"{self.identity.name}: {e}") from e
            if where.device_type is not None and where.device_type != self.DEVICE_TYPE:
                sg.close()
                raise communication_failure(
                    message=f"{self.identity.name}: {where.sg} is now a device of type "
                            f"{where.device_type}, not {self.DEVICE_TYPE}")
            self._sg, self._where = sg, where
            self.log.info("forwarding to %s (%s)", where.sg, where.hctl)
            return sg

    @property
    def where(self) -> Resolved | None:
        """The device the LUN forwards to, while connected."""
        return self._where

    def disconnect(self) -> None:
        """Close the handle; the next command looks for the device again."""
        with self._lock:
            sg, self._sg = self._sg, None
        if sg is not None:
            sg.close()

    def close(self) -> None:
        self.disconnect()

    def designators(self) -> list[spc.Designator]:
        """The real device's logical unit designators (VPD 83h, as sysfs keeps them)."""
        where = self._where
        if where is None:
            try:
                where = self._locate()
            except (DeviceNotFound, sgio.SgIoError):
                return []
        return [d for d in where.designators if d.association == 0]

    def copy_end(self) -> foreign.ForeignDisk | foreign.ForeignTape:
        """The real device as a copy end: a block port (READ/WRITE (16)) or a stream port
        (READ/WRITE (6)) over an SG_IO handle of its own, closed when the copy ends; a
        device of another kind is INCORRECT COPY TARGET DEVICE TYPE for any segment."""
        self.connect()  # resolves the stable name now, or raises
        where = self._where
        if where is None:
            raise communication_failure(message=f"{self.identity.name}: device gone")
        try:
            port = foreign.open_port(self._open_sg(where.sg), self.designators())
        except sgio.SgIoError as e:
            raise communication_failure(message=f"{self.identity.name}: {e}") from e
        if port is None:
            raise CheckCondition(SenseData(SenseKey.COPY_ABORTED,
                                           Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE),
                                 message=f"{self.identity.name} forwards to a device that "
                                         "is neither a disk nor a tape")
        return port

    # --- the handler boundary -----------------------------------------------------------
    def runs_long(self, cmd: Command) -> bool:  # noqa: ARG002
        return True

    def carries_data_out(self, cdb: bytes) -> bool:
        return data_direction(self.DEVICE_TYPE, cdb) is DataDirection.OUT

    def handle(self, cmd: Command) -> int | Future[int]:
        if not cmd.cdb:
            raise InvalidOpcode(0)
        if cmd.opcode in OWN_OPCODES:
            return super().handle(cmd)
        if self.copy_manager is not None and cmd.opcode == RSOC.OPCODE \
                and len(cmd.cdb) >= RSOC.LENGTH and cmd.cdb[1] & 0x1F == RSOC.SERVICE_ACTION:
            return self._supported_operation_codes(cmd)
        if self.copy_manager is not None and cmd.opcode == INQUIRY \
                and len(cmd.cdb) >= spc.Inquiry.LENGTH and cmd.cdb[1] & 1:
            if cmd.cdb[2] == tpc_vpd.VPD_THIRD_PARTY_COPY:
                return super().handle(cmd)
            if cmd.cdb[2] == 0x00:
                return self._supported_vpd_pages(cmd)
        produced = self.forward(cmd)
        if cmd.opcode == INQUIRY and not cmd.cdb[1] & 1 and produced > 5 \
                and self.copy_manager is not None:
            byte5 = cmd.data.tobytes(6)[5]
            cmd.data.copy_in(bytes([byte5 | 0x08]), 5)  # 3PC, SPC-4 6.6.2
        return produced

    def _supported_operation_codes(self, cmd: Command) -> int | Future[int]:
        """REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): the device's own answer, with
        the third-party copy commands this LUN answers itself. Asked about one of those,
        the LUN answers; for all commands, the device's list (asked for in full) loses
        any descriptor of those opcodes and gains this LUN's."""
        cdb = RSOC.decode(cmd.cdb)
        if cdb.reporting_options in (1, 2, 3) and cdb.requested_operation_code in OWN_OPCODES:
            return super().handle(cmd)
        if cdb.reporting_options != 0:
            return self.forward(cmd)
        whole = bytearray(cmd.cdb)
        whole[6:10] = RSOC_WHOLE.to_bytes(4, "big")
        r = self._send(bytes(whole), RSOC_WHOLE, None, self.timeouts.normal)
        if r.status != GOOD:
            raise ForwardedStatus(r.status, r.sense_bytes)
        listed = [d for d in spc.parse_all_commands(r.data) if d.opcode not in OWN_OPCODES]
        ours = [spc.CommandDescriptor.of(layout, rctd=bool(cdb.rctd)) for layout in self.layouts()
                if layout.OPCODE in OWN_OPCODES]
        data = spc.all_commands_data(listed + ours)
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def _supported_vpd_pages(self, cmd: Command) -> int:
        """Supported VPD Pages (SPC-4 7.8.16): the device's list, asked for in full,
        with the Third-party Copy VPD page this LUN answers itself."""
        cdb = spc.Inquiry.decode(cmd.cdb)
        whole = bytearray(cmd.cdb)
        whole[3:5] = VPD_SUPPORTED_WHOLE.to_bytes(2, "big")
        r = self._send(bytes(whole), VPD_SUPPORTED_WHOLE, None, self.timeouts.normal)
        if r.status != GOOD:
            raise ForwardedStatus(r.status, r.sense_bytes)
        listed = bytes(r.data[4 : 4 + int.from_bytes(r.data[2:4], "big")])
        data = spc.vpd_supported_pages(0, {*listed, tpc_vpd.VPD_THIRD_PARTY_COPY})
        data = bytes(r.data[:1]) + data[1:] if r.data else data  # the device's byte 0
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def forward(self, cmd: Command) -> int:
        """Send ``cmd`` to the device; the Data-In byte count it produced, or raise with
        its status and sense unchanged (:class:`ForwardedStatus`)."""
        direction = data_direction(self.DEVICE_TYPE, cmd.cdb)
        if direction is None:
            raise InvalidOpcode(cmd.opcode)
        timeout = (self.timeouts.long if is_long(self.DEVICE_TYPE, cmd.opcode)
                   else self.timeouts.normal)
        length = len(cmd.data)
        data_in = length if direction is DataDirection.IN else 0
        data_out = cmd.data.tobytes() if direction is DataDirection.OUT and length else None
        try:
            r = self._send(cmd.cdb, data_in, data_out, timeout)
        except _Vanished as e:  # the handle was stale (renumbered, re-plugged): look again
            self.log.info("%s: looking for the device again", e.__cause__)
            try:
                r = self._send(cmd.cdb, data_in, data_out, timeout)
            except _Vanished as again:
                raise communication_failure(message=str(again.__cause__)) from again
        produced = cmd.data.copy_in(r.data) if direction is DataDirection.IN else 0
        if r.status != GOOD:
            raise ForwardedStatus(r.status, r.sense_bytes, transferred=produced)
        return produced

    def _send(self, cdb: bytes, data_in: int, data_out: bytes | None,
              timeout: float) -> sgio.Result:
        """One SG_IO command on the connected device. A handle whose device is gone
        before the command reached it (ENODEV, ENXIO, DID_NO_CONNECT) is dropped and
        raises :class:`_Vanished`: the command was not run and may be sent again."""
        sg = self.connect()
        try:
            if data_in:
                return sg.execute(cdb, data_in=data_in, timeout=timeout, check=False)
            if data_out is not None:
                return sg.execute(cdb, data_out=data_out, timeout=timeout, check=False)
            return sg.execute(cdb, timeout=timeout, check=False)
        except sgio.SgIoUsageError as e:  # a CDB SG_IO cannot carry (over 16 bytes)
            raise InvalidOpcode(cdb[0]) from e
        except sgio.TransportFailure as e:
            raise self._transport_failure(e) from e
        except sgio.SgIoError as e:
            self.disconnect()
            raise communication_failure(message=f"{self.identity.name}: {e}") from e

    def _transport_failure(self, e: sgio.TransportFailure) -> CheckCondition | _Vanished:
        """A command that did not complete at the SCSI level: the device went away
        (the handle is dropped, the next command looks for it again), timed out, or
        was ended by a reset."""
        self.log.warning("%s", e)
        host = e.result.host_status if e.result is not None else None
        driver = (e.result.driver_status & 0x0F) if e.result is not None else 0
        if host in _TIMED_OUT_HOST or driver == sgio.DRIVER_TIMEOUT:
            return communication_failure(SenseKey.ABORTED_COMMAND,
                                         Asc.LOGICAL_UNIT_COMMUNICATION_TIME_OUT, str(e))
        if host == _NO_CONNECT or e.errno in (errno.ENODEV, errno.ENXIO):
            self.disconnect()
            return _Vanished()
        if host in _GONE_HOST:
            self.disconnect()
            return communication_failure(message=str(e))
        return communication_failure(SenseKey.ABORTED_COMMAND, message=str(e))

    # --- task management ----------------------------------------------------------------
    def task_management(self, function: TaskManagement) -> None:
        """LOGICAL UNIT RESET (and a target reset) reset the device itself
        (``SG_SCSI_RESET``), on a thread of its own: the command the worker has in
        flight then ends. SG_IO cannot abort one command: after ABORT TASK the
        command in flight runs to its end or its timeout, and the kernel discards its
        answer."""
        if function not in (TaskManagement.LOGICAL_UNIT_RESET, TaskManagement.TARGET_RESET):
            return
        with self._lock:
            sg = self._sg
        if sg is None:
            return
        threads.start(self._reset, f"reset-{self.identity.name}", sg)

    def _reset(self, sg: SgHandle) -> None:
        try:
            sg.reset(sgio.SG_SCSI_RESET_DEVICE)
        except sgio.SgIoError as e:
            self.log.error("LOGICAL UNIT RESET of the device failed: %s", e)
        else:
            self.log.info("device reset (SG_SCSI_RESET_DEVICE)")
