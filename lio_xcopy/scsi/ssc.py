"""SSC-4 stream commands: CDB layouts, the data they return or take, and the stream sense.

Pure builders and parsers only; :class:`lio_xcopy.devices.tape.Tape` decides what goes
in them. Commands are named, not numbered: SSC clause numbers move between drafts.
In the stream sense, INFORMATION holds a residue: a READ reports requested minus actual
(signed), a SPACE the count it did not space over (positive either way, as st expects).
"""

from __future__ import annotations

import struct
from typing import NamedTuple, TypeAlias

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi.cdb import Cdb, bitfield
from lio_xcopy.scsi.errors import CheckCondition, NotReady
from lio_xcopy.scsi.layout import Layout
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey

# --- CDB layouts -----------------------------------------------------------------------------


class Rewind(Cdb, name="REWIND", opcode=0x01, length=6, clause="SSC-4"):
    immed: int = bitfield(1, 1)


class ReadBlockLimits(Cdb, name="READ BLOCK LIMITS", opcode=0x05, length=6, clause="SSC-4"):
    mloi: int = bitfield(1, 1)


class Read6(Cdb, name="READ (6)", opcode=0x08, length=6, clause="SSC-4"):
    sili: int = bitfield(1, 1, lsb=1)
    fixed: int = bitfield(1, 1)
    transfer_length: int = bitfield(2, 24)


class Write6(Cdb, name="WRITE (6)", opcode=0x0A, length=6, clause="SSC-4", data_out=True):
    fixed: int = bitfield(1, 1)
    transfer_length: int = bitfield(2, 24)


class WriteFilemarks6(Cdb, name="WRITE FILEMARKS (6)", opcode=0x10, length=6, clause="SSC-4"):
    wsmk: int = bitfield(1, 1, lsb=1)
    immed: int = bitfield(1, 1)
    filemark_count: int = bitfield(2, 24)


class Space6(Cdb, name="SPACE (6)", opcode=0x11, length=6, clause="SSC-4"):
    code: int = bitfield(1, 4)
    count: int = bitfield(2, 24)


class Erase6(Cdb, name="ERASE (6)", opcode=0x19, length=6, clause="SSC-4"):
    immed: int = bitfield(1, 1, lsb=1)
    long: int = bitfield(1, 1)


class LoadUnload(Cdb, name="LOAD UNLOAD", opcode=0x1B, length=6, clause="SSC-4"):
    immed: int = bitfield(1, 1)
    hold: int = bitfield(4, 1, lsb=3)
    eot: int = bitfield(4, 1, lsb=2)
    reten: int = bitfield(4, 1, lsb=1)
    load: int = bitfield(4, 1)


class PreventAllowMediumRemoval(
    Cdb, name="PREVENT ALLOW MEDIUM REMOVAL", opcode=0x1E, length=6, clause="SSC-4",
):
    prevent: int = bitfield(4, 2)


class Locate10(Cdb, name="LOCATE (10)", opcode=0x2B, length=10, clause="SSC-4"):
    bt: int = bitfield(1, 1, lsb=2)
    cp: int = bitfield(1, 1, lsb=1)
    immed: int = bitfield(1, 1)
    logical_object_identifier: int = bitfield(3, 32)
    partition: int = bitfield(8, 8)


class ReadPositionShort(
    Cdb, name="READ POSITION (SHORT FORM - BLOCK ID)", opcode=0x34, length=10, clause="SSC-4",
    service_action=0x00,
):
    allocation_length: int = bitfield(7, 16)


class ReadPositionShortVendor(
    Cdb, name="READ POSITION (SHORT FORM - VENDOR-SPECIFIC)", opcode=0x34, length=10,
    clause="SSC-4", service_action=0x01,
):
    allocation_length: int = bitfield(7, 16)


class ReadPositionLong(
    Cdb, name="READ POSITION (LONG FORM)", opcode=0x34, length=10, clause="SSC-4",
    service_action=0x06,
):
    allocation_length: int = bitfield(7, 16)


class ReadPositionExtended(
    Cdb, name="READ POSITION (EXTENDED FORM)", opcode=0x34, length=10, clause="SSC-4",
    service_action=0x08,
):
    allocation_length: int = bitfield(7, 16)


AnyReadPosition: TypeAlias = (
    ReadPositionShort | ReadPositionShortVendor | ReadPositionLong | ReadPositionExtended
)


class FormatMedium(Cdb, name="FORMAT MEDIUM", opcode=0x04, length=6, clause="SSC-4", data_out=True):
    verify: int = bitfield(1, 1, lsb=1)
    immed: int = bitfield(1, 1)
    format: int = bitfield(2, 4)
    transfer_length: int = bitfield(3, 16)


class ReportDensitySupport(
    Cdb, name="REPORT DENSITY SUPPORT", opcode=0x44, length=10, clause="SSC-4",
):
    medium_type: int = bitfield(1, 1, lsb=1)
    media: int = bitfield(1, 1)
    allocation_length: int = bitfield(7, 16)


class Space16(Cdb, name="SPACE (16)", opcode=0x91, length=16, clause="SSC-4"):
    code: int = bitfield(1, 4)
    count: int = bitfield(4, 64)
    parameter_length: int = bitfield(12, 16)


class Locate16(Cdb, name="LOCATE (16)", opcode=0x92, length=16, clause="SSC-4"):
    dest_type: int = bitfield(1, 2, lsb=3)
    cp: int = bitfield(1, 1, lsb=1)
    immed: int = bitfield(1, 1)
    bam: int = bitfield(2, 1)
    partition: int = bitfield(3, 8)
    logical_identifier: int = bitfield(4, 64)


# LOG SELECT and LOG SENSE are SPC-4 commands (6.7, 6.8), here because the tape is the one
# device that serves log pages.


class LogSelect(Cdb, name="LOG SELECT", opcode=0x4C, length=10, clause="SPC-4 6.7", data_out=True):
    pcr: int = bitfield(1, 1, lsb=1)
    sp: int = bitfield(1, 1)
    pc: int = bitfield(2, 2, lsb=6)
    page_code: int = bitfield(2, 6)
    subpage_code: int = bitfield(3, 8)
    parameter_list_length: int = bitfield(7, 16)


class LogSense(Cdb, name="LOG SENSE", opcode=0x4D, length=10, clause="SPC-4 6.8"):
    sp: int = bitfield(1, 1)
    pc: int = bitfield(2, 2, lsb=6)
    page_code: int = bitfield(2, 6)
    subpage_code: int = bitfield(3, 8)
    parameter_pointer: int = bitfield(5, 16)
    allocation_length: int = bitfield(7, 16)


# SPACE codes
SPACE_BLOCKS = 0
SPACE_FILEMARKS = 1
SPACE_END_OF_DATA = 3

# LOCATE (16) DEST_TYPE
DEST_OBJECT = 0
DEST_FILE = 1
DEST_END_OF_DATA = 3

# mode pages
DATA_COMPRESSION_PAGE = 0x0F
DCE = 0x80  # Data Compression page byte 2: data compression enable
DCC = 0x40  # byte 2: data compression capable
DDE = 0x80  # byte 3: data decompression enable
DEVICE_CONFIGURATION_PAGE = 0x10
DEVICE_CONFIGURATION_EXTENSION = 0x01  # subpage of 10h
MEDIUM_PARTITION_PAGE = 0x11
#: Medium Partition page byte 4: FDP, SDP, IDP (bits 7-5), a request to partition now.
PARTITION_NOW = 0xE0
DENSITY_DEFAULT = 0x00
DENSITY_NO_CHANGE = 0x7F
#: Our one density code: vendor specific (80h-FFh), one no mt-st table names.
DENSITY_AWSTAPE = 0xA0
SHORT_ERASE_WRITES_EOD = 0x02

# log pages
SUPPORTED_LOG_PAGES = 0x00
SEQUENTIAL_ACCESS_DEVICE_PAGE = 0x0C
TAPE_ALERT_PAGE = 0x2E

MB = 1000 * 1000  # SSC capacities and PEWS count decimal megabytes


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
    bpew: bool = False, mpu: bool = False, lonu: bool = False,
) -> bytes:
    """Long form (32 bytes): partition, logical object number, logical file identifier.
    MPU and LONU say the position is unknown (:func:`parse_read_position_long`)."""
    flags = ((0x80 if bop else 0) | (0x40 if eop else 0) | (0x08 if mpu else 0)
             | (0x04 if lonu else 0) | (0x01 if bpew else 0))
    return struct.pack(">BxxxIQQQ", flags, partition, position, file_number, 0)


def read_position_extended(
    position: int, *, bop: bool, eop: bool, partition: int = 0, bpew: bool = False
) -> bytes:
    """Extended form (32 bytes): BOP, EOP, BPEW, ADDITIONAL LENGTH 1Ch, first and last
    logical object location (64-bit); nothing in the object buffer."""
    flags = (0x80 if bop else 0) | (0x40 if eop else 0) | (0x01 if bpew else 0)
    return struct.pack(">BBHxBHQQQ", flags, partition & 0xFF, 0x1C, 0, 0, position, position, 0)


class PositionFormatError(LioXcopyError, ValueError):
    """READ POSITION data that is too short to decode."""


class LongPosition(NamedTuple):
    """READ POSITION long form data (SSC-4 READ POSITION, service action 06h)."""

    bop: bool
    eop: bool
    bpew: bool
    partition: int
    object_number: int
    file_identifier: int
    #: MAP POSITION UNKNOWN, LOGICAL OBJECT NUMBER UNKNOWN: the numbers mean nothing
    mpu: bool = False
    lonu: bool = False


def parse_read_position_long(data: bytes | memoryview) -> LongPosition:
    if len(data) < 24:
        raise PositionFormatError(f"READ POSITION long form data of {len(data)} bytes "
                                  "(needs 32)")
    flags, part, obj, fid = struct.unpack_from(">BxxxIQQ", bytes(data[:32]))
    return LongPosition(bool(flags & 0x80), bool(flags & 0x40), bool(flags & 1), part, obj, fid,
                        mpu=bool(flags & 0x08), lonu=bool(flags & 0x04))


# --- REPORT DENSITY SUPPORT data -----------------------------------------------------------
def _text(value: str, width: int) -> bytes:
    return value.encode("ascii", "replace")[:width].ljust(width, b" ")


def density_support(
    density: int, capacity_mb: int, *, writable: bool, default: bool = True,
    organization: str = "LIO-ORG", name: str = "AWSTAPE",
    description: str = "AWSTAPE file",
) -> bytes:
    """REPORT DENSITY SUPPORT data with one density support data block descriptor
    (52 bytes: WRTOK, DEFLT, DLV with DESCRIPTOR LENGTH 2Fh; no bits per mm, width or
    tracks for a file; CAPACITY in megabytes)."""
    flags = (0x80 if writable else 0) | (0x20 if default else 0) | 0x01
    desc = struct.pack(">BBBH3sHHI", density, density, flags, 0x2F, b"\0\0\0", 0, 0,
                       min(capacity_mb, 0xFFFFFFFF))
    desc += _text(organization, 8) + _text(name, 8) + _text(description, 20)
    return struct.pack(">Hxx", len(desc) + 2) + desc


def medium_type_support(
    medium_type: int, densities: tuple[int, ...], *, organization: str = "LIO-ORG",
    name: str = "AWSTAPE", description: str = "AWSTAPE file",
) -> bytes:
    """REPORT DENSITY SUPPORT data with MEDIUM TYPE one: one medium type descriptor
    (56 bytes, DESCRIPTOR LENGTH 34h) naming the density codes the medium takes."""
    codes = bytes(densities[:9]).ljust(9, b"\0")
    desc = struct.pack(">BxHB9sHHxx", medium_type, 0x34, len(densities[:9]), codes, 0, 0)
    desc += _text(organization, 8) + _text(name, 8) + _text(description, 20)
    return struct.pack(">Hxx", len(desc) + 2) + desc


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
#: Mode parameter block descriptor of a sequential-access device, SSC-4 8.3.3:
#: DENSITY CODE, NUMBER OF BLOCKS, reserved, BLOCK LENGTH (0: variable)
BLOCK_DESCRIPTOR_LAYOUT = Layout(
    "mode parameter block descriptor (sequential-access)", 8, density_code=bitfield(0),
    number_of_blocks=bitfield(1, 24), block_length=bitfield(5, 24),
)
#: DEVICE-SPECIFIC PARAMETER of the mode parameter header, SSC-4 8.3.2: WP, BUFFERED
#: MODE, SPEED (one byte, placed by the header's table)
DEVICE_SPECIFIC_PARAMETER_LAYOUT = Layout(
    "device-specific parameter (sequential-access)", 1, wp=bitfield(0, 1, lsb=7),
    buffered_mode=bitfield(0, 3, lsb=4), speed=bitfield(0, 4),
)


def block_descriptor(density: int, block_length: int, number_of_blocks: int = 0) -> bytes:
    """Mode parameter block descriptor for sequential-access devices (8 bytes):
    DENSITY CODE, NUMBER OF BLOCKS (3 bytes), reserved, BLOCK LENGTH (3 bytes, 0 =
    variable)."""
    return bytes(BLOCK_DESCRIPTOR_LAYOUT.encode({
        "density_code": density & 0xFF, "number_of_blocks": number_of_blocks,
        "block_length": block_length,
    }))


class BlockDescriptor(NamedTuple):
    density: int
    number_of_blocks: int
    block_length: int


def parse_block_descriptor(bd: bytes | memoryview) -> BlockDescriptor:
    d = BLOCK_DESCRIPTOR_LAYOUT.decode(bd)
    return BlockDescriptor(d["density_code"], d["number_of_blocks"], d["block_length"])


def device_specific_parameter(*, write_protected: bool, buffered_mode: int, speed: int = 0) -> int:
    """Mode parameter header byte for sequential-access devices: WP (bit 7),
    BUFFERED MODE (bits 6-4), SPEED (bits 3-0)."""
    return DEVICE_SPECIFIC_PARAMETER_LAYOUT.encode({
        "wp": write_protected, "buffered_mode": buffered_mode & 7, "speed": speed & 0xF,
    })[0]


# Mode page field tables (SSC-4 8.3): the fields we set; the others are zero.
DATA_COMPRESSION_LAYOUT = Layout(
    "Data Compression mode page", 16, page_code=bitfield(0, 6), page_length=bitfield(1),
    dce=bitfield(2, 1, lsb=7), dcc=bitfield(2, 1, lsb=6), dde=bitfield(3, 1, lsb=7),
    compression_algorithm=bitfield(4, 32), decompression_algorithm=bitfield(8, 32),
)
DEVICE_CONFIGURATION_LAYOUT = Layout(
    "Device Configuration mode page", 16, page_code=bitfield(0, 6), page_length=bitfield(1),
    lois=bitfield(8, 1, lsb=6), eeg=bitfield(10, 1, lsb=4), sew=bitfield(10, 1, lsb=3),
)
DEVICE_CONFIGURATION_EXTENSION_LAYOUT = Layout(
    "Device Configuration Extension mode page", 32, spf=bitfield(0, 1, lsb=6),
    page_code=bitfield(0, 6), subpage_code=bitfield(1), page_length=bitfield(2, 16),
    short_erase_mode=bitfield(5), pews=bitfield(6, 16),
)
MEDIUM_PARTITION_LAYOUT = Layout(
    "Medium Partition mode page", 10, page_code=bitfield(0, 6), page_length=bitfield(1),
    maximum_additional_partitions=bitfield(2), additional_partitions_defined=bitfield(3),
    fdp=bitfield(4, 1, lsb=7), sdp=bitfield(4, 1, lsb=6), idp=bitfield(4, 1, lsb=5),
    psum=bitfield(4, 2, lsb=3), medium_format_recognition=bitfield(5),
    partition_size=bitfield(8, 16),
)
PSUM_MEGABYTES = 0b10
MEDIUM_FORMAT_RECOGNITION_BOTH = 0x03  # format and partition recognition


def data_compression_page(*, dce: bool = False) -> bytes:
    """Data Compression mode page (0Fh, 16 bytes): DCC one (the drive is capable, so st's
    ``MTCOMPRESSION`` sends MODE SELECT instead of failing with EIO), DCE ``dce``, DDE one
    (data that is not compressed is still returned); COMPRESSION and DECOMPRESSION
    ALGORITHM zero: no algorithm changes how a record is stored."""
    return bytes(DATA_COMPRESSION_LAYOUT.encode({
        "page_code": DATA_COMPRESSION_PAGE, "page_length": DATA_COMPRESSION_LAYOUT.length - 2,
        "dcc": True, "dce": dce, "dde": True,
    }))


def device_configuration_page(*, lois: bool = True, eeg: bool = True, sew: bool = True) -> bytes:
    """Device Configuration mode page (10h): active format and partition 0, no write
    delay; LOIS (logical object identifiers supported), EEG (EOD generation) and SEW
    (synchronize at early warning) as given."""
    return bytes(DEVICE_CONFIGURATION_LAYOUT.encode({
        "page_code": DEVICE_CONFIGURATION_PAGE,
        "page_length": DEVICE_CONFIGURATION_LAYOUT.length - 2,
        "lois": lois, "eeg": eeg, "sew": sew,
    }))


def device_configuration_extension_page(pews: int = 0) -> bytes:
    """Device Configuration Extension mode page (10h/01h, 32 bytes): SHORT ERASE MODE
    02h (a short ERASE writes end of data), PROGRAMMABLE EARLY WARNING SIZE ``pews``
    in megabytes."""
    layout = DEVICE_CONFIGURATION_EXTENSION_LAYOUT
    return bytes(layout.encode({
        "spf": True, "page_code": DEVICE_CONFIGURATION_PAGE,
        "subpage_code": DEVICE_CONFIGURATION_EXTENSION, "page_length": layout.length - 4,
        "short_erase_mode": SHORT_ERASE_WRITES_EOD, "pews": pews,
    }))


def medium_partition_page(capacity_mb: int) -> bytes:
    """Medium Partition mode page (11h) of a one-partition drive: MAXIMUM ADDITIONAL
    PARTITIONS and ADDITIONAL PARTITIONS DEFINED zero, MEDIUM FORMAT RECOGNITION 03h,
    PSUM 10b (megabytes) and the one partition size descriptor."""
    return bytes(MEDIUM_PARTITION_LAYOUT.encode({
        "page_code": MEDIUM_PARTITION_PAGE, "page_length": MEDIUM_PARTITION_LAYOUT.length - 2,
        "psum": PSUM_MEGABYTES, "medium_format_recognition": MEDIUM_FORMAT_RECOGNITION_BOTH,
        "partition_size": min(capacity_mb, 0xFFFF),
    }))


def changeable(page: bytes, mask: dict[int, int] | None = None) -> bytes:
    """The changeable-values form of a page: its header, then ones where ``mask`` (byte
    offset -> bits) allows a change and zeros elsewhere."""
    head = 4 if page[0] & 0x40 else 2
    out = bytearray(page[:head]) + bytes(len(page) - head)
    for i, bits in (mask or {}).items():
        out[i] = bits
    return bytes(out)


# --- log pages (SPC-4 log parameters, SSC-4 log pages) -----------------------------------
def log_parameter(code: int, value: bytes, control: int = 0x00) -> bytes:
    """One log parameter: code, control byte, length and value."""
    return struct.pack(">HBB", code, control, len(value)) + value


def log_page(page: int, parameters: bytes, subpage: int = 0) -> bytes:
    """Log page header (SPF set for a subpage) and its parameters."""
    return struct.pack(">BBH", page | (0x40 if subpage else 0), subpage, len(parameters)) + (
        parameters
    )


def supported_log_pages(pages: tuple[int, ...]) -> bytes:
    """Supported Log Pages (00h)."""
    return log_page(SUPPORTED_LOG_PAGES, bytes(sorted({SUPPORTED_LOG_PAGES, *pages})))


def supported_log_subpages(pages: tuple[int, ...]) -> bytes:
    """Supported Log Pages and Subpages (00h/FFh): each page with subpage 00h."""
    body = b"".join(bytes([p, 0]) for p in sorted({SUPPORTED_LOG_PAGES, *pages}))
    body += bytes([SUPPORTED_LOG_PAGES, 0xFF])
    return log_page(SUPPORTED_LOG_PAGES, body, 0xFF)


class SequentialAccessCounters(NamedTuple):
    """What the Sequential-Access Device log page (0Ch) reports."""

    bytes_received: int  # 0000h: from application clients by WRITE
    bytes_written: int  # 0001h: to the medium (no compression: the same)
    bytes_read: int  # 0002h: from the medium by READ
    bytes_transferred: int  # 0003h: to application clients by READ
    mb_to_eod: int  # 0004h: native capacity BOP to EOD
    mb_to_ew: int  # 0005h: native capacity BOP to early warning
    mb_ew_to_eop: int  # 0006h: minimum native capacity early warning to EOP
    mb_to_position: int  # 0007h: native capacity BOP to the current position


def sequential_access_page(c: SequentialAccessCounters) -> bytes:
    """Sequential-Access Device log page (0Ch): byte counters 0000h-0003h (8 bytes),
    capacities 0004h-0008h in megabytes (4 bytes, 0008h the object buffer: none) and
    0100h CLEANING REQUIRED zero."""
    params = b"".join(log_parameter(i, v.to_bytes(8, "big")) for i, v in enumerate(c[:4]))
    params += b"".join(
        log_parameter(4 + i, min(v, 0xFFFFFFFF).to_bytes(4, "big"))
        for i, v in enumerate((*c[4:], 0))
    )
    params += log_parameter(0x0100, b"\0")
    return log_page(SEQUENTIAL_ACCESS_DEVICE_PAGE, params)


TAPE_ALERT_FLAGS = 0x40


def tape_alert_page(flags: frozenset[int] | set[int]) -> bytes:
    """TapeAlert log page (2Eh): parameters 0001h-0040h, one flag byte each (control
    byte 03h: binary format list)."""
    return log_page(TAPE_ALERT_PAGE, b"".join(
        log_parameter(i, bytes([1 if i in flags else 0]), 0x03)
        for i in range(1, TAPE_ALERT_FLAGS + 1)
    ))


# TapeAlert flags (SSC-4 Annex, TapeAlert specification)
TA_HARD_ERROR = 0x03
TA_MEDIA = 0x04
TA_READ_FAILURE = 0x05
TA_WRITE_FAILURE = 0x06
TA_WRITE_PROTECT = 0x09
TA_NO_REMOVAL = 0x0A


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


class ProgrammableEarlyWarning(EarlyWarning):
    """NO SENSE, EOM, PROGRAMMABLE EARLY WARNING DETECTED: the write completed in the
    programmable early warning zone (an :class:`EarlyWarning`, so the copy manager
    writes on)."""

    def __init__(self) -> None:
        self.residue = 0
        CheckCondition.__init__(
            self,
            SenseData(SenseKey.NO_SENSE, Asc.PROGRAMMABLE_EARLY_WARNING_DETECTED, information=0,
                      eom=True),
            message="programmable early warning: the write completed",
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
