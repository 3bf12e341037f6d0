"""The tape drive a backup or restore job uses, over SG_IO: where a new tape file
starts (SSC-4 SPACE to end of data, READ POSITION long form), how to reach an old
one (REWIND, SPACE filemarks), WRITE FILEMARKS and LOAD UNLOAD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import ssc
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.sg import sgio
from lio_xcopy.sg.transport import ScsiTransport


class BackupError(LioXcopyError):
    """A backup or restore cannot go on; the message says what to do next."""


@dataclass(frozen=True, slots=True)
class Position:
    """READ POSITION long form data (SSC-4): 32 bytes."""

    bop: bool
    eop: bool
    partition: int
    logical_object: int
    file_number: int


def parse_position_long(data: bytes) -> Position:
    try:
        p = ssc.parse_read_position_long(data)
    except ssc.PositionFormatError as e:
        raise BackupError(f"{e}: the drive cannot report tape file numbers") from None
    if p.lonu or p.mpu:
        raise BackupError("the drive does not know its position (READ POSITION: LONU/MPU): "
                          "rewind it and retry")
    return Position(p.bop, p.eop, p.partition, p.object_number, p.file_identifier)


class InitiatorDrive:
    """The tape drive's commands this job needs, over SG_IO."""

    def __init__(self, dev: ScsiTransport):
        self.dev = dev

    @property
    def path(self) -> str:
        return self.dev.path

    def _run(self, cdb: bytes, timeout: float = 3600, data_in: int = 0) -> sgio.Result:
        return self.dev.execute(cdb, data_in=data_in, timeout=timeout)

    def position(self) -> Position:
        cdb = ssc.ReadPositionLong(allocation_length=32).encode()
        return parse_position_long(self._run(cdb, 60, data_in=32).data)

    def rewind(self) -> None:
        self._run(ssc.Rewind().encode())

    def space_eod(self) -> None:
        self._run(ssc.Space6(code=ssc.SPACE_END_OF_DATA, count=0).encode())

    def space_filemarks(self, count: int) -> None:
        if count:
            self._run(ssc.Space6(code=ssc.SPACE_FILEMARKS,
                                  count=ssc.to_signed24(count)).encode())

    def write_filemark(self) -> None:
        """WRITE FILEMARKS (6), IMMED zero: the data before it is on the medium when it
        completes (SSC-4: buffered data is written first)."""
        self._run(ssc.WriteFilemarks6(filemark_count=1).encode())

    def last_object_is_data(self) -> bool:
        """At end of data: is the last thing recorded a data block (a file left open by an
        interrupted job) rather than a filemark? SPACE one block back: a filemark stops
        it (NO SENSE, FILEMARK), beginning of partition means an empty tape."""
        try:
            self._run(ssc.Space6(code=ssc.SPACE_BLOCKS, count=ssc.to_signed24(-1)).encode())
        except sgio.ScsiCommandError as e:
            sense = e.sense
            if sense is not None and (sense.filemark or sense.eom):
                return False
            raise
        return True

    def unload(self) -> None:
        """LOAD UNLOAD with LOAD zero (SSC-4): rewind and let the robot take the
        cartridge; a drive with none is fine."""
        try:
            self._run(ssc.LoadUnload(load=0).encode(), 600)
        except sgio.ScsiCommandError as e:
            if e.asc != Asc.MEDIUM_NOT_PRESENT:
                raise


def append_position(drive: InitiatorDrive, out: IO[str]) -> Position:
    """Go to end of data and return its position: where a new file starts (its tape
    file number and logical object identifier). A file an interrupted job left without
    its filemark is closed first, so it stays a file of its own (its job is failed in
    the catalog)."""
    drive.space_eod()
    pos = drive.position()
    if pos.bop or pos.logical_object == 0:
        return pos
    if drive.last_object_is_data():
        drive.space_eod()
        pos = drive.position()
        print(f"closing tape file {pos.file_number}, left open by an interrupted job, with "
              "a filemark", file=out)
        drive.write_filemark()
    else:
        drive.space_eod()
    return drive.position()


def locate_file(drive: InitiatorDrive, file_number: int) -> None:
    """Rewind, then space forward over ``file_number`` filemarks: the first block of
    that tape file (SSC-4 SPACE, filemarks)."""
    drive.rewind()
    try:
        drive.space_filemarks(file_number)
    except sgio.ScsiCommandError as e:
        if e.key == SenseKey.BLANK_CHECK:
            raise BackupError(f"the cartridge has fewer than {file_number + 1} files: is it "
                              "the catalog's cartridge?") from e
        raise
    at = drive.position().file_number
    if at != file_number:
        raise BackupError(f"spacing to tape file {file_number} ended in file {at}: check "
                          "the cartridge")
