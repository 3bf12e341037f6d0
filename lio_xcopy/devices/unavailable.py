"""A logical unit whose device could not be opened: its backing store missing or
unreadable, its configuration refused.

It is served all the same, so that no command waits out the kernel's command timeout
(TCMU's ``cmd_time_out``, 600 s by default) on a ring nobody reads: a LUN deleted or a
host shut down then finishes at once. INQUIRY and REQUEST SENSE are answered, as a
logical unit must whatever its state (SPC-4 6.6, 6.39); every other command ends in
CHECK CONDITION, NOT READY, LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED
(04h/03h), which sd takes as a unit that no START STOP UNIT will bring up.
"""

from __future__ import annotations

from concurrent.futures import Future

from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity
from lio_xcopy.scsi import spc
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey

#: what a LUN without its device still answers (SPC-4 6.6 INQUIRY, 6.39 REQUEST SENSE)
ANSWERED = frozenset({spc.Inquiry.OPCODE, spc.RequestSense.OPCODE})


class Unavailable(LogicalUnit):
    """A LUN served only to say that it cannot be used, and why (:attr:`reason`)."""

    DEVICE_TYPE = spc.TYPE_DISK  # set per instance: the type the LUN was configured as

    def __init__(self, identity: LunIdentity, device_type: int, reason: str):
        super().__init__(identity)
        self.DEVICE_TYPE = device_type
        self.reason = reason

    @staticmethod
    def sense() -> SenseData:
        return SenseData(SenseKey.NOT_READY,
                         Asc.LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION_REQUIRED)

    def handle(self, cmd: Command) -> int | Future[int]:
        if cmd.cdb and cmd.cdb[0] in ANSWERED:
            return super().handle(cmd)
        raise CheckCondition(self.sense(), message=f"{self.name} is unavailable: {self.reason}")

    def runs_long(self, cmd: Command) -> bool:  # noqa: ARG002
        return False

    def pending_sense(self) -> SenseData | None:
        return self.sense()
