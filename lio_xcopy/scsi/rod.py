"""ROD tokens on a block device (SBC-4 5.9 POPULATE TOKEN, 5.46 WRITE USING TOKEN;
SPC-4 5.17 the ROD model, 6.19 RECEIVE ROD TOKEN INFORMATION, 6.20 REPORT ALL ROD
TOKENS): CDB layouts, parameter lists and parameter data, encoder and decoder side by
side, pure.

Offsets were checked against FreeBSD CTL (``scsi_da.h`` ``scsi_populate_token``,
``scsi_write_using_token``, ``scsi_range_desc``; ``scsi_all.h`` ``scsi_token``,
``scsi_receive_rod_token_information``) and ddpt 0.97 ``ddpt_xcopy.c`` (``do_pop_tok``,
``do_wut``, ``do_rrti``), the client this project tests with. The POPULATE TOKEN and
WRITE USING TOKEN parameter lists, the block device range descriptor and the ROD token
are field tables (:class:`~lio_xcopy.scsi.layout.Layout`) below; the encoders, the
decoders and the field pointers of their errors use them. The RECEIVE ROD TOKEN
INFORMATION data is RECEIVE COPY STATUS (LID4)'s table and a trailer:

* RECEIVE ROD TOKEN INFORMATION data: 0-3 AVAILABLE DATA, 4 RESPONSE TO SERVICE ACTION,
  5 COPY OPERATION STATUS, 6-7 OPERATION COUNTER, 8-11 ESTIMATED STATUS UPDATE DELAY, 12
  EXTENDED COPY COMPLETION STATUS, 13 LENGTH OF THE SENSE DATA FIELD, 14 SENSE DATA
  LENGTH, 15 TRANSFER COUNT UNITS, 16-23 TRANSFER COUNT, 24-25 SEGMENTS PROCESSED, 32-
  sense data, then ROD TOKEN DESCRIPTORS LENGTH (4 bytes) and a ROD token descriptor
  (2 reserved bytes and the token).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from lio_xcopy.scsi.cdb import Cdb, bitfield
from lio_xcopy.scsi.errors import InvalidFieldInParameterList, ParameterListLengthError
from lio_xcopy.scsi.layout import Layout
from lio_xcopy.scsi.xcopy import (
    STATUS_UPDATE_DELAY_ENDED,
    CopyStatusLid4,
    TransferCountUnits,
)

# --- CDB layouts -------------------------------------------------------------------------


class PopulateToken(
    Cdb, name="POPULATE TOKEN", opcode=0x83, length=16, clause="SBC-4 5.9", service_action=0x10,
    data_out=True,
):
    SERVICE_ACTION: ClassVar[int]

    list_identifier: int = bitfield(6, 32)
    parameter_list_length: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


class WriteUsingToken(
    Cdb, name="WRITE USING TOKEN", opcode=0x83, length=16, clause="SBC-4 5.46", service_action=0x11,
    data_out=True,
):
    SERVICE_ACTION: ClassVar[int]

    list_identifier: int = bitfield(6, 32)
    parameter_list_length: int = bitfield(10, 32)
    group_number: int = bitfield(14, 5)


class ReceiveRodTokenInformation(
    Cdb, name="RECEIVE ROD TOKEN INFORMATION", opcode=0x84, length=16, clause="SPC-4 6.19",
    service_action=0x07,
):
    list_identifier: int = bitfield(2, 32)
    allocation_length: int = bitfield(10, 32)


class ReportAllRodTokens(
    Cdb, name="REPORT ALL ROD TOKENS", opcode=0x84, length=16, clause="SPC-4 6.20",
    service_action=0x08,
):
    allocation_length: int = bitfield(10, 32)


# --- ROD types, SPC-4 Table 120 ------------------------------------------------------------
ROD_TYPE_ACCESS_UPON_REFERENCE = 0x00010000
ROD_TYPE_PIT_DEFAULT = 0x00800000
ROD_TYPE_PIT_CHANGE_VULNERABLE = 0x00800001
ROD_TYPE_PIT_PERSISTENT = 0x00800002
ROD_TYPE_PIT_ANY = 0x0080FFFF
#: the block device zero ROD token (SBC-4 4.32): every block it represents reads as zero
ROD_TYPE_BLOCK_DEVICE_ZERO = 0xFFFF0001

TOKEN_LENGTH = 512
ROD_TOKEN_LENGTH = TOKEN_LENGTH - 8  # the ROD TOKEN LENGTH field: 01F8h
RRTI_HEADER = 32

# --- parameter list and token field tables -------------------------------------------------
#: Block device range descriptor, SBC-4 5.9.3 (bytes 12-15 reserved)
BLOCK_RANGE_LAYOUT = Layout(
    "block device range descriptor", 16, logical_block_address=bitfield(0, 64),
    number_of_logical_blocks=bitfield(8, 32),
)
#: POPULATE TOKEN parameter list, SBC-4 5.9.2: the header before the range descriptors
POPULATE_TOKEN_LAYOUT = Layout(
    "POPULATE TOKEN parameter list", 16, populate_token_data_length=bitfield(0, 16),
    rtv=bitfield(2, 1, lsb=1), immed=bitfield(2, 1), inactivity_timeout=bitfield(4, 32),
    rod_type=bitfield(8, 32), block_device_range_descriptor_length=bitfield(14, 16),
)
#: WRITE USING TOKEN parameter list, SBC-4 5.46.2: the header before the range descriptors
WRITE_USING_TOKEN_LAYOUT = Layout(
    "WRITE USING TOKEN parameter list", 536, write_using_token_data_length=bitfield(0, 16),
    del_tkn=bitfield(2, 1, lsb=1), immed=bitfield(2, 1), offset_into_rod=bitfield(8, 64),
    rod_token=bitfield(16, 8 * TOKEN_LENGTH),
    block_device_range_descriptor_length=bitfield(534, 16),
)
#: ROD token, SPC-4 5.17.6.1 table 119, with the fields of a token a copy manager makes;
#: bytes 64-511 are the ROD type's and the copy manager's own
ROD_TOKEN_LAYOUT = Layout(
    "ROD token", TOKEN_LENGTH, rod_type=bitfield(0, 32), rod_token_length=bitfield(6, 16),
    copy_manager_rod_token_identifier=bitfield(8, 64),
    creator_logical_unit_descriptor=bitfield(16, 256),
    number_of_bytes_represented=bitfield(48, 128),
)
RANGE_DESCRIPTOR_LENGTH = BLOCK_RANGE_LAYOUT.length
POPULATE_TOKEN_HEADER = POPULATE_TOKEN_LAYOUT.length
WRITE_USING_TOKEN_HEADER = WRITE_USING_TOKEN_LAYOUT.length


def field_bytes(layout: Layout, name: str, buf: bytes | bytearray | memoryview,
                off: int = 0) -> bytes:
    """The bytes of whole-byte field ``name`` (a token, a descriptor) at ``off``."""
    f = layout.field(name)
    return bytes(buf[off + f.byte : off + f.byte + f.nbytes])


# COPY OPERATION STATUS, SPC-4 6.24 table 249 (RECEIVE COPY STATUS (LID4))
COPY_STATUS_COMPLETED = 0x01
COPY_STATUS_COMPLETED_WITH_ERRORS = 0x02
COPY_STATUS_IN_PROGRESS_FOREGROUND = 0x11
COPY_STATUS_IN_PROGRESS_BACKGROUND = 0x12
COPY_STATUS_TERMINATED = 0x60


@dataclass(frozen=True, slots=True)
class BlockRange:
    """Block device range descriptor, SBC-4 5.9.3."""

    lba: int
    count: int

    def encode(self) -> bytes:
        return bytes(BLOCK_RANGE_LAYOUT.encode({
            "logical_block_address": self.lba, "number_of_logical_blocks": self.count}))

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview, off: int = 0) -> Self:
        return cls(BLOCK_RANGE_LAYOUT.get("logical_block_address", buf, off),
                   BLOCK_RANGE_LAYOUT.get("number_of_logical_blocks", buf, off))


def _ranges(buf: bytes, layout: Layout) -> tuple[BlockRange, ...]:
    """The range descriptors after the header ``layout``: a BLOCK DEVICE RANGE
    DESCRIPTOR LENGTH that is no multiple of 16 or runs past the list is INVALID FIELD
    IN PARAMETER LIST at that field (SBC-4 5.9.2, 5.46.2)."""
    start = layout.length
    length = layout.get("block_device_range_descriptor_length", buf)
    if length % RANGE_DESCRIPTOR_LENGTH or start + length > len(buf):
        raise InvalidFieldInParameterList(
            *layout.pointer("block_device_range_descriptor_length"),
            f"BLOCK DEVICE RANGE DESCRIPTOR LENGTH {length}")
    return tuple(BlockRange.decode(buf, off)
                 for off in range(start, start + length, RANGE_DESCRIPTOR_LENGTH))


def _check_data_length(buf: bytes, layout: Layout, name: str) -> None:
    """The list holds the header ``layout``, and its DATA LENGTH field ``name`` (the
    bytes after that field) ends within the list (SBC-4 5.9.2, 5.46.2)."""
    if len(buf) < layout.length:
        raise ParameterListLengthError(message=f"parameter list of {len(buf)} bytes, "
                                       f"{layout.length} needed")
    n = layout.get(name, buf)
    if n + layout.field(name).nbytes > len(buf):
        raise ParameterListLengthError(message=f"DATA LENGTH {n} beyond {len(buf)} bytes")


@dataclass(frozen=True, slots=True)
class PopulateTokenList:
    """POPULATE TOKEN parameter list, SBC-4 5.9.2."""

    ranges: tuple[BlockRange, ...]
    inactivity_timeout: int = 0  # seconds; 0: the copy manager's default
    rod_type: int | None = None  # None: RTV clear, the copy manager chooses
    immed: bool = False

    LAYOUT: ClassVar[Layout] = POPULATE_TOKEN_LAYOUT

    def encode(self) -> bytes:
        body = b"".join(r.encode() for r in self.ranges)
        layout = self.LAYOUT
        head = layout.encode({
            "populate_token_data_length": layout.length - 2 + len(body),
            "rtv": self.rod_type is not None, "immed": self.immed,
            "inactivity_timeout": self.inactivity_timeout, "rod_type": self.rod_type or 0,
            "block_device_range_descriptor_length": len(body),
        })
        return bytes(head) + body

    @classmethod
    def parse(cls, buf: bytes) -> Self:
        layout = cls.LAYOUT
        _check_data_length(buf, layout, "populate_token_data_length")
        f = layout.decode(buf)
        ranges = _ranges(buf, layout)
        return cls(ranges, f["inactivity_timeout"], f["rod_type"] if f["rtv"] else None,
                   bool(f["immed"]))


@dataclass(frozen=True, slots=True)
class WriteUsingTokenList:
    """WRITE USING TOKEN parameter list, SBC-4 5.46.2."""

    token: bytes
    ranges: tuple[BlockRange, ...]
    offset_into_rod: int = 0  # logical blocks
    del_tkn: bool = False
    immed: bool = False

    LAYOUT: ClassVar[Layout] = WRITE_USING_TOKEN_LAYOUT

    def encode(self) -> bytes:
        if len(self.token) != TOKEN_LENGTH:
            raise ValueError(f"a ROD token is {TOKEN_LENGTH} bytes, not {len(self.token)}")
        body = b"".join(r.encode() for r in self.ranges)
        layout = self.LAYOUT
        return bytes(layout.encode({
            "write_using_token_data_length": layout.length - 2 + len(body),
            "del_tkn": self.del_tkn, "immed": self.immed,
            "offset_into_rod": self.offset_into_rod,
            "rod_token": int.from_bytes(self.token, "big"),
            "block_device_range_descriptor_length": len(body),
        })) + body

    @classmethod
    def parse(cls, buf: bytes) -> Self:
        layout = cls.LAYOUT
        _check_data_length(buf, layout, "write_using_token_data_length")
        ranges = _ranges(buf, layout)
        return cls(field_bytes(layout, "rod_token", buf), ranges,
                   layout.get("offset_into_rod", buf), bool(layout.get("del_tkn", buf)),
                   bool(layout.get("immed", buf)))


@dataclass(frozen=True, slots=True)
class RodToken:
    """A ROD token a copy manager creates, SPC-4 5.17.6.1: ROD TYPE, ROD TOKEN LENGTH,
    COPY MANAGER ROD TOKEN IDENTIFIER, CREATOR LOGICAL UNIT DESCRIPTOR (32 bytes),
    NUMBER OF BYTES REPRESENTED (16 bytes) and, in bytes 64-511, what the copy manager
    puts there (``rest``: ROD type specific, target device and vendor bytes)."""

    rod_type: int
    identifier: int
    creator: bytes
    bytes_represented: int
    rest: bytes = bytes(TOKEN_LENGTH - 64)

    LAYOUT: ClassVar[Layout] = ROD_TOKEN_LAYOUT
    #: the first byte of ``rest``: the end of the fields the table names
    REST: ClassVar[int] = 64

    def encode(self) -> bytes:
        creator = self.LAYOUT.field("creator_logical_unit_descriptor").nbytes
        if len(self.creator) != creator or len(self.rest) != TOKEN_LENGTH - self.REST:
            raise ValueError("creator descriptor is 32 bytes, the rest 448")
        token = self.LAYOUT.encode({
            "rod_type": self.rod_type, "rod_token_length": ROD_TOKEN_LENGTH,
            "copy_manager_rod_token_identifier": self.identifier,
            "creator_logical_unit_descriptor": int.from_bytes(self.creator, "big"),
            "number_of_bytes_represented": self.bytes_represented,
        })
        token[self.REST:] = self.rest
        return bytes(token)

    @classmethod
    def parse(cls, token: bytes) -> Self:
        if len(token) != TOKEN_LENGTH:
            raise ValueError(f"a ROD token is {TOKEN_LENGTH} bytes, not {len(token)}")
        layout = cls.LAYOUT
        return cls(layout.get("rod_type", token),
                   layout.get("copy_manager_rod_token_identifier", token),
                   field_bytes(layout, "creator_logical_unit_descriptor", token),
                   layout.get("number_of_bytes_represented", token), bytes(token[cls.REST:]))


def token_type(token: bytes) -> tuple[int, int]:
    """ROD TYPE and ROD TOKEN LENGTH of a token (SPC-4 5.17.6.1)."""
    return (ROD_TOKEN_LAYOUT.get("rod_type", token),
            ROD_TOKEN_LAYOUT.get("rod_token_length", token))


def block_device_zero_token() -> bytes:
    """The block device zero ROD token (SBC-4 4.32): ROD TYPE FFFF0001h, ROD TOKEN
    LENGTH 01F8h, every other byte zero."""
    return bytes(ROD_TOKEN_LAYOUT.encode({
        "rod_type": ROD_TYPE_BLOCK_DEVICE_ZERO, "rod_token_length": ROD_TOKEN_LENGTH}))


@dataclass(frozen=True, slots=True)
class RodTokenInformation:
    """RECEIVE ROD TOKEN INFORMATION parameter data, SPC-4 6.26 table 256: the RECEIVE
    COPY STATUS (LID4) data of 6.24 (:class:`~lio_xcopy.scsi.xcopy.CopyStatusLid4`,
    TRANSFER COUNT in logical blocks), then ROD TOKEN DESCRIPTORS LENGTH and a ROD token
    descriptor (ID FOR CREATING ROD CSCD DESCRIPTOR, reserved here, and the token)."""

    service_action: int  # RESPONSE TO SERVICE ACTION: 10h POPULATE TOKEN, 11h WUT
    status: int  # COPY OPERATION STATUS
    transfer_count: int  # logical blocks
    token: bytes = b""
    sense: bytes = b""
    operation_counter: int = 0
    #: ms; FFFF FFFEh once the operation has ended (SPC-4 6.24)
    status_update_delay: int = STATUS_UPDATE_DELAY_ENDED
    completion_status: int = 0  # EXTENDED COPY COMPLETION STATUS (a SAM-5 status)

    def copy_status(self) -> CopyStatusLid4:
        """The same operation as RECEIVE COPY STATUS (LID4) reports it (SPC-4 6.24)."""
        return CopyStatusLid4(self.service_action, self.status, self.transfer_count, 0,
                              self.completion_status, self.sense, self.operation_counter,
                              self.status_update_delay, TransferCountUnits.BLOCKS)

    def encode(self) -> bytes:
        tokens = struct.pack(">IH", len(self.token) + 2, 0) + self.token if self.token \
            else struct.pack(">I", 0)
        return self.copy_status().encode(trailer=tokens)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        st, off = CopyStatusLid4.decode(data)
        (n,) = struct.unpack_from(">I", data, off)
        token = bytes(data[off + 6 : off + 4 + n]) if n > 2 else b""
        return cls(st.response_to_service_action, st.status, st.transfer_count, token,
                   st.sense_data, st.operation_counter, st.estimated_status_update_delay,
                   st.completion_status)


def report_all_rod_tokens_data(management_tokens: tuple[bytes, ...] = ()) -> bytes:
    """REPORT ALL ROD TOKENS parameter data, SPC-4 6.20.2: AVAILABLE DATA, 4 reserved
    bytes, then the ROD management tokens."""
    body = bytes(4) + b"".join(management_tokens)
    return struct.pack(">I", len(body)) + body
