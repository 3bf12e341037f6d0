"""A tape drive as a library sees it (the LibraryDrive protocol), and the element addresses
of the libraries the tests make."""

from __future__ import annotations

from lio_xcopy.devices.base import LunIdentity
from lio_xcopy.errors import ConfigError

#: first storage, import/export and data transfer element addresses
SLOT = 0x1000
IE = 0x0010
DRIVE = 0x0100


class FakeDrive:
    """A tape LUN as the library sees it (the LibraryDrive protocol)."""

    def __init__(self, name: str):
        self.identity = LunIdentity(name, f"serial-{name}")
        self.path: str | None = None
        self.read_only = False
        self.removal_prevented = False

    def load_cartridge(self, path, *, read_only=False, capacity=None):
        if self.path is not None:
            raise ConfigError("already loaded")
        self.path, self.read_only = path, read_only

    def unload_cartridge(self):
        if self.removal_prevented:
            raise ConfigError("prevented")
        path, self.path = self.path, None
        return path
