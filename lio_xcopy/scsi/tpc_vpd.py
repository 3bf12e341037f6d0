"""Third-party Copy VPD page (8Fh), SPC-4 7.8.17: encoder and decoder side by side.

The page is a list of third-party copy descriptors, each a two-byte TYPE, a two-byte
LENGTH (the bytes after it, a multiple of four: lists are padded with zeros) and its
fields. The descriptors here are those that apply to an EXTENDED COPY (LID1) copy
manager with stream segments and held data; their values come from the same
:class:`~lio_xcopy.scsi.xcopy.OperatingParameters` RECEIVE COPY RESULTS reports, so
the two never disagree (:func:`third_party_copy_page`).

Offsets were checked against sg3_utils ``decode_3party_copy_vpd`` (``sg_vpd.c``,
release 1.46, the ``sg_vpd`` this project tests with) and FreeBSD CTL
``ctl_inquiry_evpd_tpc`` with the ``scsi_vpd_tpc_descriptor_*`` structs of
``scsi_all.h``:

* 0001h Supported Commands: byte 4 COMMANDS SUPPORTED LIST LENGTH, then per command
  OPERATION CODE, SUPPORTED SERVICE ACTION LIST LENGTH and the service actions.
* 0004h Parameter Data (length 1Ch): 8-9 MAXIMUM CSCD DESCRIPTOR COUNT, 10-11 MAXIMUM
  SEGMENT DESCRIPTOR COUNT, 12-15 MAXIMUM DESCRIPTOR LIST LENGTH, 16-19 MAXIMUM
  INLINE DATA LENGTH.
* 0008h Supported Descriptors: byte 4 list length, then one-byte descriptor codes.
* 000Ch Supported CSCD Descriptor IDs: 4-5 list length, then two-byte IDs.
* 8001h General Copy Operations (length 20h): 4-7 TOTAL CONCURRENT COPIES, 8-11
  MAXIMUM IDENTIFIED CONCURRENT COPIES, 12-15 MAXIMUM SEGMENT LENGTH, 16 DATA SEGMENT
  GRANULARITY, 17 INLINE DATA GRANULARITY (log2).
* 9101h Stream Copy Operations (length 1Ch): 4-7 MAXIMUM STREAM DEVICE TRANSFER SIZE.
* C001h Held Data (length 1Ch): 4-7 HELD DATA LIMIT, 8 HELD DATA GRANULARITY (log2).

(sg3_utils after 1.46 reads MAXIMUM INLINE DATA LENGTH one byte late, at 17-20.)
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Self

from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.spc import vpd_page
from lio_xcopy.scsi.xcopy import OperatingParameters, XcopyFormatError, _fits

VPD_THIRD_PARTY_COPY = 0x8F
#: the third-party copy commands (SPC-4 6.3, 6.5, 6.18) a Supported Commands descriptor lists
THIRD_PARTY_COPY_OPCODES = frozenset({0x83, 0x84})


def _pad4(body: bytes) -> bytes:
    """Zero pad a descriptor's fields to a multiple of four bytes (SPC-4 7.8.17)."""
    return body + bytes(-len(body) % 4)


class _Fixed:
    """A descriptor of fixed length: its fields, in declaration order, packed by
    ``_LAYOUT`` at the widths ``_BITS``."""

    __slots__ = ()
    _LAYOUT: ClassVar[struct.Struct]
    _BITS: ClassVar[tuple[int, ...]]

    def fields(self) -> bytes:
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        return self._LAYOUT.pack(*(_fits(n, getattr(self, n), b)
                                   for n, b in zip(names, self._BITS, strict=True)))

    @classmethod
    def from_fields(cls, body: bytes) -> Self:
        if len(body) < cls._LAYOUT.size:
            raise XcopyFormatError(f"{cls.__name__} descriptor of {len(body)} bytes (needs "
                                   f"{cls._LAYOUT.size})")
        return cls(*cls._LAYOUT.unpack_from(body, 0))


@dataclass(frozen=True, slots=True)
class SupportedCommands:
    """Supported Commands third-party copy descriptor (0001h), SPC-4 7.8.17: each
    third-party copy command the copy manager answers, with its service actions."""

    TYPE: ClassVar[int] = 0x0001
    #: (OPERATION CODE, SERVICE ACTIONs), in the order listed
    commands: tuple[tuple[int, tuple[int, ...]], ...]

    def fields(self) -> bytes:
        entries = b"".join(
            bytes([_fits("operation code", op, 8), len(sas)])
            + bytes(_fits("service action", sa, 8) for sa in sas)
            for op, sas in self.commands
        )
        return _pad4(bytes([_fits("commands supported list length", len(entries), 8)])
                     + entries)

    @classmethod
    def from_fields(cls, body: bytes) -> Self:
        if not body:
            raise XcopyFormatError("Supported Commands descriptor without a list length")
        end = 1 + body[0]
        if end > len(body):
            raise XcopyFormatError(f"COMMANDS SUPPORTED LIST LENGTH {body[0]} beyond the "
                                   f"descriptor's {len(body) - 1} bytes")
        commands: list[tuple[int, tuple[int, ...]]] = []
        pos = 1
        while pos < end:
            if pos + 2 > end:
                raise XcopyFormatError("command support descriptor cut short")
            op, n = body[pos], body[pos + 1]
            if pos + 2 + n > end:
                raise XcopyFormatError(f"service action list of {op:02X}h beyond the list")
            commands.append((op, tuple(body[pos + 2 : pos + 2 + n])))
            pos += 2 + n
        return cls(tuple(commands))


@dataclass(frozen=True, slots=True)
class ParameterData(_Fixed):
    """Parameter Data third-party copy descriptor (0004h), SPC-4 7.8.17."""

    TYPE: ClassVar[int] = 0x0004
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct(">4xHHII12x")
    _BITS: ClassVar[tuple[int, ...]] = (16, 16, 32, 32)
    max_cscd_count: int
    max_segment_count: int
    max_descriptor_list_length: int
    max_inline_data_length: int


@dataclass(frozen=True, slots=True)
class SupportedDescriptors:
    """Supported Descriptors third-party copy descriptor (0008h), SPC-4 7.8.17: the
    segment descriptor and CSCD descriptor type codes EXTENDED COPY accepts."""

    TYPE: ClassVar[int] = 0x0008
    codes: tuple[int, ...]

    def fields(self) -> bytes:
        codes = bytes(_fits("descriptor code", c, 8) for c in self.codes)
        return _pad4(bytes([_fits("supported descriptor list length", len(codes), 8)]) + codes)

    @classmethod
    def from_fields(cls, body: bytes) -> Self:
        if not body or 1 + body[0] > len(body):
            raise XcopyFormatError("SUPPORTED DESCRIPTOR LIST LENGTH beyond the descriptor")
        return cls(tuple(body[1 : 1 + body[0]]))


@dataclass(frozen=True, slots=True)
class SupportedCscdIds:
    """Supported CSCD Descriptor IDs third-party copy descriptor (000Ch), SPC-4 7.8.17:
    the CSCD descriptor IDs above 07FFh (null LUs, ROD, the local LU) a segment may name."""

    TYPE: ClassVar[int] = 0x000C
    ids: tuple[int, ...]

    def fields(self) -> bytes:
        ids = b"".join(struct.pack(">H", _fits("CSCD descriptor ID", i, 16)) for i in self.ids)
        return _pad4(struct.pack(">H", _fits("list length", len(ids), 16)) + ids)

    @classmethod
    def from_fields(cls, body: bytes) -> Self:
        if len(body) < 2:
            raise XcopyFormatError("Supported CSCD Descriptor IDs descriptor cut short")
        (n,) = struct.unpack_from(">H", body, 0)
        if n % 2 or 2 + n > len(body):
            raise XcopyFormatError(f"SUPPORTED CSCD DESCRIPTOR IDS LIST LENGTH {n} is odd or "
                                   "beyond the descriptor")
        return cls(tuple(struct.unpack_from(f">{n // 2}H", body, 2)))


@dataclass(frozen=True, slots=True)
class GeneralCopyOperations(_Fixed):
    """General Copy Operations third-party copy descriptor (8001h), SPC-4 7.8.17."""

    TYPE: ClassVar[int] = 0x8001
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct(">IIIBB18x")
    _BITS: ClassVar[tuple[int, ...]] = (32, 32, 32, 8, 8)
    total_concurrent_copies: int
    max_identified_concurrent_copies: int
    max_segment_length: int
    data_segment_granularity: int  # log2
    inline_data_granularity: int  # log2


@dataclass(frozen=True, slots=True)
class StreamCopyOperations(_Fixed):
    """Stream Copy Operations third-party copy descriptor (9101h), SPC-4 7.8.17."""

    TYPE: ClassVar[int] = 0x9101
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct(">I24x")
    _BITS: ClassVar[tuple[int, ...]] = (32,)
    max_stream_device_transfer_size: int


@dataclass(frozen=True, slots=True)
class HeldData(_Fixed):
    """Held Data third-party copy descriptor (C001h), SPC-4 7.8.17: what RECEIVE COPY
    RESULTS RECEIVE DATA can return."""

    TYPE: ClassVar[int] = 0xC001
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct(">IB23x")
    _BITS: ClassVar[tuple[int, ...]] = (32, 8)
    held_data_limit: int
    held_data_granularity: int  # log2


@dataclass(frozen=True, slots=True)
class BlockDeviceRodLimits(_Fixed):
    """Block Device ROD Token Limits third-party copy descriptor (0000h), SBC-4 6.6.3
    (FreeBSD's ``scsi_vpd_tpc_descriptor_bdrl``; ddpt refuses ODX without it): 10-11
    MAXIMUM RANGE DESCRIPTORS, 12-15 MAXIMUM INACTIVITY TIMEOUT, 16-19 DEFAULT
    INACTIVITY TIMEOUT (seconds), 20-27 MAXIMUM TOKEN TRANSFER SIZE, 28-35 OPTIMAL
    TRANSFER COUNT (logical blocks)."""

    TYPE: ClassVar[int] = 0x0000
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct(">6xHIIQQ")
    _BITS: ClassVar[tuple[int, ...]] = (16, 32, 32, 64, 64)
    max_range_descriptors: int
    max_inactivity_timeout: int
    default_inactivity_timeout: int
    max_token_transfer_size: int
    optimal_transfer_count: int


_RTF = struct.Struct(">B11xIII18xH")
_RTF_BLOCK = struct.Struct(">BxHxxHQQQQ8x")  # ROD device type specific: block (48 bytes)


@dataclass(frozen=True, slots=True)
class RodTokenFeatures:
    """ROD Token Features third-party copy descriptor (0106h), SPC-4 7.8.17.7: byte 4
    REMOTE TOKENS, 16-19 MINIMUM TOKEN LIFETIME, 20-23 MAXIMUM TOKEN LIFETIME, 24-27
    MAXIMUM TOKEN INACTIVITY TIMEOUT (seconds), 46-47 ROD DEVICE TYPE SPECIFIC FEATURES
    DESCRIPTORS LENGTH, then one for block devices (type 00h, length 2Ch): OPTIMAL BLOCK
    ROD LENGTH GRANULARITY, MAXIMUM BYTES IN BLOCK ROD, OPTIMAL BYTES IN BLOCK ROD
    TRANSFER, OPTIMAL BYTES TO TOKEN PER SEGMENT, OPTIMAL BYTES FROM TOKEN PER SEGMENT."""

    TYPE: ClassVar[int] = 0x0106
    remote_tokens: int
    min_token_lifetime: int
    max_token_lifetime: int
    max_token_inactivity_timeout: int
    optimal_block_rod_length_granularity: int = 0
    max_bytes_in_block_rod: int = 0
    optimal_bytes_in_block_rod_transfer: int = 0
    optimal_bytes_to_token_per_segment: int = 0
    optimal_bytes_from_token_per_segment: int = 0

    def fields(self) -> bytes:
        block = _RTF_BLOCK.pack(0x00, _RTF_BLOCK.size - 4,
                                _fits("granularity", self.optimal_block_rod_length_granularity,
                                      16),
                                _fits("maximum bytes", self.max_bytes_in_block_rod, 64),
                                _fits("optimal bytes", self.optimal_bytes_in_block_rod_transfer,
                                      64),
                                _fits("to token", self.optimal_bytes_to_token_per_segment, 64),
                                _fits("from token", self.optimal_bytes_from_token_per_segment,
                                      64))
        return _RTF.pack(_fits("remote tokens", self.remote_tokens, 8),
                         _fits("minimum token lifetime", self.min_token_lifetime, 32),
                         _fits("maximum token lifetime", self.max_token_lifetime, 32),
                         _fits("maximum token inactivity timeout",
                               self.max_token_inactivity_timeout, 32), len(block)) + block

    @classmethod
    def from_fields(cls, body: bytes) -> Self:
        if len(body) < _RTF.size:
            raise XcopyFormatError(f"ROD Token Features descriptor of {len(body)} bytes")
        remote, lo, hi, idle, n = _RTF.unpack_from(body, 0)
        block = (0, 0, 0, 0, 0)
        pos = _RTF.size
        while pos + 4 <= _RTF.size + n and pos + 4 <= len(body):
            (dlen,) = struct.unpack_from(">H", body, pos + 2)
            if body[pos] & 0x1F == 0x00 and pos + _RTF_BLOCK.size <= len(body):
                block = _RTF_BLOCK.unpack_from(body, pos)[2:]
            pos += 4 + dlen
        return cls(remote, lo, hi, idle, *block)


_SRT_ENTRY = struct.Struct(">IBxH56x")


@dataclass(frozen=True, slots=True)
class SupportedRodTypes:
    """Supported ROD Types third-party copy descriptor (0108h), SPC-4 7.8.17.8: per ROD
    type (64 bytes) ROD TYPE, byte 4 ECPY_INT (bit 7), TOKEN_IN (bit 1), TOKEN_OUT
    (bit 0), 6-7 PREFERENCE INDICATION."""

    TYPE: ClassVar[int] = 0x0108
    #: (ROD TYPE, flags byte, PREFERENCE INDICATION)
    types: tuple[tuple[int, int, int], ...]

    def fields(self) -> bytes:
        body = b"".join(_SRT_ENTRY.pack(_fits("ROD type", t, 32), _fits("flags", f, 8),
                                        _fits("preference", p, 16)) for t, f, p in self.types)
        return struct.pack(">2xH", len(body)) + body

    @classmethod
    def from_fields(cls, body: bytes) -> Self:
        if len(body) < 4:
            raise XcopyFormatError("Supported ROD Types descriptor cut short")
        (n,) = struct.unpack_from(">H", body, 2)
        if n % _SRT_ENTRY.size or 4 + n > len(body):
            raise XcopyFormatError(f"ROD TYPE DESCRIPTORS LENGTH {n}")
        return cls(tuple(_SRT_ENTRY.unpack_from(body, off)
                         for off in range(4, 4 + n, _SRT_ENTRY.size)))


#: flags of a Supported ROD Types entry (SPC-4 7.8.17.8)
ROD_ECPY_INT = 0x80
ROD_TOKEN_IN = 0x02
ROD_TOKEN_OUT = 0x01


Descriptor = (SupportedCommands | ParameterData | SupportedDescriptors | SupportedCscdIds
              | GeneralCopyOperations | StreamCopyOperations | HeldData
              | BlockDeviceRodLimits | RodTokenFeatures | SupportedRodTypes)
_BY_TYPE: dict[int, type[Descriptor]] = {
    d.TYPE: d for d in (SupportedCommands, ParameterData, SupportedDescriptors,
                        SupportedCscdIds, GeneralCopyOperations, StreamCopyOperations,
                        HeldData, BlockDeviceRodLimits, RodTokenFeatures, SupportedRodTypes)
}


@dataclass(frozen=True, slots=True)
class UnknownDescriptor:
    """A third-party copy descriptor this module does not decode, kept as bytes."""

    type: int
    body: bytes

    def fields(self) -> bytes:
        return self.body


@dataclass(frozen=True, slots=True)
class ThirdPartyCopyPage:
    """Third-party Copy VPD page, SPC-4 7.8.17: byte 0 PERIPHERAL QUALIFIER and
    PERIPHERAL DEVICE TYPE, byte 1 8Fh, 2-3 PAGE LENGTH, then the descriptors."""

    device_type: int
    descriptors: tuple[Descriptor | UnknownDescriptor, ...]
    qualifier: int = 0

    def encode(self) -> bytes:
        body = b"".join(
            struct.pack(">HH", d.type if isinstance(d, UnknownDescriptor) else d.TYPE,
                        len(f)) + f
            for d in self.descriptors for f in (d.fields(),))
        page = bytearray(vpd_page(self.device_type, VPD_THIRD_PARTY_COPY, body))
        page[0] |= _fits("qualifier", self.qualifier, 3) << 5
        return bytes(page)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Self:
        """Decode a whole page; a page cut short by the allocation length is refused
        (ask again with PAGE LENGTH + 4)."""
        data = bytes(data)
        if len(data) < 4 or data[1] != VPD_THIRD_PARTY_COPY:
            raise XcopyFormatError("not a Third-party Copy VPD page")
        (length,) = struct.unpack_from(">H", data, 2)
        if 4 + length > len(data):
            raise XcopyFormatError(f"PAGE LENGTH {length} but {len(data) - 4} bytes follow")
        out: list[Descriptor | UnknownDescriptor] = []
        pos, end = 4, 4 + length
        while pos < end:
            if pos + 4 > end:
                raise XcopyFormatError(f"descriptor header cut short at byte {pos}")
            dtype, dlen = struct.unpack_from(">HH", data, pos)
            if pos + 4 + dlen > end:
                raise XcopyFormatError(f"descriptor {dtype:04X}h of {dlen} bytes runs past "
                                       "the page")
            fields = data[pos + 4 : pos + 4 + dlen]
            known = _BY_TYPE.get(dtype)
            out.append(known.from_fields(fields) if known else UnknownDescriptor(dtype, fields))
            pos += 4 + dlen
        return cls(data[0] & 0x1F, tuple(out), data[0] >> 5)

    def find(self, kind: type[Descriptor]) -> Descriptor | None:
        """The first descriptor of that kind, or None."""
        return next((d for d in self.descriptors if isinstance(d, kind)), None)


def third_party_copy_page(device_type: int, limits: xcopy.Limits,
                          commands: Iterable[tuple[int, int | None]],
                          cscd_ids: Iterable[int] = (xcopy.CSCD_ID_LOCAL,),
                          rod: Iterable[Descriptor] = ()) -> ThirdPartyCopyPage:
    """The page a LUN served by a copy manager with ``limits`` returns. ``commands``
    are the (OPERATION CODE, SERVICE ACTION) pairs the LUN dispatches; those of the
    third-party copy commands are listed. Every value comes from the OPERATING
    PARAMETERS data for the same limits. ``rod``: the ROD token descriptors of a LUN
    that answers POPULATE TOKEN and WRITE USING TOKEN (the Block Device ROD Token
    Limits first, as FreeBSD CTL places it)."""
    op = OperatingParameters.from_limits(limits)
    by_opcode: dict[int, set[int]] = {}
    for opcode, sa in commands:
        if opcode in THIRD_PARTY_COPY_OPCODES:
            by_opcode.setdefault(opcode, set()).update(() if sa is None else (sa,))
    rods = tuple(rod)
    return ThirdPartyCopyPage(device_type, (
        *(d for d in rods if isinstance(d, BlockDeviceRodLimits)),
        SupportedCommands(tuple((o, tuple(sorted(s))) for o, s in sorted(by_opcode.items()))),
        ParameterData(op.max_cscd_count, op.max_segment_count,
                      op.max_descriptor_list_length, op.max_inline_data_length),
        SupportedDescriptors(op.implemented_descriptor_types),
        SupportedCscdIds(tuple(sorted(cscd_ids))),
        GeneralCopyOperations(op.total_concurrent_copies, op.max_concurrent_copies,
                              op.max_segment_length, op.data_segment_granularity,
                              op.inline_data_granularity),
        StreamCopyOperations(op.max_stream_device_transfer_size),
        HeldData(op.held_data_limit, op.held_data_granularity),
        *(d for d in rods if not isinstance(d, BlockDeviceRodLimits)),
    ))
