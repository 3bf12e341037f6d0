"""Declarative CDB layouts (after python-scsi's field tables).

A layout is a frozen dataclass whose fields come from a table of :class:`Field`
entries copied from the standard's CDB figure::

    READ_10 = cdb_layout("READ (10)", 0x28, 10, "SBC-4 5.16",
        Field("fua", 1, 1, lsb=3), Field("lba", 2, 32), Field("transfer_length", 7, 16))

``READ_10.decode(cdb).lba`` reads a field; ``.encode()`` writes one back;
``.invalid("lba")`` builds INVALID FIELD IN CDB pointing at that field;
``READ_10.usage_data()`` is the CDB USAGE DATA of REPORT SUPPORTED OPERATION CODES.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, fields, make_dataclass
from types import FunctionType
from typing import Any, ClassVar, Self

from lio_xcopy.scsi.errors import InvalidFieldInCdb


@dataclass(frozen=True, slots=True)
class Field:
    """``width`` bits ending at bit ``lsb`` of the last byte of a big-endian run starting
    at ``byte``; the run is as many bytes as the field needs."""

    name: str
    byte: int
    width: int = 8
    lsb: int = 0

    @property
    def nbytes(self) -> int:
        return (self.width + self.lsb + 7) // 8

    @property
    def msb_bit(self) -> int | None:
        """The bit pointer SPC-4 4.5.2.4.2 wants: the field's most significant bit in its
        first byte, or None for a field of whole bytes."""
        if self.lsb == 0 and self.width % 8 == 0:
            return None
        return (self.width + self.lsb - 1) % 8

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def get(self, buf: bytes | bytearray | memoryview) -> int:
        raw = int.from_bytes(buf[self.byte : self.byte + self.nbytes], "big")
        return (raw >> self.lsb) & self.mask

    def put(self, buf: bytearray, value: int) -> None:
        if not 0 <= value <= self.mask:
            raise ValueError(f"{self.name}={value} does not fit {self.width} bits")
        end = self.byte + self.nbytes
        raw = int.from_bytes(buf[self.byte : end], "big")
        raw = (raw & ~(self.mask << self.lsb)) | (value << self.lsb)
        buf[self.byte : end] = raw.to_bytes(self.nbytes, "big")


class Cdb:
    """Base of every CDB layout; subclasses are made by :func:`cdb_layout`."""

    NAME: ClassVar[str]
    OPCODE: ClassVar[int]
    SERVICE_ACTION: ClassVar[int | None]
    LENGTH: ClassVar[int]
    CLAUSE: ClassVar[str]
    FIELDS: ClassVar[tuple[Field, ...]]
    #: the command carries a Data-Out buffer (parameter list or write data), so the
    #: transport never returns its buffer to the initiator
    DATA_OUT: ClassVar[bool] = False

    @classmethod
    def decode(cls, cdb: bytes | bytearray | memoryview) -> Self:
        if len(cdb) < cls.LENGTH:
            raise InvalidFieldInCdb(0, message=f"{cls.NAME}: CDB of {len(cdb)} bytes")
        return cls(**{f.name: f.get(cdb) for f in cls.FIELDS})

    def encode(self) -> bytes:
        buf = bytearray(self.LENGTH)
        buf[0] = self.OPCODE
        for f in self.FIELDS:
            f.put(buf, getattr(self, f.name))
        return bytes(buf)

    @classmethod
    def field(cls, name: str) -> Field:
        for f in cls.FIELDS:
            if f.name == name:
                return f
        raise KeyError(name)

    @classmethod
    def invalid(cls, name: str, message: str = "") -> InvalidFieldInCdb:
        """INVALID FIELD IN CDB pointing at field ``name`` (SPC-4 4.5.2.4.2)."""
        f = cls.field(name)
        return InvalidFieldInCdb(f.byte, f.msb_bit, message or f"{cls.NAME}: bad {name}")

    @classmethod
    def usage_data(cls) -> bytes:
        """CDB USAGE DATA, SPC-4 6.35.3: the opcode, a mask of the bits we decode, and
        the service action code (not a mask) where the CDB has a SERVICE ACTION field."""
        buf = bytearray(cls.LENGTH)
        for f in cls.FIELDS:
            f.put(buf, f.mask)
        buf[0] = cls.OPCODE
        if cls.SERVICE_ACTION is not None:
            cls.field("service_action").put(buf, cls.SERVICE_ACTION)
        return bytes(buf)


def _class_name(name: str) -> str:
    return "".join(w.capitalize() for w in re.findall(r"[A-Za-z0-9]+", name))


def cdb_layout(
    name: str,
    opcode: int,
    length: int,
    clause: str,
    *layout: Field,
    service_action: int | None = None,
    data_out: bool = False,
) -> type[Any]:
    """Make the frozen dataclass for one CDB. A service action field (byte 1, bits 4-0)
    and the CONTROL byte are added when the table does not name them. ``data_out``: the
    command's data moves from the initiator (SAM-5 5.4.3, Data-Out buffer)."""
    table = list(layout)
    names = {f.name for f in table}
    if service_action is not None and "service_action" not in names:
        table.insert(0, Field("service_action", 1, 5))
    if "control" not in names:
        table.append(Field("control", length - 1, 8))
    used = bytearray(length)
    for f in table:
        bits = bytearray(length)
        f.put(bits, f.mask)
        if any(a & b for a, b in zip(used, bits, strict=True)):
            raise ValueError(f"{name}: field {f.name!r} overlaps another field")
        used = bytearray(a | b for a, b in zip(used, bits, strict=True))
    cls = make_dataclass(
        _class_name(name),
        [(f.name, int, 0) for f in table],
        bases=(Cdb,),
        frozen=True,
        slots=True,
        namespace={
            "NAME": name,
            "OPCODE": opcode,
            "SERVICE_ACTION": service_action,
            "LENGTH": length,
            "CLAUSE": clause,
            "FIELDS": tuple(table),
            "DATA_OUT": data_out,
            "__doc__": f"{clause} {name}.",
        },
    )
    cls.__module__ = sys._getframe(1).f_globals.get("__name__", __name__)
    if service_action is not None:
        # encode() must write the service action even when built with defaults
        defaults = {f.name: f.default for f in fields(cls)}
        defaults["service_action"] = service_action
        init: FunctionType = cls.__dict__["__init__"]
        init.__defaults__ = tuple(defaults.values())
    return cls


def cdb_length(opcode: int) -> int:
    """CDB length from the opcode's group code, SPC-4 4.2.5.1 (0 for vendor groups)."""
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(opcode >> 5, 0)
