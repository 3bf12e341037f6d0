"""Which way each command's data moves, by peripheral device type (SAM-5 5.4.3).

A transport that only sees a CDB and a buffer (TCMU's ring says nothing of direction)
needs this to forward a command it does not answer itself: the opcode tables of
SPC-4 (every device type), SBC-4 (disks), SSC-4 (tapes) and SMC-3 (medium changers).
One opcode means different commands to different device types (2Bh is LOCATE (10) on
a tape and POSITION TO ELEMENT on a changer; B5h is SECURITY PROTOCOL OUT in SPC-4 and
REQUEST VOLUME ELEMENT ADDRESS, a Data-In command, in SMC-3), so each type has its
own table over the common one. A command missing from the tables, a bidirectional
one (XDWRITEREAD) or a variable-length one (7Fh) has no direction here: a forwarder
must refuse it rather than guess.

"Long" commands are those whose duration is set by mechanics or by a CDB count, not
by the buffer: st and ch give them hours rather than minutes (``ST_LONG_TIMEOUT``,
``ch``'s ``timeout_init``).
"""

from __future__ import annotations

from enum import Enum

from lio_xcopy.scsi.spc import TYPE_DISK, TYPE_MEDIUM_CHANGER, TYPE_TAPE


class DataDirection(Enum):
    """The data phase of a command (SAM-5 5.4.3)."""

    NONE = "none"
    IN = "in"  # Data-In: device to initiator
    OUT = "out"  # Data-Out: initiator to device


NONE, IN, OUT = DataDirection.NONE, DataDirection.IN, DataDirection.OUT

#: SPC-4 Annex E.3.1, commands of every device type.
SPC = {
    0x00: NONE,  # TEST UNIT READY
    0x03: IN,  # REQUEST SENSE
    0x12: IN,  # INQUIRY
    0x15: OUT,  # MODE SELECT (6)
    0x16: NONE,  # RESERVE (6) (SPC-2)
    0x17: NONE,  # RELEASE (6) (SPC-2)
    0x1A: IN,  # MODE SENSE (6)
    0x1C: IN,  # RECEIVE DIAGNOSTIC RESULTS
    0x1D: OUT,  # SEND DIAGNOSTIC
    0x1E: NONE,  # PREVENT ALLOW MEDIUM REMOVAL
    0x3B: OUT,  # WRITE BUFFER
    0x3C: IN,  # READ BUFFER
    0x4C: OUT,  # LOG SELECT
    0x4D: IN,  # LOG SENSE
    0x55: OUT,  # MODE SELECT (10)
    0x56: OUT,  # RESERVE (10) (SPC-2: a third-party parameter list)
    0x57: OUT,  # RELEASE (10) (SPC-2)
    0x5A: IN,  # MODE SENSE (10)
    0x5E: IN,  # PERSISTENT RESERVE IN
    0x5F: OUT,  # PERSISTENT RESERVE OUT
    0x83: OUT,  # EXTENDED COPY
    0x84: IN,  # RECEIVE COPY RESULTS
    0x86: IN,  # ACCESS CONTROL IN
    0x87: OUT,  # ACCESS CONTROL OUT
    0x8C: IN,  # READ ATTRIBUTE
    0x8D: OUT,  # WRITE ATTRIBUTE
    0xA0: IN,  # REPORT LUNS
    0xA2: IN,  # SECURITY PROTOCOL IN
    0xA3: IN,  # MAINTENANCE IN (REPORT SUPPORTED OPERATION CODES, ...)
    0xA4: OUT,  # MAINTENANCE OUT (SET TARGET PORT GROUPS, ...)
    0xA9: OUT,  # SERVICE ACTION OUT (12)
    0xAB: IN,  # SERVICE ACTION IN (12) (READ MEDIA SERIAL NUMBER)
    0xB5: OUT,  # SECURITY PROTOCOL OUT
}

#: SBC-4 Annex A, direct access block devices.
SBC = {
    0x04: OUT,  # FORMAT UNIT (parameter list when FMTDATA is set)
    0x07: OUT,  # REASSIGN BLOCKS
    0x08: IN,  # READ (6)
    0x0A: OUT,  # WRITE (6)
    0x1B: NONE,  # START STOP UNIT
    0x25: IN,  # READ CAPACITY (10)
    0x28: IN,  # READ (10)
    0x2A: OUT,  # WRITE (10)
    0x2E: OUT,  # WRITE AND VERIFY (10)
    0x2F: OUT,  # VERIFY (10) (data when BYTCHK is set)
    0x34: NONE,  # PRE-FETCH (10)
    0x35: NONE,  # SYNCHRONIZE CACHE (10)
    0x37: IN,  # READ DEFECT DATA (10)
    0x3E: IN,  # READ LONG (10)
    0x3F: OUT,  # WRITE LONG (10)
    0x41: OUT,  # WRITE SAME (10)
    0x42: OUT,  # UNMAP
    0x48: OUT,  # SANITIZE
    0x88: IN,  # READ (16)
    0x89: OUT,  # COMPARE AND WRITE
    0x8A: OUT,  # WRITE (16)
    0x8E: OUT,  # WRITE AND VERIFY (16)
    0x8F: OUT,  # VERIFY (16)
    0x90: NONE,  # PRE-FETCH (16)
    0x91: NONE,  # SYNCHRONIZE CACHE (16)
    0x93: OUT,  # WRITE SAME (16)
    0x9E: IN,  # SERVICE ACTION IN (16) (READ CAPACITY (16), GET LBA STATUS, ...)
    0x9F: OUT,  # SERVICE ACTION OUT (16)
    0xA8: IN,  # READ (12)
    0xAA: OUT,  # WRITE (12)
    0xAE: OUT,  # WRITE AND VERIFY (12)
    0xAF: OUT,  # VERIFY (12)
    0xB7: IN,  # READ DEFECT DATA (12)
}

#: SSC-4 Annex A, sequential access devices.
SSC = {
    0x01: NONE,  # REWIND
    0x04: OUT,  # FORMAT MEDIUM (format parameters when TRANSFER LENGTH is set)
    0x05: IN,  # READ BLOCK LIMITS
    0x08: IN,  # READ (6)
    0x0A: OUT,  # WRITE (6)
    0x0B: NONE,  # SET CAPACITY
    0x0F: IN,  # READ REVERSE (6)
    0x10: NONE,  # WRITE FILEMARKS (6)
    0x11: NONE,  # SPACE (6)
    0x13: OUT,  # VERIFY (6) (data when BYTCMP is set)
    0x14: IN,  # RECOVER BUFFERED DATA
    0x19: NONE,  # ERASE (6)
    0x1B: NONE,  # LOAD UNLOAD
    0x2B: NONE,  # LOCATE (10)
    0x34: IN,  # READ POSITION
    0x44: IN,  # REPORT DENSITY SUPPORT
    0x80: NONE,  # WRITE FILEMARKS (16)
    0x81: IN,  # READ REVERSE (16)
    0x82: NONE,  # ALLOW OVERWRITE
    0x88: IN,  # READ (16)
    0x8A: OUT,  # WRITE (16)
    0x8F: OUT,  # VERIFY (16)
    0x91: NONE,  # SPACE (16)
    0x92: NONE,  # LOCATE (16)
    0x93: NONE,  # ERASE (16)
}

#: SMC-3 Table 2, media changers.
SMC = {
    0x07: NONE,  # INITIALIZE ELEMENT STATUS
    0x1B: NONE,  # OPEN/CLOSE IMPORT/EXPORT ELEMENT
    0x2B: NONE,  # POSITION TO ELEMENT
    0x37: NONE,  # INITIALIZE ELEMENT STATUS WITH RANGE
    0xA5: NONE,  # MOVE MEDIUM
    0xA6: NONE,  # EXCHANGE MEDIUM
    0xB5: IN,  # REQUEST VOLUME ELEMENT ADDRESS
    0xB6: OUT,  # SEND VOLUME TAG
    0xB8: IN,  # READ ELEMENT STATUS
}

_BY_TYPE = {TYPE_DISK: SBC, TYPE_TAPE: SSC, TYPE_MEDIUM_CHANGER: SMC}

#: Commands whose duration is mechanical or set by a CDB count (per device type).
LONG = {
    TYPE_DISK: frozenset({0x04, 0x07, 0x1B, 0x2F, 0x35, 0x41, 0x48, 0x8F, 0x91, 0x93, 0xAF}),
    TYPE_TAPE: frozenset({0x01, 0x04, 0x0B, 0x10, 0x11, 0x13, 0x19, 0x1B, 0x2B, 0x80, 0x8F,
                          0x91, 0x92, 0x93}),
    TYPE_MEDIUM_CHANGER: frozenset({0x07, 0x1B, 0x2B, 0x37, 0xA5, 0xA6}),
}
#: SEND DIAGNOSTIC (a self-test) and WRITE BUFFER (microcode) take long on any type.
LONG_ANY = frozenset({0x1D, 0x3B})


#: Service actions whose data goes the other way than their opcode's table entry says:
#: THIRD PARTY COPY OUT 83h/1Ch COPY OPERATION ABORT carries no data (SPC-4 6.3).
BY_SERVICE_ACTION: dict[tuple[int, int], DataDirection] = {(0x83, 0x1C): NONE}


def data_direction(device_type: int, cdb: bytes | bytearray | memoryview) -> DataDirection | None:
    """The direction of ``cdb``'s data on a device of ``device_type`` (SPC-4 Table 142
    codes), or None when the tables do not know the command."""
    if not cdb:
        return None
    opcode = cdb[0]
    if len(cdb) > 1 and (opcode, cdb[1] & 0x1F) in BY_SERVICE_ACTION:
        return BY_SERVICE_ACTION[opcode, cdb[1] & 0x1F]
    table = _BY_TYPE.get(device_type, {})
    if opcode in table:
        return table[opcode]
    return SPC.get(opcode)


def is_long(device_type: int, opcode: int) -> bool:
    """Whether the command may run for hours rather than minutes (a REWIND, a MOVE
    MEDIUM, a FORMAT UNIT) on a device of ``device_type``."""
    return opcode in LONG_ANY or opcode in LONG.get(device_type, frozenset())
