"""SCSI outcomes in words for an operator: a status, sense data and a command's name,
each followed by what to do next (SAM-5 5.3, SPC-4 4.5). Names of sense keys, ASCs and
statuses come from :mod:`lio_xcopy.scsi.sense`; this module adds the advice."""

from __future__ import annotations

from lio_xcopy.scsi import sbc, spc, ssc
from lio_xcopy.scsi.cdb import Cdb
from lio_xcopy.scsi.sense import (
    CHECK_CONDITION,
    Asc,
    SenseData,
    SenseKey,
    asc_name,
    sense_key_specific_words,
    status_name,
)
from lio_xcopy.scsi.vendor_sense import PolicyApart

#: What to do after a status other than GOOD or CHECK CONDITION (SAM-5 5.3.1).
STATUS_ADVICE = {
    0x08: "the logical unit is busy; retry the command later",
    0x18: "another initiator holds a reservation on this logical unit; release it "
          "(sg_persist) or send the command from the initiator that holds it",
    0x28: "the device's command queue is full; retry with fewer commands outstanding",
    0x30: "an ACA condition is active on this I_T nexus; clear it (CLEAR ACA) and retry",
    0x40: "the command was aborted by another initiator or a task management function; "
          "retry it",
}


KEY_ADVICE = {
    SenseKey.NO_SENSE: "no error of the device: the command stopped early at a filemark, "
                       "end of medium or a block of another length (see the flags)",
    SenseKey.RECOVERED_ERROR: "the command completed after the device recovered from an "
                              "error; nothing to do unless it keeps happening",
    SenseKey.NOT_READY: "the logical unit is not ready: wait and retry, and check that the "
                        "target (the lio-xcopy daemon) is serving it",
    SenseKey.MEDIUM_ERROR: "the medium failed at the reported position and the data there "
                           "cannot be trusted: check the LUN's backing file or device on "
                           "the target",
    SenseKey.HARDWARE_ERROR: "the target failed internally: read its log on the target host "
                             "(journalctl -u lio-xcopy, or the daemon's output)",
    SenseKey.ILLEGAL_REQUEST: "the device rejects the command as sent; fix the command, "
                              "sending it again unchanged fails the same way",
    SenseKey.UNIT_ATTENTION: "the device reports a change (reset, LUNs or parameters "
                             "changed) and did not run the command: send it again",
    SenseKey.DATA_PROTECT: "the medium or logical unit is write-protected: write-enable it "
                           "or write elsewhere",
    SenseKey.BLANK_CHECK: "the read met blank medium (end of recorded data): there is "
                          "nothing more to read here",
    SenseKey.VENDOR_SPECIFIC: "a vendor-specific condition: see the device's documentation",
    SenseKey.COPY_ABORTED: "the copy stopped part way: the fields above (or RECEIVE COPY "
                           "RESULTS) tell where; fix the cause and copy the rest",
    SenseKey.ABORTED_COMMAND: "the target aborted the command (transport or resources): "
                              "send it again",
    SenseKey.VOLUME_OVERFLOW: "the medium is full: the end of the partition was reached "
                              "and not all data was written",
    SenseKey.MISCOMPARE: "the data on the medium does not match the data sent",
}
ASC_ADVICE = {
    Asc.INVALID_COMMAND_OPERATION_CODE: "the device does not implement this command "
        "(REPORT SUPPORTED OPERATION CODES lists what it does); do not retry",
    Asc.INVALID_FIELD_IN_CDB: "the device rejects the value of that CDB field; fix the "
        "command, sending it again unchanged fails the same way",
    Asc.INVALID_FIELD_IN_PARAMETER_LIST: "the device rejects the value at that byte of "
        "the data sent with the command; fix the parameter list",
    Asc.PARAMETER_LIST_LENGTH_ERROR: "the data sent does not match the lengths it "
        "declares; fix the parameter list length",
    Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE: "the command addresses blocks past the end "
        "of the logical unit; check its size with READ CAPACITY",
    Asc.LOGICAL_UNIT_NOT_SUPPORTED: "no logical unit answers at this LUN; check the "
        "target's LUN mapping",
    Asc.MEDIUM_NOT_PRESENT: "no medium is loaded: load a cartridge and retry",
    Asc.LOGICAL_UNIT_NOT_READY_OPERATION_IN_PROGRESS: "a long operation is running: "
        "wait for it and retry",
    0x0401: "the logical unit is becoming ready: wait a moment and retry",
    Asc.END_OF_DATA_DETECTED: "no data is recorded past this point (end of data)",
    Asc.COPY_TARGET_DEVICE_NOT_REACHABLE: "the copy manager cannot reach a device named "
        "in a target descriptor: check that its designator matches a LUN of the target",
    Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE: "a target descriptor names a device of "
        "another type than its segments need",
    Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN: "a copy source delivered less data than the "
        "segment asked for (end of medium or data?)",
    Asc.COPY_TARGET_DEVICE_DATA_OVERRUN: "a copy source delivered more data than the "
        "segment asked for",
    Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: "task management (ABORT TASK, LUN RESET) "
        "or another initiator ended the command",
    Asc.COMMANDS_CLEARED_BY_DEVICE_SERVER: "the target ended the command itself (its "
        "copy service was stopped or restarted); the destination holds a partial copy: "
        "run the copy again",
}



def explain_sense(sense: SenseData) -> str:
    """Sense data as one line of words: what the device said, then what to do.

    ``ILLEGAL REQUEST, ASC/ASCQ 24h/00h (INVALID FIELD IN CDB) at CDB byte 1 bit 7: the
    device rejects the value of that CDB field; fix the command, ...``"""
    head = (
        f"{'DEFERRED error (of an earlier command): ' if sense.deferred else ''}"
        f"{sense.key.name.replace('_', ' ')}, ASC/ASCQ {sense.asc >> 8:02X}h/"
        f"{sense.asc & 0xFF:02X}h ({asc_name(sense.asc)})"
    )
    sks = sense_key_specific_words(sense.key, sense.sense_key_specific)
    if sks:
        head += f" {sks}"
    details = []
    flags = [name for name, on in (("FILEMARK", sense.filemark), ("EOM", sense.eom),
                                   ("ILI", sense.ili)) if on]
    if flags:
        details.append("+".join(flags))
    if sense.information is not None:
        if flags or sense.key == SenseKey.BLANK_CHECK:  # SSC: requested minus actual
            details.append(f"residue {sense.information_signed}")
        elif sense.key in (SenseKey.MEDIUM_ERROR, SenseKey.HARDWARE_ERROR) or (
            sense.asc == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
        ):
            details.append(f"at LBA {sense.information}")
        else:
            details.append(f"INFORMATION {sense.information}")
    if sense.key == SenseKey.COPY_ABORTED and sense.command_specific:
        details.append(f"COMMAND-SPECIFIC INFORMATION {sense.command_specific} "
                       "(for EXTENDED COPY: the segment being processed)")
    if details:
        head += f"; {', '.join(details)}"
    refusal = PolicyApart.decode(sense.vendor)
    advice = (refusal.advice() if refusal is not None
              else ASC_ADVICE.get(sense.asc) or KEY_ADVICE.get(sense.key, ""))
    return f"{head}: {advice}" if advice else head



def explain_status(status: int, sense: SenseData | None, sense_bytes: bytes = b"") -> str:
    """A command's SCSI outcome in words: the status, then its sense explained."""
    if sense is not None:
        return f"{status_name(status)}: {explain_sense(sense)}"
    if status == CHECK_CONDITION:
        raw = f" (undecodable sense {sense_bytes.hex(' ')})" if sense_bytes else ""
        return (f"CHECK CONDITION without usable sense data{raw}: send REQUEST SENSE "
                "to learn why")
    advice = STATUS_ADVICE.get(status)
    return f"{status_name(status)}: {advice}" if advice else status_name(status)


def _opcode_names() -> dict[tuple[int, int | None], str]:
    names: dict[tuple[int, int | None], str] = {}
    for module in (spc, sbc, ssc):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Cdb) and obj is not Cdb:
                names.setdefault((obj.OPCODE, obj.SERVICE_ACTION), obj.NAME)
    names = {k: v for k, v in names.items() if k[0] != 0x34}  # three forms, one name
    names.update({
        (0x34, None): "READ POSITION",
        (0x83, None): "EXTENDED COPY",
        (0x84, None): "RECEIVE COPY RESULTS",
        (0xA0, None): "REPORT LUNS",
        (0x03, None): "REQUEST SENSE",
        (0x1D, None): "SEND DIAGNOSTIC",
        (0x1C, None): "RECEIVE DIAGNOSTIC RESULTS",
    })
    return names


_OPCODE_NAMES = _opcode_names()


def command_name(cdb: bytes) -> str:
    """``READ (10) (28h)``; the opcode alone when we have no name for it."""
    if not cdb:
        return "empty CDB"
    op = cdb[0]
    sa = cdb[1] & 0x1F if len(cdb) > 1 else None
    name = _OPCODE_NAMES.get((op, sa)) or _OPCODE_NAMES.get((op, None))
    return f"{name} ({op:02X}h)" if name else f"opcode {op:02X}h"

