"""Initiator transports without a kernel, for the initiator tools' unit tests.

Both implement :class:`~lio_xcopy.sg.transport.ScsiTransport`, the protocol the tools
talk to, so the tools' own code (the SPC commands built on ``execute``, the check
that turns a status into :class:`~lio_xcopy.sg.transport.ScsiCommandError`) runs as
it does over SG_IO:

* :class:`Loopback` answers every CDB with a real target logical unit in this process;
* :class:`Scripted` answers from a script of :class:`Reply` values, or a function of
  the CDB; the ``scripted`` fixture makes one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

from lio_xcopy.devices.base import Command, LogicalUnit
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.explain import command_name
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD, SenseData
from lio_xcopy.sg.transport import Result, ScsiTransport, TransportFailure, checked

Buffer = bytes | bytearray | memoryview


class Loopback(ScsiTransport):
    """A transport whose commands go straight to a target logical unit.

    :attr:`sent` keeps every CDB, :attr:`plists` every EXTENDED COPY parameter list."""

    def __init__(self, path: str, device: LogicalUnit):
        self.path = path
        self.device = device
        self.bytes_in = self.bytes_out = self.commands = 0
        self.sent: list[bytes] = []
        self.plists: list[bytes] = []

    def execute(self, cdb: Buffer, data_in: int = 0, data_out: Buffer | None = None,
                timeout: float = 60, *, check: bool = True) -> Result:
        cdb = bytes(cdb)
        self.sent.append(cdb)
        if cdb[:2] in (b"\x83\x00", b"\x83\x01"):  # EXTENDED COPY: keep its list
            self.plists.append(bytes(data_out or b""))
        self.commands += 1
        buf = DataBuffer.of(bytearray(data_out)) if data_out else DataBuffer.allocate(data_in)
        try:
            n = self.device.handle(Command(cdb, buf))
            if not isinstance(n, int):
                n = n.result(timeout=timeout)
        except CheckCondition as e:
            result = Result(cdb, CHECK_CONDITION, e.sense, b"", data_in, 0.0,
                            requested=data_in, sense_bytes=e.sense.encode())
            return checked(result, self.path) if check else result
        data = buf.tobytes(n) if data_in else b""
        self.bytes_in += len(data)
        self.bytes_out += len(data_out or b"")
        return Result(cdb, GOOD, None, data, data_in - len(data), 0.0, requested=data_in)


@dataclass(frozen=True)
class Reply:
    """What a scripted device answers: a status with sense, Data-In bytes (cut to the
    command's length; ``resid`` defaults to what was not filled), or, with
    ``host_status``, a command that did not complete (DID_* of Linux)."""

    status: int = GOOD
    sense: SenseData | None = None
    data: bytes = b""
    resid: int | None = None
    host_status: int = 0

    @classmethod
    def check_condition(cls, sense: SenseData) -> Reply:
        return cls(CHECK_CONDITION, sense)


@dataclass(frozen=True)
class Sent:
    """One command as the scripted device received it."""

    cdb: bytes
    data_in: int
    data_out: bytes
    timeout: float


Responder = Callable[[Sent], Reply]


class Scripted(ScsiTransport):
    """A device that answers each command with the next :class:`Reply` of a script, or
    with ``respond(sent)`` when given a function; :attr:`sent` records the commands."""

    def __init__(self, script: Iterable[Reply] | Responder, path: str = "/dev/sg9"):
        self.path = path
        self.bytes_in = self.bytes_out = self.commands = 0
        self.sent: list[Sent] = []
        self._respond = script if callable(script) else None
        self._script = [] if callable(script) else list(script)

    def execute(self, cdb: Buffer, data_in: int = 0, data_out: Buffer | None = None,
                timeout: float = 60, *, check: bool = True) -> Result:
        sent = Sent(bytes(cdb), data_in, bytes(data_out or b""), timeout)
        self.sent.append(sent)
        if self._respond is not None:
            reply = self._respond(sent)
        else:
            assert self._script, f"unscripted command {command_name(sent.cdb)}"
            reply = self._script.pop(0)
        data = reply.data[:data_in]
        requested = data_in or len(sent.data_out)
        resid = reply.resid if reply.resid is not None else (data_in - len(data) if data_in else 0)
        result = Result(sent.cdb, reply.status, reply.sense, data, resid, 0.0,
                        host_status=reply.host_status, requested=requested,
                        sense_bytes=reply.sense.encode() if reply.sense else b"")
        self.commands += 1
        if reply.host_status:
            raise TransportFailure(f"{command_name(sent.cdb)} on {self.path} did not complete",
                                   self.path, result)
        self.bytes_in += len(data)
        self.bytes_out += len(sent.data_out)
        return checked(result, self.path) if check else result

    @property
    def cdbs(self) -> list[bytes]:
        return [s.cdb for s in self.sent]


@pytest.fixture
def scripted() -> Callable[..., Scripted]:
    """Make a :class:`Scripted` device: ``scripted([Reply(...), ...])`` or
    ``scripted(lambda sent: Reply(...))``."""
    return Scripted
