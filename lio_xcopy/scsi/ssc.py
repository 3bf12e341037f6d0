"""SSC-4 stream commands: CDB layouts, the data they return or take, and the stream sense.

Pure builders and parsers only; :class:`lio_xcopy.devices.tape.Tape` decides what goes
in them. Commands are named, not numbered: SSC clause numbers move between drafts.
In the stream sense, INFORMATION holds a residue: a READ reports requested minus actual
(signed), a SPACE the count it did not space over (positive either way, as st expects).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from lio_xcopy.scsi.cdb import Field, cdb_layout
from lio_xcopy.scsi.errors import CheckCondition, NotReady
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey

# --- CDB layouts -----------------------------------------------------------------------------
REWIND = cdb_layout("REWIND", 0x01, 6, "SSC-4", Field("immed", 1, 1))
READ_BLOCK_LIMITS = cdb_layout("READ BLOCK LIMITS", 0x05, 6, "SSC-4", Field("mloi", 1, 1))
READ_6 = cdb_layout(
    "READ (6)", 0x08, 6, "SSC-4",
    Field("sili", 1, 1, lsb=1), Field("fixed", 1, 1), Field("transfer_length", 2, 24),
)
WRITE_6 = cdb_layout(
    "WRITE (6)", 0x0A, 6, "SSC-4", Field("fixed", 1, 1), Field("transfer_length", 2, 24),
)
WRITE_FILEMARKS_6 = cdb_layout(
    "WRITE FILEMARKS (6)", 0x10, 6, "SSC-4",
    Field("wsmk", 1, 1, lsb=1), Field("immed", 1, 1), Field("filemark_count", 2, 24),
)
SPACE_6 = cdb_layout(
    "SPACE (6)", 0x11, 6, "SSC-4", Field("code", 1, 4), Field("count", 2, 24),
)
ERASE_6 = cdb_layout(
    "ERASE (6)", 0x19, 6, "SSC-4", Field("immed", 1, 1, lsb=1), Field("long", 1, 1),
)
LOAD_UNLOAD = cdb_layout(
    "LOAD UNLOAD", 0x1B, 6, "SSC-4",
    Field("immed", 1, 1), Field("hold", 4, 1, lsb=3), Field("eot", 4, 1, lsb=2),
    Field("reten", 4, 1, lsb=1), Field("load", 4, 1),
)
PREVENT_ALLOW_MEDIUM_REMOVAL = cdb_layout(
    "PREVENT ALLOW MEDIUM REMOVAL", 0x1E, 6, "SSC-4", Field("prevent", 4, 2),
)
LOCATE_10 = cdb_layout(
    "LOCATE (10)", 0x2B, 10, "SSC-4",
    Field("bt", 1, 1, lsb=2), Field("cp", 1, 1, lsb=1), Field("immed", 1, 1),
    Field("logical_object_identifier", 3, 32), Field("partition", 8, 8),
)
READ_POSITION_SHORT = cdb_layout(
    "READ POSITION (SHORT FORM - BLOCK ID)", 0x34, 10, "SSC-4",
    Field("allocation_length", 7, 16), service_action=0x00,
)
READ_POSITION_SHORT_VENDOR = cdb_layout(
    "READ POSITION (SHORT FORM - VENDOR-SPECIFIC)", 0x34, 10, "SSC-4",
    Field("allocation_length", 7, 16), service_action=0x01,
)
READ_POSITION_LONG = cdb_layout(
    "READ POSITION (LONG FORM)", 0x34, 10, "SSC-4",
    Field("allocation_length", 7, 16), service_action=0x06,
)

# SPACE (6) codes
SPACE_BLOCKS = 0
SPACE_FILEMARKS = 1
SPACE_END_OF_DATA = 3

# mode pages
DATA_COMPRESSION_PAGE = 0x0F
DEVICE_CONFIGURATION_PAGE = 0x10
DENSITY_DEFAULT = 0x00
DENSITY_NO_CHANGE = 0x7F


def signed24(value: int) -> int:
    """A 24-bit two's complement field (the SPACE (6) COUNT)."""
    return value - (1 << 24) if value & 0x800000 else value


def to_signed24(value: int) -> int:
    """The 24-bit field holding ``value`` (for building SPACE CDBs)."""
    if not -(1 << 23) <= value < 1 << 23:
        raise ValueError(f"{value} does not fit a signed 24-bit field")
    return value & 0xFFFFFF


# --- READ BLOCK LIMITS data --------------------------------------------------------------------
def block_limits(max_block_length: int, min_block_length: int, granularity: int = 0) -> bytes:
    """READ BLOCK LIMITS data (MLOI zero): granularity, maximum and minimum block length."""
    return struct.pack(">B", granularity & 0x1F) + max_block_length.to_bytes(3, "big") + (
        struct.pack(">H", min_block_length)
    )


def maximum_logical_object_identifier(mloi: int) -> bytes:
    """READ BLOCK LIMITS data with MLOI one: 20 bytes, the identifier in bytes 12-19."""
    return bytes(12) + struct.pack(">Q", mloi)


# --- READ POSITION data ------------------------------------------------------------------------
def read_position_short(
    position: int, *, bop: bool, eop: bool, partition: int = 0, bpew: bool = False
) -> bytes:
    """Short form (20 bytes): BOP, EOP, LOLU, BPEW; first and last logical object
    location (the same: nothing is held in an object buffer); buffered counts zero."""
    lolu = position > 0xFFFFFFFF
    flags = (0x80 if bop else 0) | (0x40 if eop else 0) | (0x04 if lolu else 0) | (
        0x01 if bpew else 0
    )
    loc = 0 if lolu else position
    return struct.pack(">BBxxIIxBHI", flags, partition & 0xFF, loc, loc, 0, 0, 0)


def read_position_long(
    position: int, file_number: int, *, bop: bool, eop: bool, partition: int = 0,
    bpew: bool = False,
) -> bytes:
    """Long form (32 bytes): partition, logical object number, logical file identifier."""
    flags = (0x80 if bop else 0) | (0x40 if eop else 0) | (0x01 if bpew else 0)
    return struct.pack(">BxxxIQQQ", flags, partition, position, file_number, 0)


class ShortPosition(NamedTuple):
    bop: bool
    eop: bool
    partition: int
    first: int
    last: int


def parse_read_position_short(data: bytes | memoryview) -> ShortPosition:
    b = bytes(data[:20])
    flags, part, first, last = struct.unpack_from(">BBxxII", b)
    return ShortPosition(bool(flags & 0x80), bool(flags & 0x40), part, first, last)


# --- mode parameters ---------------------------------------------------------------------------
def block_descriptor(density: int, block_length: int, number_of_blocks: int = 0) -> bytes:
    """Mode parameter block descriptor for sequential-access devices (8 bytes):
    DENSITY CODE, NUMBER OF BLOCKS (3 bytes), reserved, BLOCK LENGTH (3 bytes, 0 =
    variable)."""
    return (
        bytes([density & 0xFF]) + number_of_blocks.to_bytes(3, "big") + b"\x00"
        + block_length.to_bytes(3, "big")
    )


class BlockDescriptor(NamedTuple):
    density: int
    number_of_blocks: int
    block_length: int


def parse_block_descriptor(bd: bytes) -> BlockDescriptor:
    return BlockDescriptor(
        bd[0], int.from_bytes(bd[1:4], "big"), int.from_bytes(bd[5:8], "big")
    )


def device_specific_parameter(write_protected: bool, buffered_mode: int, speed: int = 0) -> int:
    """Mode parameter header byte for sequential-access devices: WP (bit 7),
    BUFFERED MODE (bits 6-4), SPEED (bits 3-0)."""
    return (0x80 if write_protected else 0) | (buffered_mode & 7) << 4 | (speed & 0xF)


def data_compression_page() -> bytes:
    """Data Compression mode page (0Fh) of a drive without compression: DCE and DCC zero."""
    return bytes([DATA_COMPRESSION_PAGE, 0x0E]) + bytes(14)


def device_configuration_page(*, lois: bool = True, eeg: bool = True, sew: bool = True) -> bytes:
    """Device Configuration mode page (10h): active format and partition 0, no write
    delay; LOIS (logical object identifiers supported), EEG (EOD generation) and SEW
    (synchronize at early warning) as given."""
    page = bytearray(16)
    page[0], page[1] = DEVICE_CONFIGURATION_PAGE, 0x0E
    page[8] = 0x40 if lois else 0
    page[10] = (0x10 if eeg else 0) | (0x08 if sew else 0)
    return bytes(page)


def changeable(page: bytes) -> bytes:
    """The changeable-values form of a page none of whose fields can change."""
    return page[:2] + bytes(len(page) - 2)


# --- stream sense --------------------------------------------------------------------------
class FilemarkDetected(CheckCondition):
    """NO SENSE, FILEMARK, FILEMARK DETECTED; INFORMATION is the residue (bytes or
    blocks not read, or blocks not spaced over)."""

    def __init__(self, residue: int, *, transferred: int | None = None):
        self.residue = residue
        super().__init__(
            SenseData(SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, information=residue,
                      filemark=True),
            transferred=transferred, message=f"filemark detected, residue {residue}",
        )


class EndOfData(CheckCondition):
    """BLANK CHECK, END-OF-DATA DETECTED; INFORMATION is the residue when known. EOM is
    set when end-of-data lies past early warning."""

    def __init__(self, residue: int | None, *, transferred: int | None = None,
                 eom: bool = False):
        self.residue = residue
        super().__init__(
            SenseData(SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, information=residue,
                      eom=eom),
            transferred=transferred, message=f"end of data, residue {residue}",
        )


class IncorrectLength(CheckCondition):
    """NO SENSE, ILI; INFORMATION is requested minus actual (negative when the logical
    block was longer than requested), or in fixed mode the blocks not read."""

    def __init__(self, residue: int, *, transferred: int | None = None):
        self.residue = residue
        super().__init__(
            SenseData(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE_INFORMATION,
                      information=residue, ili=True),
            transferred=transferred, message=f"incorrect length, residue {residue}",
        )


class EarlyWarning(CheckCondition):
    """NO SENSE, EOM, END-OF-PARTITION/MEDIUM DETECTED: the write completed past early
    warning (INFORMATION zero: nothing is left unwritten)."""

    def __init__(self) -> None:
        self.residue = 0
        super().__init__(
            SenseData(SenseKey.NO_SENSE, Asc.END_OF_PARTITION_MEDIUM_DETECTED, information=0,
                      eom=True),
            message="early warning: the write completed near the end of the medium",
        )


class VolumeOverflow(CheckCondition):
    """VOLUME OVERFLOW, EOM, END-OF-PARTITION/MEDIUM DETECTED; INFORMATION is the residue
    (bytes, blocks or filemarks not written)."""

    def __init__(self, residue: int):
        self.residue = residue
        super().__init__(
            SenseData(SenseKey.VOLUME_OVERFLOW, Asc.END_OF_PARTITION_MEDIUM_DETECTED,
                      information=residue, eom=True),
            message=f"volume overflow, {residue} not written",
        )


class BeginningOfPartition(CheckCondition):
    """NO SENSE, EOM, BEGINNING-OF-PARTITION/MEDIUM DETECTED: spacing backward met BOP;
    INFORMATION is the count not spaced over."""

    def __init__(self, residue: int):
        self.residue = residue
        super().__init__(
            SenseData(SenseKey.NO_SENSE, Asc.BEGINNING_OF_PARTITION_MEDIUM_DETECTED,
                      information=residue, eom=True),
            message=f"beginning of partition, residue {residue}",
        )


class MediumNotPresent(NotReady):
    """NOT READY, MEDIUM NOT PRESENT (the cartridge is unloaded)."""

    def __init__(self) -> None:
        super().__init__(Asc.MEDIUM_NOT_PRESENT)
