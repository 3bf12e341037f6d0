"""Stable names of SCSI devices, and the ``/dev/sgN`` each names today.

``/dev/sgN``, ``/dev/nstN`` and ``/dev/schN`` are numbered in discovery order: a reboot
or a hot-plug renumbers them. What stays is what udev names by identity,
``/dev/tape/by-id/...`` and ``/dev/disk/by-id/...`` (made from VPD page 83h or 80h),
and the Device Identification designators themselves (SPC-4 7.8.6), written
``naa.<hex>`` or ``eui.<hex>``. :func:`resolve` turns one of these into the sg node of
the logical unit it names now, looking through sysfs (``vpd_pg83`` of each SCSI
device), so a configuration that keeps the stable name survives renumbering.

A SCSI device that LIO's loopback fabric makes out of a storage object of
``exclude_subtype`` (a LUN this very daemon serves, which carries the real device's
VPD 83h when it passes that device through) is never the answer: sending it commands
would have the daemon forward to itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lio_xcopy.errors import ConfigError, LioXcopyError
from lio_xcopy.handler_config import DESIGNATOR
from lio_xcopy.scsi.spc import Designator
from lio_xcopy.sg import sgio

#: udev's directories of names made from a device's identity (not its path or number).
STABLE_DIRS = ("/dev/tape/by-id/", "/dev/disk/by-id/")
CONFIGFS_TARGET = Path("/sys/kernel/config/target")
#: designator types (SPC-4 Table 485): EUI-64 and NAA
_TYPES = {"eui": 2, "naa": 3}
_HINT = ("name the device by /dev/tape/by-id/..., /dev/disk/by-id/... (`ls -l "
         "/dev/tape/by-id /dev/disk/by-id`) or its designator naa.<hex> (`sg_vpd -p di`)")


class NotStableName(ConfigError):
    """A device named by something that renumbers (/dev/sg3, /dev/nst0)."""


class DeviceNotFound(LioXcopyError):
    """No SCSI device answers to the stable name now (unplugged, not yet scanned)."""


@dataclass(frozen=True, slots=True)
class StableName:
    """A device name that survives renumbering: a udev by-id path, or a designator."""

    text: str
    designator: Designator | None = None  # when the name is a designator

    @classmethod
    def parse(cls, text: str) -> StableName:
        m = DESIGNATOR.fullmatch(text)
        if m:
            return cls(text.lower(), Designator(1, _TYPES[m.group(1).lower()],
                                                bytes.fromhex(m.group(2))))
        if any(text.startswith(d) for d in STABLE_DIRS) and len(text) > len("/dev/tape/by-id/"):
            return cls(text)
        raise NotStableName(f"{text!r} is not a stable device name (sg, st and ch numbers "
                            f"change across reboots and hot-plug): {_HINT}")


def designator_text(d: Designator) -> str:
    """``naa.6001405...`` for an NAA or EUI-64 designator."""
    kind = {v: k for k, v in _TYPES.items()}[d.designator_type]
    return f"{kind}.{d.value.hex()}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The logical unit a stable name names now."""

    sg: Path
    hctl: str
    device_type: int | None
    designators: tuple[Designator, ...]
    #: the largest transfer, in 512-byte sectors, the kernel lets one command carry to it
    max_sectors: int | None = None

    def identifier(self) -> Designator | None:
        """The designator that names the logical unit best: NAA, else EUI-64
        (association 0, SPC-4 7.8.6.1)."""
        for kind in (3, 2):
            for d in self.designators:
                if d.designator_type == kind and d.association == 0:
                    return d
        return None


def _lu_designators(hctl_dir: Path) -> tuple[Designator, ...]:
    try:
        page = (hctl_dir / "vpd_pg83").read_bytes()
    except OSError:
        return ()
    if len(page) < 4:
        return ()
    return tuple(Designator.parse_all(page))


def _matches(designators: tuple[Designator, ...], want: Designator) -> bool:
    return any(d.association == 0 and d.designator_type == want.designator_type
               and d.value == want.value for d in designators)


def own_exports(subtype: str, configfs: Path) -> dict[str, str]:
    """H:C:T:L -> storage object name, of every SCSI device LIO's loopback fabric
    (tcm_loop) makes from a user storage object whose handler config starts with
    ``subtype/``.

    Read from each storage object's ALUA target port group ``members`` (SPC-4 5.16;
    every LUN of a storage object is a member of one) and each loopback TPG's
    ``address``, never by listing a ``lun_N`` directory: while a LUN is being linked
    there, the kernel holds that directory locked until the new SCSI device answers
    INQUIRY, which may be this daemon's to answer."""
    out: dict[str, str] = {}
    for so in sorted(configfs.glob("core/user_*/*")):
        try:
            if f"Config: {subtype}/" not in (so / "info").read_text(errors="replace"):
                continue
        except OSError:
            continue
        for members in sorted(so.glob("alua/*/members")):
            try:
                lines = members.read_text().split()
            except OSError:
                continue
            for member in lines:  # loopback/naa.5001405.../tpgt_1/lun_0
                fabric, _, rest = member.partition("/")
                tpg, _, lun = rest.rpartition("/")
                if fabric != "loopback" or not lun.startswith("lun_"):
                    continue
                try:
                    address = (configfs / fabric / tpg / "address").read_text().strip()
                except OSError:  # no nexus: no SCSI device either
                    continue
                out[f"{address}:{lun.removeprefix('lun_')}"] = so.name
    return out


def resolve(name: str | StableName, designator: Designator | None = None, *,
            exclude_subtype: str | None = None, sysfs_root: str | os.PathLike[str] = "/sys",
            dev_root: str | os.PathLike[str] = "/dev",
            configfs: str | os.PathLike[str] = CONFIGFS_TARGET) -> Resolved:
    """The logical unit ``name`` names now. A by-id path is followed to its device; with
    ``designator`` (recorded when the LUN was made) that device must carry it, and when
    the link is missing or points elsewhere every SCSI device is searched for it
    instead. A designator name is always searched for. Raises :class:`DeviceNotFound`."""
    stable = name if isinstance(name, StableName) else StableName.parse(name)
    want = stable.designator or designator
    sysfs = Path(sysfs_root)
    excluded = own_exports(exclude_subtype, Path(configfs)) if exclude_subtype else {}
    link = Path(dev_root) / stable.text.removeprefix("/dev/")
    if stable.designator is None and os.path.lexists(link):
        try:
            found = _resolved(sgio.scsi_device_dir(link, sysfs_root=sysfs,
                                                   dev_root=dev_root), dev_root)
        except sgio.SgIoError:
            found = None
        if found is not None and found.hctl not in excluded and (
            want is None or _matches(found.designators, want)
        ):
            return found
    if want is None:
        raise DeviceNotFound(f"{stable.text}: no such device now (unplugged, or not "
                             "scanned yet?); `lsscsi -g` lists the SCSI devices")
    for d in sorted((sysfs / "bus" / "scsi" / "devices").glob("*:*:*:*")):
        if d.name in excluded or not _matches(_lu_designators(d), want):
            continue
        found = _resolved(d.resolve(), dev_root)
        if found is not None:
            return found
    raise DeviceNotFound(f"{stable.text}: no SCSI device with designator "
                         f"{designator_text(want)} now (unplugged, or not scanned yet?); "
                         "`lsscsi -g` lists the SCSI devices")


def _resolved(hctl_dir: Path, dev_root: str | os.PathLike[str]) -> Resolved | None:
    """The sg node and designators of one SCSI device directory; None without sg."""
    sgs = sorted(p.name for p in (hctl_dir / "scsi_generic").glob("sg*"))
    if not sgs:
        return None
    try:
        dtype: int | None = int((hctl_dir / "type").read_text().strip())
    except (OSError, ValueError):
        dtype = None
    return Resolved(Path(dev_root) / sgs[0], hctl_dir.name, dtype, _lu_designators(hctl_dir),
                    _max_sectors(hctl_dir))


def _max_sectors(hctl_dir: Path) -> int | None:
    """The device's request queue limit as sysfs shows it for a disk
    (``block/*/queue/max_hw_sectors_kb``); other devices say it through their sg node
    (:func:`~lio_xcopy.sg.sgio.max_transfer_bytes`)."""
    for f in hctl_dir.glob("block/*/queue/max_hw_sectors_kb"):
        try:
            return int(f.read_text().strip()) * 2
        except (OSError, ValueError):
            continue
    return None
