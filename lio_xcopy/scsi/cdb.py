"""Declarative CDB layouts (after python-scsi's field tables).

A layout is a frozen record of ints (a dataclass to the type checker) whose fields are
placed by :func:`bitfield`, copied from the standard's CDB figure::

    class Read10(Cdb, name="READ (10)", opcode=0x28, length=10, clause="SBC-4 5.16"):
        fua: int = bitfield(1, 1, lsb=3)
        lba: int = bitfield(2, 32)
        transfer_length: int = bitfield(7, 16)

``Read10.decode(cdb).lba`` reads a field; ``.encode()`` writes one back;
``.invalid("lba")`` builds INVALID FIELD IN CDB pointing at that field;
``Read10.usage_data()`` is the CDB USAGE DATA of REPORT SUPPORTED OPERATION CODES.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Self, dataclass_transform

from lio_xcopy.scsi.errors import InvalidFieldInCdb


@dataclass(frozen=True, slots=True)
class Field:
    """``width`` bits ending at bit ``lsb`` of the last byte of a big-endian run starting
    at ``byte``; the run is as many bytes as the field needs."""

    name: str
    byte: int
    width: int = 8
    lsb: int = 0
    # derived once: every encoder and decoder reads them for each field it moves
    nbytes: int = dataclasses.field(init=False, repr=False, compare=False)
    mask: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nbytes", (self.width + self.lsb + 7) // 8)
        object.__setattr__(self, "mask", (1 << self.width) - 1)

    @property
    def msb_bit(self) -> int | None:
        """The bit pointer SPC-4 4.5.2.4.2 wants: the field's most significant bit in its
        first byte, or None for a field of whole bytes."""
        if self.lsb == 0 and self.width % 8 == 0:
            return None
        return (self.width + self.lsb - 1) % 8

    def shift(self, length: int) -> int:
        """The field's shift within ``length`` bytes read as one big-endian integer."""
        return (length - self.byte - self.nbytes) * 8 + self.lsb

    def check(self, value: int) -> int:
        """``value``, if it fits the field; else ValueError naming both."""
        if not 0 <= value <= self.mask:
            raise ValueError(f"{self.name}={value} does not fit {self.width} bits")
        return value

    def get(self, buf: bytes | bytearray | memoryview) -> int:
        raw = int.from_bytes(buf[self.byte : self.byte + self.nbytes], "big")
        return (raw >> self.lsb) & self.mask

    def put(self, buf: bytearray, value: int) -> None:
        self.check(value)
        end = self.byte + self.nbytes
        raw = int.from_bytes(buf[self.byte : end], "big")
        raw = (raw & ~(self.mask << self.lsb)) | (value << self.lsb)
        buf[self.byte : end] = raw.to_bytes(self.nbytes, "big")


def bitfield(byte: int, width: int = 8, *, lsb: int = 0) -> Any:
    """Place a CDB field: ``width`` bits ending at bit ``lsb`` of the last byte of a run
    starting at ``byte`` (see :class:`Field`). The field's value defaults to 0."""
    return Field("", byte, width, lsb)


@dataclass_transform(frozen_default=True)
class Cdb:
    """Base of every CDB layout. A subclass names its command in the class keywords
    and places its fields with :func:`bitfield`; it becomes a frozen record of ints,
    built, compared, hashed and shown as a frozen dataclass would be. The methods are
    this class's, from the field table, not generated per layout: ``dataclass()``
    compiles six methods for each class, and every process that speaks SCSI imports
    some seventy layouts.

    A SERVICE ACTION field (byte 1, bits 4-0) is added before the declared fields when
    ``service_action`` is given, with that code as its default, and the CONTROL byte
    (the last) after them. ``data_out``: the command's data moves from the initiator
    (SAM-5 5.4.3, Data-Out buffer). Fields that overlap are refused."""

    NAME: ClassVar[str]
    OPCODE: ClassVar[int]
    SERVICE_ACTION: ClassVar[int | None]
    LENGTH: ClassVar[int]
    CLAUSE: ClassVar[str]
    FIELDS: ClassVar[tuple[Field, ...]]
    _DECODE: ClassVar[tuple[tuple[str, int, int], ...]]
    _NAMES: ClassVar[tuple[str, ...]]
    _DEFAULTS: ClassVar[dict[str, int]]
    #: the command carries a Data-Out buffer (parameter list or write data), so the
    #: transport never returns its buffer to the initiator
    DATA_OUT: ClassVar[bool] = False

    control: int

    def __init_subclass__(
        cls,
        *,
        name: str,
        opcode: int,
        length: int,
        clause: str,
        service_action: int | None = None,
        data_out: bool = False,
        **kw: Any,
    ) -> None:
        super().__init_subclass__(**kw)
        if cls.__bases__ != (Cdb,):
            raise TypeError(f"{name}: a CDB layout subclasses Cdb itself, not another layout")
        declared: list[Field] = []
        for attr, annotation in inspect.get_annotations(cls).items():
            if str(annotation).startswith("ClassVar"):
                continue  # e.g. SERVICE_ACTION: ClassVar[int], narrowed for the type checker
            placed = cls.__dict__.get(attr)
            if not isinstance(placed, Field):
                raise TypeError(f"{name}: field {attr!r} is not placed with bitfield()")
            declared.append(dataclasses.replace(placed, name=attr))
        names = {f.name for f in declared}
        table: list[Field] = []
        if service_action is not None and "service_action" not in names:
            table.append(Field("service_action", 1, 5))
        table += declared
        if "control" not in names:
            table.append(Field("control", length - 1, 8))
        used = bytearray(length)
        for f in table:
            mask = bytearray(length)
            f.put(mask, f.mask)
            if any(a & b for a, b in zip(used, mask, strict=True)):
                raise ValueError(f"{name}: field {f.name!r} overlaps another field")
            used = bytearray(a | b for a, b in zip(used, mask, strict=True))
        defaults: dict[str, int] = {}
        for f in table:
            # encode() writes the service action even when built with defaults
            defaults[f.name] = (service_action or 0) if f.name == "service_action" else 0
            setattr(cls, f.name, defaults[f.name])
        cls.__annotations__ = {f.name: "int" for f in table}
        cls._NAMES = tuple(defaults)
        cls._DEFAULTS = defaults
        cls.NAME = name
        cls.OPCODE = opcode
        cls.SERVICE_ACTION = service_action
        cls.LENGTH = length
        cls.CLAUSE = clause
        cls.FIELDS = tuple(table)
        # decode's and encode's plan: each field's shift from the end of the CDB read as
        # one integer
        cls._DECODE = tuple((f.name, f.shift(length), f.mask) for f in table)
        cls.DATA_OUT = data_out
        if cls.__doc__ is None:
            cls.__doc__ = f"{clause} {name}."

    def __init__(self, *args: int, **kwargs: int) -> None:
        """Fields by position (the table's order) or by name; the rest default to 0,
        SERVICE ACTION to the command's code."""
        names = self._NAMES
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__}() takes {len(names)} positional "
                            f"arguments but {len(args)} were given")
        values = dict(self._DEFAULTS)
        values.update(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in values:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword "
                                f"argument {key!r}")
            if names.index(key) < len(args):
                raise TypeError(f"{type(self).__name__}() got multiple values for "
                                f"argument {key!r}")
            values[key] = value
        self.__dict__.update(values)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={self.__dict__[n]!r}" for n in self._NAMES)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__[n] for n in self._NAMES))

    def __setattr__(self, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    @classmethod
    def decode(cls, cdb: bytes | bytearray | memoryview) -> Self:
        """The layout's fields read from ``cdb``: the CDB is read as one big-endian
        integer and each field shifted out of it (the transport decodes every READ and
        WRITE, so this is the command path's hot spot); the instance is the one
        ``cls(**fields)`` would build."""
        if len(cdb) < cls.LENGTH:
            raise InvalidFieldInCdb(0, message=f"{cls.NAME}: CDB of {len(cdb)} bytes")
        whole = int.from_bytes(cdb[: cls.LENGTH], "big")
        decoded = object.__new__(cls)
        decoded.__dict__.update({name: whole >> shift & mask
                                 for name, shift, mask in cls._DECODE})
        return decoded

    def encode(self) -> bytes:
        """The CDB: the fields (each checked against its width; they do not overlap)
        OR-ed into one big-endian integer behind the opcode."""
        values = self.__dict__
        whole = self.OPCODE << 8 * (self.LENGTH - 1)
        for f, (name, shift, mask) in zip(self.FIELDS, self._DECODE, strict=True):
            value = values[name]
            if not 0 <= value <= mask:
                f.check(value)
            whole |= value << shift
        return whole.to_bytes(self.LENGTH, "big")

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
        whole = cls.OPCODE << 8 * (cls.LENGTH - 1)
        for name, shift, mask in cls._DECODE:
            if name == "service_action" and cls.SERVICE_ACTION is not None:
                mask = cls.SERVICE_ACTION
            whole |= mask << shift
        return whole.to_bytes(cls.LENGTH, "big")


def cdb_length(opcode: int) -> int:
    """CDB length from the opcode's group code, SPC-4 4.2.5.1 (0 for vendor groups)."""
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(opcode >> 5, 0)
