"""The initiator's SG_IO device looped back to a target device in this process: every
CDB the initiator's tools send is answered by the real target code, without a kernel."""

from __future__ import annotations

import os

from lio_xcopy.devices.base import Command
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import CHECK_CONDITION
from lio_xcopy.sg import sgio


class Loopback(sgio.SgIoDevice):
    """An :class:`sgio.SgIoDevice` whose commands go straight to a target device."""

    def __init__(self, path: str, device):
        self.path = path
        self.device = device
        self.bytes_in = self.bytes_out = self.commands = 0
        self.fd = os.open(os.devnull, os.O_RDONLY)
        self.sent: list[bytes] = []
        self.plists: list[bytes] = []

    def execute(self, cdb, data_in=0, data_out=None, timeout=60, *, check=True):
        cdb = bytes(cdb)
        self.sent.append(cdb)
        if cdb[:2] in (b"\x83\x00", b"\x83\x01"):  # EXTENDED COPY: keep its list
            self.plists.append(bytes(data_out or b""))
        self.commands += 1
        buf = DataBuffer.of(bytearray(data_out)) if data_out else DataBuffer.allocate(data_in)
        try:
            n = self.device.handle(Command(cdb, buf))
            if not isinstance(n, int):
                n = n.result(timeout=60)
        except CheckCondition as e:
            result = sgio.Result(cdb, CHECK_CONDITION, e.sense, b"", data_in, 0.0,
                                 requested=data_in, sense_bytes=e.sense.encode())
            if check:
                raise sgio.ScsiCommandError(
                    f"{sgio.command_name(cdb)} on {self.path} failed: {result.explain()}",
                    self.path, result) from None
            return result
        data = buf.tobytes(n) if data_in else b""
        self.bytes_in += len(data)
        self.bytes_out += len(data_out or b"")
        return sgio.Result(cdb, 0, None, data, data_in - len(data), 0.0, requested=data_in)
