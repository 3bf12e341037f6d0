"""SCSI errors: each is a CHECK CONDITION that carries its sense data (SPC-4 4.5).

Devices raise these; the transport turns them into CHECK CONDITION in one place.
``transferred`` is the Data-In byte count that still reaches the initiator
(a tape read that met a filemark, a short read with ILI). ``raw_sense`` keeps the sense
bytes exactly as another device returned them when the condition relays that device's
CHECK CONDITION (a copy end reached through SG_IO).
"""

from __future__ import annotations

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi.sense import (
    CHECK_CONDITION,
    TASK_ABORTED,
    Asc,
    SenseData,
    SenseFormatError,
    SenseKey,
    field_pointer,
)


class CheckCondition(LioXcopyError):
    """A command ended in CHECK CONDITION with :attr:`sense`."""

    #: the SAM-5 status the command ends with
    status: int = CHECK_CONDITION

    def __init__(self, sense: SenseData, *, transferred: int | None = None, message: str = "",
                 raw_sense: bytes | None = None):
        self.sense = sense
        self.transferred = transferred
        self.raw_sense = raw_sense
        super().__init__(message or sense.describe())

    def sense_bytes(self) -> bytes:
        """The sense data as the transport returns it (fixed format, SPC-4 4.5.3)."""
        return self.sense.fixed()


class ForwardedStatus(CheckCondition):
    """Another device's status and sense bytes, passed on unchanged: CHECK CONDITION
    with the device's own sense (any format, vendor bytes included), BUSY,
    RESERVATION CONFLICT, TASK SET FULL (SAM-5 5.3.1). :attr:`sense` is the decoded
    sense where there is some (NO SENSE otherwise), for logs."""

    def __init__(self, status: int, raw_sense: bytes, *, transferred: int | None = None,
                 message: str = ""):
        self.status = status
        raw = bytes(raw_sense)
        try:
            sense = SenseData.parse(raw)
        except (SenseFormatError, ValueError):
            sense = SenseData(SenseKey.NO_SENSE)
        super().__init__(sense, transferred=transferred, raw_sense=raw,
                         message=message or f"status {status:#04x}, sense {raw.hex()}")

    def sense_bytes(self) -> bytes:
        return (self.raw_sense or b"") if self.status == CHECK_CONDITION else b""


class TaskAborted(CheckCondition):
    """TASK ABORTED status, no sense data (SAM-5 5.3.1): the command was ended on
    another command's request, e.g. an EXTENDED COPY whose copy operation COPY
    OPERATION ABORT stopped (SPC-4 6.3). :attr:`sense` (ABORTED COMMAND) is for logs."""

    status = TASK_ABORTED

    def __init__(self, message: str):
        super().__init__(SenseData(SenseKey.ABORTED_COMMAND), message=message)

    def sense_bytes(self) -> bytes:
        return b""


class TargetUnreachable(CheckCondition):
    """The device could not be reached to run a command (its transport failed, it went
    away, the command timed out): ABORTED COMMAND, LOGICAL UNIT COMMUNICATION FAILURE or
    TIME-OUT (SPC-4 Annex D). As a copy end it makes the copy COPY ABORTED, COPY TARGET
    DEVICE NOT REACHABLE (SPC-4 6.4.3)."""

    def __init__(self, message: str, *, timed_out: bool = False,
                 transferred: int | None = None):
        asc = (Asc.LOGICAL_UNIT_COMMUNICATION_TIME_OUT if timed_out
               else Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE)
        super().__init__(SenseData(SenseKey.ABORTED_COMMAND, asc), transferred=transferred,
                         message=message)


class IllegalRequest(CheckCondition):
    """ILLEGAL REQUEST with an optional field pointer (SPC-4 4.5.2.4.2)."""

    def __init__(
        self,
        asc: Asc,
        byte: int | None = None,
        bit: int | None = None,
        *,
        in_cdb: bool = True,
        information: int | None = None,
        message: str = "",
    ):
        sks = field_pointer(byte, bit, in_cdb=in_cdb) if byte is not None else None
        super().__init__(
            SenseData(
                SenseKey.ILLEGAL_REQUEST, asc, information=information, sense_key_specific=sks
            ),
            message=message,
        )


class InvalidOpcode(IllegalRequest):
    """INVALID COMMAND OPERATION CODE, pointing at the opcode byte (or the service action)."""

    def __init__(self, opcode: int, *, byte: int = 0, bit: int | None = None):
        super().__init__(
            Asc.INVALID_COMMAND_OPERATION_CODE, byte, bit, message=f"opcode {opcode:#04x}"
        )


class InvalidFieldInCdb(IllegalRequest):
    """INVALID FIELD IN CDB at ``byte`` (and ``bit``)."""

    def __init__(self, byte: int, bit: int | None = None, message: str = ""):
        super().__init__(Asc.INVALID_FIELD_IN_CDB, byte, bit, message=message)


class InvalidFieldInParameterList(IllegalRequest):
    """INVALID FIELD IN PARAMETER LIST at ``byte`` (and ``bit``) of the Data-Out buffer."""

    def __init__(self, byte: int, bit: int | None = None, message: str = ""):
        super().__init__(
            Asc.INVALID_FIELD_IN_PARAMETER_LIST, byte, bit, in_cdb=False, message=message
        )


class ParameterListLengthError(IllegalRequest):
    """PARAMETER LIST LENGTH ERROR."""

    def __init__(self, byte: int | None = None, message: str = ""):
        super().__init__(Asc.PARAMETER_LIST_LENGTH_ERROR, byte, message=message)


class TransferLengthMismatch(IllegalRequest):
    """ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT: the initiator's
    expected data transfer length (the transport's, e.g. the iSCSI EDTL) is not the
    length the CDB asks to move, and no data moved (FCP-4 9.4.2 b), the answer LIO's
    core gives a WRITE so mismatched). No field pointer: the field is the transport's."""

    def __init__(self, message: str = ""):
        super().__init__(Asc.INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT, message=message)


class LbaOutOfRange(IllegalRequest):
    """LOGICAL BLOCK ADDRESS OUT OF RANGE (SBC-4 4.5); INFORMATION holds the LBA."""

    def __init__(self, lba: int):
        super().__init__(
            Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE,
            information=lba,
            message=f"LBA {lba} out of range",
        )


class NotReady(CheckCondition):
    """NOT READY, e.g. MEDIUM NOT PRESENT."""

    def __init__(self, asc: Asc = Asc.MEDIUM_NOT_PRESENT):
        super().__init__(SenseData(SenseKey.NOT_READY, asc))


class UnitAttention(CheckCondition):
    """UNIT ATTENTION, e.g. POWER ON, RESET, OR BUS DEVICE RESET OCCURRED."""

    def __init__(self, asc: Asc = Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED):
        super().__init__(SenseData(SenseKey.UNIT_ATTENTION, asc))


class MediumError(CheckCondition):
    """MEDIUM ERROR (UNRECOVERED READ ERROR, WRITE ERROR); INFORMATION is the LBA."""

    def __init__(self, asc: Asc, lba: int | None = None, message: str = ""):
        super().__init__(SenseData(SenseKey.MEDIUM_ERROR, asc, information=lba), message=message)


class DataProtect(CheckCondition):
    """DATA PROTECT, WRITE PROTECTED (or SPACE ALLOCATION FAILED WRITE PROTECT with the
    LBA: SBC-4 4.7.3, a thin provisioned write without space)."""

    def __init__(self, asc: Asc = Asc.WRITE_PROTECTED, information: int | None = None,
                 message: str = ""):
        super().__init__(SenseData(SenseKey.DATA_PROTECT, asc, information=information),
                         message=message)


class Miscompare(CheckCondition):
    """MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION (SBC-4 5.3, 5.33): INFORMATION is
    the offset of the first byte that differs."""

    def __init__(self, offset: int, message: str = ""):
        super().__init__(
            SenseData(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY_OPERATION,
                      information=offset),
            message=message or f"miscompare at byte {offset}",
        )


class HardwareError(CheckCondition):
    """HARDWARE ERROR, INTERNAL TARGET FAILURE: a failure that is not the medium's."""

    def __init__(self, message: str = ""):
        super().__init__(
            SenseData(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE), message=message
        )
