"""Provisioning LUNs through rtslib-fb: user backstores of our subtype and their exports.

Create-or-lookup, as rtslib does: asking for a LUN that exists with the same backing
returns it; asking for one that exists with another backing is an error.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lio_xcopy.control import backing, rtslib_adapter
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import HW_MAX_SECTORS, SUBTYPE, HandlerConfig

log = logging.getLogger(__name__)

#: Never wait for tcmu-runner's netlink reply: it answers "no handler" for our subtype
#: (see shared notes); re-applied on every create.
CONTROL = "nl_reply_supported=-1"
#: target_core_user attributes we set on every LUN: task management reaches the daemon
#: (so ABORT TASK and LUN RESET stop a copy), and one EXTENDED COPY may run for up to
#: ten minutes before the kernel fails it (the default, 30 s, is too short for a copy).
ATTRIBUTES = {"tmr_notification": "1", "cmd_time_out": "600"}
#: A pass-through LUN's commands are bounded by their SG_IO timeouts (hours for a
#: REWIND or MOVE MEDIUM) and queue behind each other: no kernel timer of its own.
PASSTHROUGH_ATTRIBUTES = {**ATTRIBUTES, "cmd_time_out": "0"}


def _sparse_file(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Lun:
    """A user backstore of ours: rtslib's storage object and its handler config."""

    name: str
    kind: str
    path: Path
    unit_serial: str
    storage_object: object

    @property
    def naa(self) -> str:
        from lio_xcopy.scsi.spc import naa_ieee_registered_extended

        return naa_ieee_registered_extended(self.unit_serial).hex()


def in_use(exclude: str | None = None) -> list[backing.InUse]:
    """Every storage object LIO holds but ``exclude``, with the file, device or library
    directory it owns (ours from their config, fileio/block/pscsi from their udev_path)."""
    out = []
    for so in rtslib_adapter.rtslib().RTSRoot().storage_objects:
        if so.name == exclude:
            continue
        if so.plugin == "user" and (so.config or "").startswith(f"{SUBTYPE}/"):
            hc = HandlerConfig.parse(so.config.split("/", 1)[1])
            kind = "library_drive" if hc.kind == "tape" and "drive" in hc.options else hc.kind
            out.append(backing.InUse(so.name, kind, Path(hc.path)))
            continue
        with contextlib.suppress(AttributeError, rtslib_adapter.rtslib().RTSLibError, OSError):
            if so.udev_path:
                out.append(backing.InUse(so.name, so.plugin, Path(so.udev_path)))
    return out


def check_backing(kind: str, name: str, path: Path, *, format: bool = False) -> None:  # noqa: A002
    """Refuse a backing file another owner keeps bytes in (:func:`backing.check`),
    unless LUN ``name`` exists already (create-or-lookup then decides)."""
    rtslib_adapter.ensure_configfs()
    if any(so.name == name for so in rtslib_adapter.rtslib().RTSRoot().storage_objects):
        return
    backing.check(kind, path, in_use(name), format=format)


def _create(name: str, hc: HandlerConfig, size: int, wwn: str | None,
            attributes: dict[str, str] = ATTRIBUTES,
            before: Callable[[], None] | None = None,
            hw_max_sectors: int = HW_MAX_SECTORS) -> Lun:
    """Create-or-lookup; ``before()`` runs only when a new storage object is made."""
    rtslib_adapter.ensure_configfs()
    rts = rtslib_adapter.rtslib()
    config = f"{SUBTYPE}/{hc.format()}"
    for so in rts.RTSRoot().storage_objects:
        if so.name == name and so.plugin == "user":
            if so.config != config:
                raise ConfigError(
                    f"LUN {name!r} exists with config {so.config!r}: delete it first or "
                    "choose another name"
                )
            _tune(so, attributes)
            return Lun(name, hc.kind, Path(hc.path), so.wwn, so)
        if so.name == name:
            raise ConfigError(f"a {so.plugin} backstore named {name!r} exists: choose another name")
    if before is not None:
        before()
    so = rts.UserBackedStorageObject(
        name, config=config, size=size, wwn=wwn or str(uuid.uuid4()),
        hw_max_sectors=hw_max_sectors, control=CONTROL,
    )
    _tune(so, attributes)
    return Lun(name, hc.kind, Path(hc.path), so.wwn, so)


def _tune(so: Any, attributes: dict[str, str] = ATTRIBUTES) -> None:
    """Apply ``attributes`` where this kernel has them (cmd_time_out only takes
    while the LUN is not exported; a LUN made by us got it then)."""
    for attr, value in attributes.items():
        if Path(so.path, "attrib", attr).exists() and so.get_attribute(attr) != value:
            try:
                so.set_attribute(attr, value)
            except (rtslib_adapter.rtslib().RTSLibError, OSError) as e:
                log.warning("%s: cannot set %s=%s now (%s)", so.name, attr, value, e)


def create_disk(name: str, path: str | os.PathLike[str], size: int, block_size: int = 512,
                wwn: str | None = None) -> Lun:
    """A disk LUN over a file (created sparse when absent) or a block device."""
    path = Path(path).absolute()
    if block_size not in (512, 1024, 2048, 4096):
        raise ConfigError(f"block size {block_size}: use 512, 1024, 2048 or 4096")
    if size <= 0 or size % block_size:
        raise ConfigError(f"size {size}: must be a positive multiple of the block size")
    check_backing("disk", name, path)
    hc = HandlerConfig("disk", str(path), {"block_size": str(block_size)})

    def sparse() -> None:
        if not path.exists() or path.is_file():
            _sparse_file(path, size)

    return _create(name, hc, size, wwn, before=sparse)


def create_tape(name: str, path: str | os.PathLike[str], capacity: int,
                wwn: str | None = None, *, format: bool = False) -> Lun:  # noqa: A002
    """A tape drive with its cartridge (an AWSTAPE file, created empty when absent). An
    existing file must be a cartridge; ``format`` overwrites it with a blank one."""
    path = Path(path).absolute()
    if capacity < 1 << 20:
        raise ConfigError(f"tape capacity {capacity}: use at least 1M")
    check_backing("tape", name, path, format=format)
    hc = HandlerConfig("tape", str(path), {"capacity": str(capacity)})

    def blank() -> None:
        if format and path.is_file():
            os.truncate(path, 0)

    return _create(name, hc, capacity, wwn, before=blank)


def create_changer(name: str, library_dir: str | os.PathLike[str],
                   wwn: str | None = None) -> Lun:
    """The medium changer LUN (SMC-3) of a library directory (made by
    :func:`lio_xcopy.control.library.create_library`)."""
    path = Path(library_dir).absolute()
    if not (path / "library.json").is_file():
        raise ConfigError(f"{path} is not a library: create it first (create_library)")
    return _create(name, HandlerConfig("changer", str(path)), 1 << 20, wwn)


def create_library_drive(name: str, library_dir: str | os.PathLike[str], drive: int,
                         wwn: str | None = None) -> Lun:
    """Tape LUN number ``drive`` (0 for the first) of a library: it starts empty and
    takes the cartridges the changer moves into it."""
    path = Path(library_dir).absolute()
    if not (path / "library.json").is_file():
        raise ConfigError(f"{path} is not a library: create it first (create_library)")
    from lio_xcopy.devices.library import Library

    lib = Library.open(path)
    count = len(lib.state().drives)
    if not 0 <= drive < count:
        raise ConfigError(f"{path} has {count} drive(s): use drive 0 to {count - 1}")
    hc = HandlerConfig("tape", str(path), {"drive": str(drive)})
    return _create(name, hc, lib.state().capacity, wwn)


def create_passthrough(name: str, stable_name: str, wwn: str | None = None,
                       expect: str | None = None) -> Lun:
    """A LUN forwarding to a disk, tape drive or medium changer of this host, named by
    ``/dev/tape/by-id/...``, ``/dev/disk/by-id/...`` or its designator (``naa.<hex>``).
    The device must be there now (its type and designator are recorded); it need not
    be ready: a drive without a cartridge will do, nothing is sent to it. With
    ``expect`` (a designator, ``naa.<hex>``) the device must still carry it."""
    from lio_xcopy.sg.resolve import DeviceNotFound, StableName, designator_text, resolve

    stable = StableName.parse(stable_name)
    want = StableName.parse(expect).designator if expect else None
    try:
        found = resolve(stable, want, exclude_subtype=SUBTYPE)
    except DeviceNotFound as e:
        raise ConfigError(str(e)) from e
    if found.device_type is None:
        raise ConfigError(f"{stable_name}: the kernel shows no device type for "
                          f"{found.hctl}; is it a SCSI device?")
    options = {"type": str(found.device_type)}
    ident = found.identifier()
    if stable.designator is None and ident is not None:
        options = {"id": designator_text(ident), **options}
    hc = HandlerConfig("passthrough", stable.text, options)
    # no command larger than the device takes: LIO splits none for a user backstore
    from lio_xcopy.sg.sgio import max_transfer_bytes

    limit = found.max_sectors or (max_transfer_bytes(found.sg) or 0) // 512
    sectors = min(HW_MAX_SECTORS, limit or HW_MAX_SECTORS)
    return _create(name, hc, 1 << 20, wwn, PASSTHROUGH_ATTRIBUTES, hw_max_sectors=sectors)


def export_loopback(lun: Lun, lun_id: int | None = None, target_wwn: str | None = None) -> int:
    """Export over tcm_loop; returns the LUN id. By default all our LUNs share one
    loopback target: the one exporting the most LUNs already (an empty target another
    tool left behind never takes the default), else a new one. ``target_wwn``
    (``naa.5001405...``) names another, whose LUNs the copy access policy keeps apart
    from the rest."""
    rts = rtslib_adapter.rtslib()
    fabric = rts.FabricModule("loopback")
    if target_wwn is not None:
        target = rts.Target(fabric, target_wwn)
    else:
        targets = sorted(fabric.targets, key=lambda t: (
            -sum(len(list(tpg.luns)) for tpg in t.tpgs), t.wwn))
        target = targets[0] if targets else rts.Target(fabric)
    tpg = rts.TPG(target, 1)
    for existing in tpg.luns:
        if existing.storage_object.name == lun.name:
            return int(existing.lun)
    return int(rts.LUN(tpg, lun=lun_id, storage_object=lun.storage_object).lun)


@contextlib.contextmanager
def _served_while_deleted(so: Any) -> Iterator[None]:
    """While ``so`` is unexported and deleted, make sure a process serves its ring.

    Unexporting waits for every command the LUN holds (``transport_clear_lun_ref``), and
    through tcm_loop it removes the initiator's SCSI device, whose driver flushes it
    first (sd: SYNCHRONIZE CACHE). With no daemon serving the ring (stopped, or died)
    those commands would wait out ``cmd_time_out`` (ten minutes) and be retried; so the
    control plane serves this one LUN itself, as the daemon would, until it is gone."""
    from lio_xcopy.tcmu import uio
    from lio_xcopy.tcmu.daemon import Daemon

    hba = Path(so.path).parent.name.removeprefix("user_")
    dev = uio.find_device(int(hba), so.name) if hba.isdigit() else None
    if dev is None or uio.ring_holders(dev.devnode):
        yield
        return
    log.warning("%s: no daemon serves it: serving it from here while it is deleted, so "
                "its initiators' last commands are answered", so.name)
    server = Daemon(subtype=dev.tcmu.subtype, rescan_every=math.inf)
    if server.add(str(dev.sys_path)) is None:
        log.warning("%s: cannot serve it here either; the delete waits for the kernel's "
                    "command timer", so.name)
        yield
        return
    def serve() -> None:
        try:
            server.run()
        except Exception:  # said, not raised: the delete goes on (and may then wait)
            log.exception("%s: serving it during the delete failed", so.name)

    loop = threading.Thread(target=serve, name=f"serve-{so.name}", daemon=True)
    loop.start()
    try:
        yield
    finally:
        server.stop()
        loop.join(90)


def _unexport(so: Any) -> None:
    """Remove every export of ``so``, then ``so`` itself."""
    with _served_while_deleted(so):
        for lun in list(so.attached_luns):
            lun.delete()
        so.delete()


def delete(name: str) -> None:
    """Remove a LUN and every export of it."""
    rts = rtslib_adapter.rtslib()
    for so in rts.RTSRoot().storage_objects:
        if so.name == name and so.plugin == "user":
            _unexport(so)
            return
    raise ConfigError(f"no LUN named {name!r}: `lio-xcopy status` lists them")


def delete_all() -> None:
    """Remove every LUN of ours, then any loopback target left empty."""
    rts = rtslib_adapter.rtslib()
    for so in list(rts.RTSRoot().storage_objects):
        if so.plugin == "user" and so.config and so.config.startswith(f"{SUBTYPE}/"):
            _unexport(so)
    for target in list(rts.FabricModule("loopback").targets):
        if all(not list(tpg.luns) for tpg in target.tpgs):
            target.delete()


# --- finding the initiator-side devices of a LUN ------------------------------------------
@dataclass(frozen=True, slots=True)
class KernelDevice:
    """The SCSI device the initiator side sees for a LUN (through tcm_loop)."""

    hctl: str
    sg: Path | None
    block: Path | None
    tape: Path | None  # the non-rewinding /dev/nstN


def find_kernel_device(lun: Lun, timeout: float = 90.0) -> KernelDevice:
    """Find the initiator's device by our NAA in its VPD 83h (sysfs ``vpd_pg83``)."""
    from lio_xcopy.sg.resolve import CONFIGFS_TARGET, own_exports

    naa = bytes.fromhex(lun.naa)
    deadline = time.monotonic() + timeout
    while True:
        # a pass-through LUN shows its device's designators: find it by its export
        ours = ({hctl for hctl, name in own_exports(SUBTYPE, CONFIGFS_TARGET).items()
                 if name == lun.name} if lun.kind == "passthrough" else set())
        for dev in Path("/sys/bus/scsi/devices").glob("*:*:*:*"):
            try:
                page = (dev / "vpd_pg83").read_bytes()
            except OSError:
                continue
            if dev.name not in ours and (lun.kind == "passthrough" or naa not in page):
                continue
            sg = next((Path("/dev") / p.name for p in (dev / "scsi_generic").glob("sg*")), None)
            blk = next((Path("/dev") / p.name for p in (dev / "block").glob("sd*")), None)
            st = next((Path("/dev") / f"n{p.name}" for p in (dev / "scsi_tape").glob("st*")
                       if p.name[2:].isdigit()), None)
            kind = lun.kind
            if kind == "passthrough":
                kind = {0: "disk", 1: "tape"}.get(int((dev / "type").read_text()), kind)
            want_node = {"disk": blk, "tape": st}.get(kind, sg)  # a changer: sg only
            if sg and sg.exists() and want_node and want_node.exists():
                return KernelDevice(dev.name, sg, blk, st)
        if time.monotonic() > deadline:
            raise ConfigError(f"LUN {lun.name!r} did not appear on the initiator side in "
                              f"{timeout:.0f}s: is the daemon running?")
        time.sleep(0.2)
