"""Finding our TCMU devices: /sys/class/uio names and maps, LIO's configfs WWN.

The kernel names each TCMU uio device ``tcm-user/<hba>/<name>/<subtype>/<cfg>``
(target_core_user.c, ``tcmu_configure_device``); a daemon serves the devices whose
subtype is its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lio_xcopy.errors import TcmuError

CONFIGFS_CORE = Path("/sys/kernel/config/target/core")


class UioNotReady(TcmuError):
    """The uio device is there but the kernel has not finished making its attributes.

    ``__uio_register_device`` (drivers/uio/uio.c) calls ``device_add``, which sends the
    "add" uevent, before ``uio_dev_add_attributes`` makes ``maps/map0``: a daemon that
    reacts at once can find ``size`` missing. Worth trying again shortly."""


@dataclass(frozen=True, slots=True)
class UioName:
    """The parts of a TCMU uio device's ``name``."""

    hba: int
    name: str
    subtype: str
    cfg: str

    @property
    def configfs(self) -> Path:
        return CONFIGFS_CORE / f"user_{self.hba}" / self.name

    def reset_ring(self) -> None:
        """Have the kernel fail every command still on the ring with BUSY (which the
        initiator retries) and empty it: ``action/reset_ring`` = 1 (target_core_user.c,
        ``tcmu_reset_ring``), what tcmu-runner does when it reopens a device."""
        path = self.configfs / "action" / "reset_ring"
        try:
            path.write_text("1\n")
        except OSError as e:
            raise TcmuError(
                f"{self.name}: cannot reset its command ring ({path}: {e.strerror or e}); "
                "run the daemon as root with configfs mounted"
            ) from e


def parse_uio_name(text: str) -> UioName | None:
    """``tcm-user/1/db0/xcopy/disk:/srv/db0.img`` -> its parts; None if not TCMU."""
    parts = text.strip().split("/", 4)
    if len(parts) < 4 or parts[0] != "tcm-user" or not parts[1].isdigit() \
            or not parts[2] or not parts[3]:
        return None
    return UioName(int(parts[1]), parts[2], parts[3], parts[4] if len(parts) == 5 else "")


@dataclass(frozen=True, slots=True)
class UioDevice:
    """One /sys/class/uio/uioN that LIO made for a user backstore."""

    sys_path: Path
    devnode: Path
    tcmu: UioName
    map_size: int

    @classmethod
    def from_sys_path(cls, sys_path: str | os.PathLike[str]) -> UioDevice | None:
        """Describe a uio device from sysfs; None when it is not a TCMU device.

        Raises :class:`UioNotReady` while an attribute is missing (or ``size`` empty)
        in a device directory that exists, :class:`TcmuError` when the device is
        malformed or gone."""
        sys_path = Path(sys_path)
        size_path = sys_path / "maps" / "map0" / "size"
        try:
            tcmu = parse_uio_name((sys_path / "name").read_text())
            if tcmu is None:
                return None
            text = size_path.read_text()
            if not text.strip():
                raise UioNotReady(f"cannot read uio device {sys_path}: {size_path} is empty")
            size = int(text, 0)
        except FileNotFoundError as e:
            if sys_path.is_dir():
                raise UioNotReady(f"cannot read uio device {sys_path}: {e}") from e
            raise TcmuError(f"cannot read uio device {sys_path}: it is gone") from e
        except (OSError, ValueError) as e:
            raise TcmuError(f"cannot read uio device {sys_path}: {e}") from e
        if size <= 0:
            raise TcmuError(f"uio device {sys_path} maps {size} bytes: not a TCMU ring")
        return cls(sys_path, Path("/dev") / sys_path.name, tcmu, size)


def read_unit_serial(tcmu: UioName) -> str | None:
    """The storage object's ``wwn/vpd_unit_serial`` (what LIO builds its NAA from)."""
    try:
        text = (tcmu.configfs / "wwn" / "vpd_unit_serial").read_text()
    except OSError:
        return None
    return text.rsplit(":", 1)[-1].strip() or None


UIO_CLASS = Path("/sys/class/uio")


def find_device(hba: int, name: str, sys_class: Path | None = None) -> UioDevice | None:
    """The uio device of the user backstore ``user_<hba>/<name>`` (looked for in
    ``sys_class``, by default :data:`UIO_CLASS`); None when there is none."""
    try:
        entries = sorted((sys_class or UIO_CLASS).iterdir())
    except OSError:
        return None
    for sys_path in entries:
        try:
            dev = UioDevice.from_sys_path(sys_path)
        except TcmuError:
            continue
        if dev is not None and (dev.tcmu.hba, dev.tcmu.name) == (hba, name):
            return dev
    return None


def ring_holders(devnode: Path, proc: Path = Path("/proc")) -> list[int]:
    """The processes that have ``devnode`` (a /dev/uioN) open: the daemon serving that
    ring, if any. The kernel lets one open it at a time (``tcmu_open``)."""
    want = str(devnode)
    pids: list[int] = []
    for p in proc.iterdir():
        if not p.name.isdigit():
            continue
        try:
            fds = list((p / "fd").iterdir())
        except OSError:  # gone, or not ours to see
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == want:
                    pids.append(int(p.name))
                    break
            except OSError:
                continue
    return pids
