"""A stand-in library drive until branch ``ssc`` lands ``Tape(identity, path=None)``.

DELETE this module when ``devices.tape.Tape`` has ``load_cartridge``: handler.py then
uses Tape itself (it checks). It gives today's Tape the interface the library needs
(:class:`lio_xcopy.devices.library.Drive`): empty drive NOT READY, MEDIUM NOT PRESENT;
a loaded cartridge announced by UNIT ATTENTION 28h/00h; unloading refused while the
host prevents medium removal.
"""

from __future__ import annotations

import os
import threading

from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.base import Command, LunIdentity, ScsiDevice
from lio_xcopy.devices.tape import MAX_BLOCK_LENGTH, Tape
from lio_xcopy.errors import ConfigError
from lio_xcopy.scsi import spc, ssc
from lio_xcopy.scsi.errors import UnitAttention
from lio_xcopy.scsi.sense import Asc

_WITHOUT_MEDIUM = (spc.INQUIRY.OPCODE, spc.REQUEST_SENSE.OPCODE, spc.TEST_UNIT_READY.OPCODE,
                   spc.REPORT_SUPPORTED_OPERATION_CODES.OPCODE,
                   ssc.PREVENT_ALLOW_MEDIUM_REMOVAL.OPCODE)


class InterimLibraryTape(Tape):
    """A Tape that starts empty and takes cartridges from the changer."""

    def __init__(self, identity: LunIdentity, capacity: int, *,
                 max_block_length: int = MAX_BLOCK_LENGTH):
        ScsiDevice.__init__(self, identity)
        self.max_block_length = max_block_length
        self.block_length = 0
        self.density = ssc.DENSITY_DEFAULT
        self.buffered_mode = 1
        self.loaded = False
        self.prevent_removal = False
        self._lock = threading.RLock()
        self.cartridge = None  # type: ignore[assignment]
        self._capacity = capacity
        self._attention = False

    def handle(self, cmd: Command) -> int:
        with self._lock:
            if self.cartridge is None:
                if cmd.opcode in _WITHOUT_MEDIUM:
                    return ScsiDevice.handle(self, cmd)  # type: ignore[return-value]
                raise ssc.MediumNotPresent()
            if self._attention and cmd.opcode not in (spc.INQUIRY.OPCODE,
                                                      spc.REQUEST_SENSE.OPCODE):
                self._attention = False
                raise UnitAttention(Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED)
            return super().handle(cmd)

    def check_ready(self) -> None:
        if self.cartridge is None or not self.loaded:
            raise ssc.MediumNotPresent()

    def flush(self) -> None:
        if self.cartridge is not None:
            super().flush()

    def close(self) -> None:
        if self.cartridge is not None:
            super().close()

    @property
    def removal_prevented(self) -> bool:
        return self.prevent_removal

    def load_cartridge(self, path: str, *, read_only: bool = False,
                       capacity: int | None = None) -> None:
        with self._lock:
            if self.cartridge is not None:
                raise ConfigError(f"{self.identity.name}: a cartridge is already loaded")
            self.cartridge = AwsTape(os.fspath(path), capacity or self._capacity, create=True,
                                     read_only=read_only, strict=False)
            self.loaded = True
            self._attention = True

    def unload_cartridge(self) -> str | None:
        with self._lock:
            if self.cartridge is None:
                return None
            if self.prevent_removal:
                raise ConfigError(f"{self.identity.name}: medium removal is prevented")
            path = os.fspath(self.cartridge.path)
            super().close()
            self.cartridge = None  # type: ignore[assignment]
            self.loaded = False
            return path
