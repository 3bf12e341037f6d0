"""SBC-4 block commands: CDB layouts and the data they return or take.

Pure builders only; :class:`lio_xcopy.devices.disk.Disk` decides what goes in them.
Clause numbers are those of an SBC-4 draft (5.2 BACKGROUND CONTROL, 5.13 READ (10));
they shift between revisions. READ (6) and WRITE (6) are SBC-3's, obsolete in SBC-4.
"""

from __future__ import annotations

import struct
from typing import Any

from lio_xcopy.scsi.cdb import Field, cdb_layout
from lio_xcopy.scsi.spc import TYPE_DISK, vpd_page

# --- CDB layouts (SBC-4 clause 5) -----------------------------------------------------------
READ_6 = cdb_layout(
    "READ (6)", 0x08, 6, "SBC-3 READ (6)",
    Field("lba", 1, 21), Field("transfer_length", 4, 8),
)
WRITE_6 = cdb_layout(
    "WRITE (6)", 0x0A, 6, "SBC-3 WRITE (6)",
    Field("lba", 1, 21), Field("transfer_length", 4, 8),
    data_out=True,
)
READ_CAPACITY_10 = cdb_layout(
    "READ CAPACITY (10)", 0x25, 10, "SBC-4 5.17",
    Field("lba", 2, 32), Field("pmi", 8, 1),
)
READ_10 = cdb_layout(
    "READ (10)", 0x28, 10, "SBC-4 5.13",
    Field("rdprotect", 1, 3, lsb=5), Field("dpo", 1, 1, lsb=4), Field("fua", 1, 1, lsb=3),
    Field("rarc", 1, 1, lsb=2), Field("lba", 2, 32), Field("group_number", 6, 5),
    Field("transfer_length", 7, 16),
)
WRITE_10 = cdb_layout(
    "WRITE (10)", 0x2A, 10, "SBC-4 5.37",
    Field("wrprotect", 1, 3, lsb=5), Field("dpo", 1, 1, lsb=4), Field("fua", 1, 1, lsb=3),
    Field("lba", 2, 32), Field("group_number", 6, 5), Field("transfer_length", 7, 16),
    data_out=True,
)
SYNCHRONIZE_CACHE_10 = cdb_layout(
    "SYNCHRONIZE CACHE (10)", 0x35, 10, "SBC-4 5.30",
    Field("immed", 1, 1, lsb=1), Field("lba", 2, 32), Field("group_number", 6, 5),
    Field("number_of_blocks", 7, 16),
)
READ_16 = cdb_layout(
    "READ (16)", 0x88, 16, "SBC-4 5.15",
    Field("rdprotect", 1, 3, lsb=5), Field("dpo", 1, 1, lsb=4), Field("fua", 1, 1, lsb=3),
    Field("rarc", 1, 1, lsb=2), Field("lba", 2, 64), Field("transfer_length", 10, 32),
    Field("group_number", 14, 5),
)
WRITE_16 = cdb_layout(
    "WRITE (16)", 0x8A, 16, "SBC-4 5.39",
    Field("wrprotect", 1, 3, lsb=5), Field("dpo", 1, 1, lsb=4), Field("fua", 1, 1, lsb=3),
    Field("lba", 2, 64), Field("transfer_length", 10, 32), Field("group_number", 14, 5),
    data_out=True,
)
SYNCHRONIZE_CACHE_16 = cdb_layout(
    "SYNCHRONIZE CACHE (16)", 0x91, 16, "SBC-4 5.31",
    Field("immed", 1, 1, lsb=1), Field("lba", 2, 64), Field("number_of_blocks", 10, 32),
    Field("group_number", 14, 5),
)
READ_CAPACITY_16 = cdb_layout(
    "READ CAPACITY (16)", 0x9E, 16, "SBC-4 5.18",
    Field("lba", 2, 64), Field("allocation_length", 10, 32), Field("pmi", 14, 1),
    service_action=0x10,
)

READS = (READ_6, READ_10, READ_16)
WRITES = (WRITE_6, WRITE_10, WRITE_16)


def transfer_blocks(cdb: Any) -> int:
    """Blocks a READ/WRITE CDB moves: in the 6-byte CDBs 0 means 256 (SBC-3)."""
    if cdb.LENGTH == 6:
        return cdb.transfer_length or 256
    return cdb.transfer_length


# --- READ CAPACITY parameter data ---------------------------------------------------------
READ_CAPACITY_10_LENGTH = 8
READ_CAPACITY_16_LENGTH = 32
RC_BASIS_LAST_LBA = 0b01


def read_capacity_10_data(last_lba: int, block_length: int) -> bytes:
    """SBC-4 5.17.2: FFFFFFFFh when the last LBA does not fit, sending the
    initiator to READ CAPACITY (16)."""
    return struct.pack(">II", min(last_lba, 0xFFFFFFFF), block_length)


def read_capacity_16_data(
    last_lba: int,
    block_length: int,
    *,
    lbppbe: int = 0,
    lowest_aligned_lba: int = 0,
    lbpme: bool = False,
    lbprz: bool = False,
    rc_basis: int = RC_BASIS_LAST_LBA,
) -> bytes:
    """SBC-4 5.18.2, without protection information."""
    return struct.pack(
        ">QIBBH16x",
        last_lba,
        block_length,
        (rc_basis & 3) << 4,
        lbppbe & 0x0F,
        (0x8000 if lbpme else 0) | (0x4000 if lbprz else 0) | (lowest_aligned_lba & 0x3FFF),
    )


# --- VPD pages (SBC-4 6.6) -----------------------------------------------------------------
VPD_BLOCK_LIMITS = 0xB0
VPD_BLOCK_DEVICE_CHARACTERISTICS = 0xB1
NON_ROTATING = 0x0001


def vpd_block_limits(
    device_type: int = TYPE_DISK,
    *,
    wsnz: bool = False,
    max_compare_and_write_length: int = 0,
    optimal_transfer_length_granularity: int = 0,
    max_transfer_length: int = 0,
    optimal_transfer_length: int = 0,
    max_prefetch_length: int = 0,
    max_unmap_lba_count: int = 0,
    max_unmap_block_descriptor_count: int = 0,
    optimal_unmap_granularity: int = 0,
    unmap_granularity_alignment: int | None = None,
    max_write_same_length: int = 0,
) -> bytes:
    """Block Limits, SBC-4 6.6.4 (page length 3Ch; atomic write fields zero)."""
    uga = 0 if unmap_granularity_alignment is None else 0x80000000 | (
        unmap_granularity_alignment & 0x7FFFFFFF
    )
    body = struct.pack(
        ">BBHIIIIIIIQ20x",
        1 if wsnz else 0,
        max_compare_and_write_length,
        optimal_transfer_length_granularity,
        max_transfer_length,
        optimal_transfer_length,
        max_prefetch_length,
        max_unmap_lba_count,
        max_unmap_block_descriptor_count,
        optimal_unmap_granularity,
        uga,
        max_write_same_length,
    )
    return vpd_page(device_type, VPD_BLOCK_LIMITS, body)


def max_transfer_length(page: bytes | memoryview) -> int:
    """MAXIMUM TRANSFER LENGTH (blocks) of a Block Limits VPD page with its header (SBC-4
    6.6.4, bytes 8-11); 0 when not reported."""
    page = bytes(page)
    return struct.unpack_from(">I", page, 8)[0] if len(page) >= 12 else 0


def vpd_block_device_characteristics(
    device_type: int = TYPE_DISK,
    *,
    medium_rotation_rate: int = NON_ROTATING,
    product_type: int = 0,
    nominal_form_factor: int = 0,
    fuab: bool = False,
    vbuls: bool = False,
) -> bytes:
    """Block Device Characteristics, SBC-4 6.6.2 (page length 3Ch)."""
    body = struct.pack(
        ">HBBB55x",
        medium_rotation_rate,
        product_type,
        nominal_form_factor & 0x0F,
        (0x02 if fuab else 0) | (0x01 if vbuls else 0),
    )
    return vpd_page(device_type, VPD_BLOCK_DEVICE_CHARACTERISTICS, body)


# --- mode parameters (SBC-4 6.5, SPC-4 7.5) ------------------------------------------------
CACHING_PAGE = 0x08
CONTROL_PAGE = 0x0A
CACHING_PAGE_LENGTH = 0x12
CONTROL_PAGE_LENGTH = 0x0A
WCE = 0x04  # caching page byte 2
RCD = 0x01
DSP_WP = 0x80  # device-specific parameter, SBC-4 6.5.1
DSP_DPOFUA = 0x10
SHORT_BLOCK_DESCRIPTOR_LENGTH = 8


def caching_mode_page(*, wce: bool = False, rcd: bool = False) -> bytes:
    """Caching mode page, SBC-4 6.5.5; every other field zero (no pre-fetch control)."""
    buf = bytearray(2 + CACHING_PAGE_LENGTH)
    buf[0], buf[1] = CACHING_PAGE, CACHING_PAGE_LENGTH
    buf[2] = (WCE if wce else 0) | (RCD if rcd else 0)
    return bytes(buf)


def control_mode_page(
    *,
    tst: int = 0,
    d_sense: bool = False,
    gltsd: bool = False,
    queue_algorithm_modifier: int = 0,
    qerr: int = 0,
    swp: bool = False,
    tas: bool = False,
    busy_timeout_period: int = 0,
) -> bytes:
    """Control mode page, SPC-4 7.5.7; all zero gives the changeable mask 'nothing'."""
    return struct.pack(
        ">BBBBBBxxHxx",
        CONTROL_PAGE,
        CONTROL_PAGE_LENGTH,
        (tst & 7) << 5 | (0x04 if d_sense else 0) | (0x02 if gltsd else 0),
        (queue_algorithm_modifier & 0x0F) << 4 | (qerr & 3) << 1,
        0x08 if swp else 0,
        0x40 if tas else 0,
        busy_timeout_period,
    )


def short_block_descriptor(blocks: int, block_length: int) -> bytes:
    """Short LBA mode parameter block descriptor, SBC-4 6.5.2: NUMBER OF LOGICAL BLOCKS
    is FFFFFFFFh when the capacity does not fit."""
    return struct.pack(">IxBH", min(blocks, 0xFFFFFFFF), block_length >> 16, block_length & 0xFFFF)


def parse_short_block_descriptor(desc: bytes | memoryview) -> tuple[int, int, int]:
    """(number of logical blocks, reserved byte, logical block length)."""
    blocks, reserved, hi, lo = struct.unpack_from(">IBBH", desc)
    return blocks, reserved, hi << 16 | lo


def disk_device_specific_parameter(*, wp: bool = False, dpofua: bool = True) -> int:
    """DEVICE-SPECIFIC PARAMETER of the mode parameter header for disks, SBC-4 6.5.1."""
    return (DSP_WP if wp else 0) | (DSP_DPOFUA if dpofua else 0)
