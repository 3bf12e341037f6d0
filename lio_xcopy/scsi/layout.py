"""Declarative parameter data layouts: the field table of a descriptor or a response.

The CDB layouts of :mod:`lio_xcopy.scsi.cdb` place each field with ``bitfield(byte,
width, lsb=...)``; a :class:`Layout` does the same for parameter data (SPC-4 4.5.2.4.2
field pointers into a parameter list, the descriptors of SPC-4 6.4.5 and 6.4.6)::

    class BlockToBlock(SegmentDescriptor):
        LAYOUT = SEGMENT_HEADER.extend(
            "block->block", 28, dc=bitfield(1, 1, lsb=1), number_of_blocks=bitfield(10, 16),
            source_lba=bitfield(12, 64), destination_lba=bitfield(20, 64))

One table serves the encoder (:meth:`Layout.encode`, every value checked against its
width), the decoder (:meth:`Layout.decode`) and the sense data: :meth:`Layout.offset`
and :meth:`Layout.pointer` are the byte (and bit) an INVALID FIELD IN PARAMETER LIST or
COPY ABORTED field pointer names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from lio_xcopy.scsi.cdb import Field, bitfield

__all__ = ["Layout", "bitfield"]


class Layout:
    """A field table of ``length`` bytes; fields not named are reserved (zero)."""

    __slots__ = ("_by_name", "_plan", "fields", "length", "name")

    def __init__(self, name: str, length: int, **fields: Field) -> None:
        self.name = name
        self.length = length
        table = tuple(dataclasses.replace(f, name=attr) for attr, f in fields.items())
        used = bytearray(length)
        for f in table:
            if f.byte + f.nbytes > length:
                raise ValueError(f"{name}: field {f.name!r} runs past byte {length - 1}")
            mask = bytearray(length)
            f.put(mask, f.mask)
            if any(a & b for a, b in zip(used, mask, strict=True)):
                raise ValueError(f"{name}: field {f.name!r} overlaps another field")
            used = bytearray(a | b for a, b in zip(used, mask, strict=True))
        self.fields = table
        self._by_name = {f.name: f for f in table}
        # encode's plan: each field's shift in the format read as one big-endian integer
        self._plan = {f.name: (f, f.shift(length), f.mask) for f in table}

    def extend(self, name: str, length: int, **fields: Field) -> Layout:
        """This table's fields and more, in a longer (or equal) format."""
        return Layout(name, length, **{f.name: f for f in self.fields}, **fields)

    def field(self, name: str) -> Field:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def offset(self, name: str) -> int:
        """The byte of field ``name`` (its first, for a multi-byte field)."""
        return self._by_name[name].byte

    def pointer(self, name: str) -> tuple[int, int | None]:
        """(byte, bit) of field ``name`` for a field pointer (SPC-4 4.5.2.4.2): the bit is
        the field's most significant bit, None for a field of whole bytes."""
        f = self._by_name[name]
        return f.byte, f.msb_bit

    def bits(self, *names: str) -> dict[int, int]:
        """Byte offset -> the bits fields ``names`` take there: a mask of those fields
        (e.g. the changeable values of a mode page, SPC-4 7.5.3)."""
        buf = self.encode({name: self._by_name[name].mask for name in names})
        return {i: b for i, b in enumerate(buf) if b}

    def encode(self, values: Mapping[str, int]) -> bytearray:
        """``length`` bytes with each named field set; an unknown name is an error, a
        value that does not fit its field is ValueError."""
        plan = self._plan
        whole = 0
        for name, value in values.items():
            f, shift, mask = plan[name]
            value = int(value)
            if not 0 <= value <= mask:
                f.check(value)
            whole |= value << shift
        return bytearray(whole.to_bytes(self.length, "big"))

    def decode(self, buf: bytes | bytearray | memoryview, off: int = 0) -> dict[str, int]:
        """Every field of the format at ``off`` in ``buf`` (``length`` bytes available)."""
        return {f.name: _get(f, buf, off) for f in self.fields}

    def get(self, name: str, buf: bytes | bytearray | memoryview, off: int = 0) -> int:
        return _get(self._by_name[name], buf, off)

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {self.length}, {len(self.fields)} fields)"


def _get(f: Field, buf: bytes | bytearray | memoryview, off: int) -> int:
    start = off + f.byte
    raw = int.from_bytes(buf[start : start + f.nbytes], "big")
    return (raw >> f.lsb) & f.mask
