"""SBC-4 block commands: CDB layouts and the data they return or take.

Pure builders only; :class:`lio_xcopy.devices.disk.Disk` decides what goes in them.
Clause numbers are those of an SBC-4 draft (5.2 BACKGROUND CONTROL, 5.13 READ (10));
they shift between revisions. READ (6) and WRITE (6) are SBC-3's, obsolete in SBC-4.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi.cdb import Cdb, bitfield
from lio_xcopy.scsi.errors import ParameterListLengthError
from lio_xcopy.scsi.layout import Layout
from lio_xcopy.scsi.spc import TYPE_DISK, vpd_page

# --- CDB layouts (SBC-4 clause 5) -----------------------------------------------------------


class Read6(Cdb, name="READ (6)", opcode=0x08, length=6, clause="SBC-3 READ (6)"):
    lba: int = bitfield(1, 21)
    transfer_length: int = bitfield(4, 8)


class Write6(Cdb, name="WRITE (6)", opcode=0x0A, length=6, clause="SBC-3 WRITE (6)", data_out=True):
    lba: int = bitfield(1, 21)
    transfer_length: int = bitfield(4, 8)


class ReadCapacity10(Cdb, name="READ CAPACITY (10)", opcode=0x25, length=10, clause="SBC-4 5.17"):
    lba: int = bitfield(2, 32)
    pmi: int = bitfield(8, 1)


class Read10(Cdb, name="READ (10)", opcode=0x28, length=10, clause="SBC-4 5.13"):
    rdprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    fua: int = bitfield(1, 1, lsb=3)
    rarc: int = bitfield(1, 1, lsb=2)
    lba: int = bitfield(2, 32)
    group_number: int = bitfield(6, 5)
    transfer_length: int = bitfield(7, 16)


class Write10(Cdb, name="WRITE (10)", opcode=0x2A, length=10, clause="SBC-4 5.37", data_out=True):
    wrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    fua: int = bitfield(1, 1, lsb=3)
    lba: int = bitfield(2, 32)
    group_number: int = bitfield(6, 5)
    transfer_length: int = bitfield(7, 16)


class SynchronizeCache10(
    Cdb, name="SYNCHRONIZE CACHE (10)", opcode=0x35, length=10, clause="SBC-4 5.30",
):
    immed: int = bitfield(1, 1, lsb=1)
    lba: int = bitfield(2, 32)
    group_number: int = bitfield(6, 5)
    number_of_blocks: int = bitfield(7, 16)


class Read16(Cdb, name="READ (16)", opcode=0x88, length=16, clause="SBC-4 5.15"):
    rdprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    fua: int = bitfield(1, 1, lsb=3)
    rarc: int = bitfield(1, 1, lsb=2)
    lba: int = bitfield(2, 64)
    transfer_length: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


class Write16(Cdb, name="WRITE (16)", opcode=0x8A, length=16, clause="SBC-4 5.39", data_out=True):
    wrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    fua: int = bitfield(1, 1, lsb=3)
    lba: int = bitfield(2, 64)
    transfer_length: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


class SynchronizeCache16(
    Cdb, name="SYNCHRONIZE CACHE (16)", opcode=0x91, length=16, clause="SBC-4 5.31",
):
    immed: int = bitfield(1, 1, lsb=1)
    lba: int = bitfield(2, 64)
    number_of_blocks: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


class ReadCapacity16(
    Cdb, name="READ CAPACITY (16)", opcode=0x9E, length=16, clause="SBC-4 5.18",
    service_action=0x10,
):
    lba: int = bitfield(2, 64)
    allocation_length: int = bitfield(10, 32)
    pmi: int = bitfield(14, 1)


class Read12(Cdb, name="READ (12)", opcode=0xA8, length=12, clause="SBC-4 5.14"):
    rdprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    fua: int = bitfield(1, 1, lsb=3)
    rarc: int = bitfield(1, 1, lsb=2)
    lba: int = bitfield(2, 32)
    transfer_length: int = bitfield(6, 32)
    group_number: int = bitfield(10, 5)


class Write12(Cdb, name="WRITE (12)", opcode=0xAA, length=12, clause="SBC-4 5.38", data_out=True):
    wrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    fua: int = bitfield(1, 1, lsb=3)
    lba: int = bitfield(2, 32)
    transfer_length: int = bitfield(6, 32)
    group_number: int = bitfield(10, 5)


READS = (Read6, Read10, Read12, Read16)
WRITES = (Write6, Write10, Write12, Write16)
#: what a handler of :data:`READS` (:data:`WRITES`) is given
AnyRead: TypeAlias = Read6 | Read10 | Read12 | Read16
AnyWrite: TypeAlias = Write6 | Write10 | Write12 | Write16

# --- the commands of logical block provisioning, verification and caching ---------------


class CompareAndWrite(
    Cdb, name="COMPARE AND WRITE", opcode=0x89, length=16, clause="SBC-4 5.3", data_out=True,
):
    wrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    fua: int = bitfield(1, 1, lsb=3)
    lba: int = bitfield(2, 64)
    number_of_blocks: int = bitfield(13, 8)
    group_number: int = bitfield(14, 5)


class Verify10(Cdb, name="VERIFY (10)", opcode=0x2F, length=10, clause="SBC-4 5.33", data_out=True):
    vrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    bytchk: int = bitfield(1, 2, lsb=1)
    lba: int = bitfield(2, 32)
    group_number: int = bitfield(6, 5)
    verification_length: int = bitfield(7, 16)


class Verify12(Cdb, name="VERIFY (12)", opcode=0xAF, length=12, clause="SBC-4 5.34", data_out=True):
    vrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    bytchk: int = bitfield(1, 2, lsb=1)
    lba: int = bitfield(2, 32)
    verification_length: int = bitfield(6, 32)
    group_number: int = bitfield(10, 5)


class Verify16(Cdb, name="VERIFY (16)", opcode=0x8F, length=16, clause="SBC-4 5.35", data_out=True):
    vrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    bytchk: int = bitfield(1, 2, lsb=1)
    lba: int = bitfield(2, 64)
    verification_length: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


class WriteAndVerify10(
    Cdb, name="WRITE AND VERIFY (10)", opcode=0x2E, length=10, clause="SBC-4 5.41", data_out=True,
):
    wrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    bytchk: int = bitfield(1, 2, lsb=1)
    lba: int = bitfield(2, 32)
    group_number: int = bitfield(6, 5)
    transfer_length: int = bitfield(7, 16)


class WriteAndVerify12(
    Cdb, name="WRITE AND VERIFY (12)", opcode=0xAE, length=12, clause="SBC-4 5.42", data_out=True,
):
    wrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    bytchk: int = bitfield(1, 2, lsb=1)
    lba: int = bitfield(2, 32)
    transfer_length: int = bitfield(6, 32)
    group_number: int = bitfield(10, 5)


class WriteAndVerify16(
    Cdb, name="WRITE AND VERIFY (16)", opcode=0x8E, length=16, clause="SBC-4 5.43", data_out=True,
):
    wrprotect: int = bitfield(1, 3, lsb=5)
    dpo: int = bitfield(1, 1, lsb=4)
    bytchk: int = bitfield(1, 2, lsb=1)
    lba: int = bitfield(2, 64)
    transfer_length: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


# PBDATA and LBDATA (byte 1 bits 2-1) are SBC-3's, obsolete in SBC-4: decoded to refuse them


class WriteSame10(
    Cdb, name="WRITE SAME (10)", opcode=0x41, length=10, clause="SBC-4 5.47", data_out=True,
):
    wrprotect: int = bitfield(1, 3, lsb=5)
    anchor: int = bitfield(1, 1, lsb=4)
    unmap: int = bitfield(1, 1, lsb=3)
    pbdata: int = bitfield(1, 1, lsb=2)
    lbdata: int = bitfield(1, 1, lsb=1)
    lba: int = bitfield(2, 32)
    group_number: int = bitfield(6, 5)
    number_of_blocks: int = bitfield(7, 16)


class WriteSame16(
    Cdb, name="WRITE SAME (16)", opcode=0x93, length=16, clause="SBC-4 5.48", data_out=True,
):
    wrprotect: int = bitfield(1, 3, lsb=5)
    anchor: int = bitfield(1, 1, lsb=4)
    unmap: int = bitfield(1, 1, lsb=3)
    pbdata: int = bitfield(1, 1, lsb=2)
    lbdata: int = bitfield(1, 1, lsb=1)
    ndob: int = bitfield(1, 1)
    lba: int = bitfield(2, 64)
    number_of_blocks: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


class Unmap(Cdb, name="UNMAP", opcode=0x42, length=10, clause="SBC-4 5.32", data_out=True):
    anchor: int = bitfield(1, 1)
    group_number: int = bitfield(6, 5)
    parameter_list_length: int = bitfield(7, 16)


class GetLbaStatus(
    Cdb, name="GET LBA STATUS", opcode=0x9E, length=16, clause="SBC-4 5.5", service_action=0x12,
):
    lba: int = bitfield(2, 64)
    allocation_length: int = bitfield(10, 32)


class PreFetch10(Cdb, name="PRE-FETCH (10)", opcode=0x34, length=10, clause="SBC-4 5.10"):
    immed: int = bitfield(1, 1, lsb=1)
    lba: int = bitfield(2, 32)
    group_number: int = bitfield(6, 5)
    prefetch_length: int = bitfield(7, 16)


class PreFetch16(Cdb, name="PRE-FETCH (16)", opcode=0x90, length=16, clause="SBC-4 5.11"):
    immed: int = bitfield(1, 1, lsb=1)
    lba: int = bitfield(2, 64)
    prefetch_length: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


VERIFIES = (Verify10, Verify12, Verify16)
WRITE_AND_VERIFIES = (WriteAndVerify10, WriteAndVerify12, WriteAndVerify16)
WRITE_SAMES = (WriteSame10, WriteSame16)
PRE_FETCHES = (PreFetch10, PreFetch16)
AnyVerify: TypeAlias = Verify10 | Verify12 | Verify16
AnyWriteAndVerify: TypeAlias = WriteAndVerify10 | WriteAndVerify12 | WriteAndVerify16
AnyWriteSame: TypeAlias = WriteSame10 | WriteSame16
AnyPreFetch: TypeAlias = PreFetch10 | PreFetch16
AnySynchronizeCache: TypeAlias = SynchronizeCache10 | SynchronizeCache16

# BYTCHK, SBC-4 5.33 (VERIFY) and 5.41 (WRITE AND VERIFY)
BYTCHK_NONE = 0b00  # medium verification only
BYTCHK_COMPARE = 0b01  # compare the Data-Out buffer with the medium
BYTCHK_ONE_BLOCK = 0b11  # VERIFY only: one block of Data-Out compared with every block


def transfer_blocks(cdb: AnyRead | AnyWrite | AnyWriteAndVerify) -> int:
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


class CapacityFormatError(LioXcopyError, ValueError):
    """READ CAPACITY (16) parameter data that is too short to decode."""


@dataclass(frozen=True, slots=True)
class Capacity16:
    """READ CAPACITY (16) parameter data, SBC-4 5.18.2, without protection information."""

    last_lba: int
    block_length: int
    lbppbe: int = 0
    lowest_aligned_lba: int = 0
    lbpme: bool = False
    lbprz: bool = False
    rc_basis: int = RC_BASIS_LAST_LBA

    @property
    def blocks(self) -> int:
        return self.last_lba + 1

    @property
    def size(self) -> int:
        return self.blocks * self.block_length

    def encode(self) -> bytes:
        return struct.pack(
            ">QIBBH16x",
            self.last_lba,
            self.block_length,
            (self.rc_basis & 3) << 4,
            self.lbppbe & 0x0F,
            (0x8000 if self.lbpme else 0) | (0x4000 if self.lbprz else 0)
            | (self.lowest_aligned_lba & 0x3FFF),
        )

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Capacity16:
        """The data a device returned: at least RETURNED LOGICAL BLOCK ADDRESS, LOGICAL
        BLOCK LENGTH and the P_TYPE/PROT_EN and LBPPBE bytes (14); the provisioning bits
        and LOWEST ALIGNED LOGICAL BLOCK ADDRESS when bytes 14-15 came too."""
        data = bytes(data)
        if len(data) < 14:
            raise CapacityFormatError(f"READ CAPACITY (16) data of {len(data)} bytes: "
                                      "expected 32")
        last_lba, block_length, b12, b13 = struct.unpack_from(">QIBB", data)
        b14 = data[14] if len(data) > 15 else 0
        b15 = data[15] if len(data) > 15 else 0
        return cls(last_lba, block_length, lbppbe=b13 & 0x0F,
                   lowest_aligned_lba=(b14 & 0x3F) << 8 | b15, lbpme=bool(b14 & 0x80),
                   lbprz=bool(b14 & 0x40), rc_basis=(b12 >> 4) & 3)


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
    """SBC-4 5.18.2, without protection information (:class:`Capacity16`)."""
    return Capacity16(last_lba, block_length, lbppbe, lowest_aligned_lba, lbpme, lbprz,
                      rc_basis).encode()


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


VPD_LOGICAL_BLOCK_PROVISIONING = 0xB2
PROVISIONING_FULL = 0b000
PROVISIONING_RESOURCE = 0b001
PROVISIONING_THIN = 0b010
LBPRZ_ZEROS = 0b001  # SBC-4 6.6.6 LBPRZ: deallocated blocks read as zeros


@dataclass(frozen=True, slots=True)
class LogicalBlockProvisioning:
    """Logical Block Provisioning VPD page, SBC-4 6.6.6, without a provisioning group
    descriptor (DP zero) and without thresholds (THRESHOLD EXPONENT zero)."""

    lbpu: bool = False  # UNMAP supported
    lbpws: bool = False  # WRITE SAME (16) with UNMAP supported
    lbpws10: bool = False  # WRITE SAME (10) with UNMAP supported
    lbprz: int = 0  # 3 bits
    anc_sup: bool = False
    provisioning_type: int = PROVISIONING_FULL
    threshold_exponent: int = 0
    minimum_percentage: int = 0
    threshold_percentage: int = 0

    def encode(self, device_type: int = TYPE_DISK) -> bytes:
        flags = ((0x80 if self.lbpu else 0) | (0x40 if self.lbpws else 0)
                 | (0x20 if self.lbpws10 else 0) | (self.lbprz & 7) << 2
                 | (0x02 if self.anc_sup else 0))
        body = struct.pack(">BBBB", self.threshold_exponent, flags,
                           (self.minimum_percentage & 0x1F) << 3 | (self.provisioning_type & 7),
                           self.threshold_percentage)
        return vpd_page(device_type, VPD_LOGICAL_BLOCK_PROVISIONING, body)

    @classmethod
    def decode(cls, page: bytes | memoryview) -> LogicalBlockProvisioning:
        exp, flags, b6, pct = struct.unpack_from(">BBBB", page, 4)
        return cls(bool(flags & 0x80), bool(flags & 0x40), bool(flags & 0x20),
                   (flags >> 2) & 7, bool(flags & 0x02), b6 & 7, exp, b6 >> 3, pct)


# --- UNMAP parameter list, SBC-4 5.32.2 ------------------------------------------------------
UNMAP_HEADER_LENGTH = 8
UNMAP_DESCRIPTOR_LENGTH = 16


def unmap_parameter_list(extents: Sequence[tuple[int, int]]) -> bytes:
    """The UNMAP parameter list for ``(lba, number of blocks)`` extents."""
    body = b"".join(struct.pack(">QI4x", lba, n) for lba, n in extents)
    return struct.pack(">HH4x", len(body) + 6, len(body)) + body


def parse_unmap_parameter_list(data: bytes | memoryview) -> list[tuple[int, int, int]]:
    """``(lba, number of blocks, offset of the descriptor)`` for each whole UNMAP block
    descriptor of the list, as far as both the list and its UNMAP BLOCK DESCRIPTOR DATA
    LENGTH reach (SBC-4 5.32.2: a truncated last descriptor is ignored). A list
    shorter than its header is PARAMETER LIST LENGTH ERROR."""
    if len(data) < UNMAP_HEADER_LENGTH:
        raise ParameterListLengthError(message=f"UNMAP list of {len(data)} bytes")
    bd_length = struct.unpack_from(">H", data, 2)[0]
    end = min(len(data), UNMAP_HEADER_LENGTH + bd_length)
    return [
        (*struct.unpack_from(">QI", data, pos), pos)
        for pos in range(UNMAP_HEADER_LENGTH, end - UNMAP_DESCRIPTOR_LENGTH + 1,
                         UNMAP_DESCRIPTOR_LENGTH)
    ]


# --- GET LBA STATUS parameter data, SBC-4 5.5.2 ---------------------------------------------
MAPPED = 0x0  # PROVISIONING STATUS, SBC-4 5.5.2
DEALLOCATED = 0x1
ANCHORED = 0x2
LBA_STATUS_HEADER_LENGTH = 8
LBA_STATUS_DESCRIPTOR_LENGTH = 16


def lba_status_data(descriptors: Sequence[tuple[int, int, int]]) -> bytes:
    """LBA status parameter data from ``(lba, number of blocks, provisioning status)``;
    PARAMETER DATA LENGTH counts every descriptor (the caller truncates)."""
    body = b"".join(struct.pack(">QIB3x", lba, n, status & 0x0F)
                    for lba, n, status in descriptors)
    return struct.pack(">I4x", len(body) + 4) + body


def parse_lba_status_data(data: bytes | memoryview) -> list[tuple[int, int, int]]:
    """The whole descriptors of LBA status parameter data."""
    end = min(len(data), 4 + struct.unpack_from(">I", data)[0])
    return [
        (lba, n, status & 0x0F)
        for lba, n, status in (struct.unpack_from(">QIB", data, pos) for pos in range(
            LBA_STATUS_HEADER_LENGTH, end - LBA_STATUS_DESCRIPTOR_LENGTH + 1,
            LBA_STATUS_DESCRIPTOR_LENGTH))
    ]


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


#: Caching mode page, SBC-4 6.5.5 (the fields we set; the rest are zero)
CACHING_PAGE_LAYOUT = Layout(
    "Caching mode page", 2 + CACHING_PAGE_LENGTH, page_code=bitfield(0, 6),
    page_length=bitfield(1), wce=bitfield(2, 1, lsb=2), rcd=bitfield(2, 1),
)


def caching_mode_page(*, wce: bool = False, rcd: bool = False) -> bytes:
    """Caching mode page, SBC-4 6.5.5; every other field zero (no pre-fetch control)."""
    return bytes(CACHING_PAGE_LAYOUT.encode({
        "page_code": CACHING_PAGE, "page_length": CACHING_PAGE_LENGTH, "wce": wce, "rcd": rcd,
    }))


#: Control mode page, SPC-4 7.5.7 table 457 (the fields we set; the rest are zero)
CONTROL_PAGE_LAYOUT = Layout(
    "Control mode page", 2 + CONTROL_PAGE_LENGTH, page_code=bitfield(0, 6),
    page_length=bitfield(1), tst=bitfield(2, 3, lsb=5), d_sense=bitfield(2, 1, lsb=2),
    gltsd=bitfield(2, 1, lsb=1), queue_algorithm_modifier=bitfield(3, 4, lsb=4),
    qerr=bitfield(3, 2, lsb=1), swp=bitfield(4, 1, lsb=3), tas=bitfield(5, 1, lsb=6),
    busy_timeout_period=bitfield(8, 16),
)


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
    return bytes(CONTROL_PAGE_LAYOUT.encode({
        "page_code": CONTROL_PAGE, "page_length": CONTROL_PAGE_LENGTH, "tst": tst,
        "d_sense": d_sense, "gltsd": gltsd,
        "queue_algorithm_modifier": queue_algorithm_modifier, "qerr": qerr, "swp": swp,
        "tas": tas, "busy_timeout_period": busy_timeout_period,
    }))


#: Short LBA mode parameter block descriptor, SBC-4 6.5.2 table 177 (byte 4 reserved)
SHORT_BLOCK_DESCRIPTOR_LAYOUT = Layout(
    "short LBA mode parameter block descriptor", SHORT_BLOCK_DESCRIPTOR_LENGTH,
    number_of_logical_blocks=bitfield(0, 32), reserved=bitfield(4),
    logical_block_length=bitfield(5, 24),
)


def short_block_descriptor(blocks: int, block_length: int) -> bytes:
    """Short LBA mode parameter block descriptor, SBC-4 6.5.2: NUMBER OF LOGICAL BLOCKS
    is FFFFFFFFh when the capacity does not fit."""
    return bytes(SHORT_BLOCK_DESCRIPTOR_LAYOUT.encode({
        "number_of_logical_blocks": min(blocks, 0xFFFFFFFF),
        "logical_block_length": block_length,
    }))


def parse_short_block_descriptor(desc: bytes | memoryview) -> tuple[int, int, int]:
    """(number of logical blocks, reserved byte, logical block length)."""
    d = SHORT_BLOCK_DESCRIPTOR_LAYOUT.decode(desc)
    return d["number_of_logical_blocks"], d["reserved"], d["logical_block_length"]


def disk_device_specific_parameter(*, wp: bool = False, dpofua: bool = True) -> int:
    """DEVICE-SPECIFIC PARAMETER of the mode parameter header for disks, SBC-4 6.5.1."""
    return (DSP_WP if wp else 0) | (DSP_DPOFUA if dpofua else 0)
