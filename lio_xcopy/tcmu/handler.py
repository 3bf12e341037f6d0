"""The SCSI device a storage object's configuration string
(:class:`~lio_xcopy.handler_config.HandlerConfig`) describes: a disk, a tape, a
library's changer or drive, or a pass-through LUN."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import uuid
from typing import Any

from lio_xcopy.devices.base import LogicalUnit, LunIdentity
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import MAX_TRANSFER_BYTES, SUBTYPE, HandlerConfig, parse_size


class Libraries:
    """The daemon's one :class:`~lio_xcopy.devices.library.Library` per directory, shared
    by a changer LUN and its drive LUNs."""

    def __init__(self) -> None:
        self._by_path: dict[str, Any] = {}

    def get(self, path: str) -> Any:
        from lio_xcopy.devices.library import Library

        key = os.path.realpath(path)
        if key not in self._by_path:
            self._by_path[key] = Library.open(key)
        return self._by_path[key]


def _library_drive(identity: LunIdentity, hc: HandlerConfig, libraries: Libraries) -> LogicalUnit:
    from lio_xcopy.devices.tape import Tape

    try:
        index = int(hc.options["drive"])
    except ValueError as e:
        raise ConfigError(f"drive={hc.options['drive']!r}: give the drive's index, 0 for "
                          "the first") from e
    library = libraries.get(hc.path)
    capacity = library.state().capacity
    drive = Tape(identity, None, capacity, max_block_length=MAX_TRANSFER_BYTES)
    try:
        library.attach_drive(index, drive)
    except Exception:
        drive.close()
        raise
    drive.power_on()
    return drive


def _passthrough(identity: LunIdentity, hc: HandlerConfig, subtype: str) -> LogicalUnit:
    from lio_xcopy.devices.passthrough import PassThrough
    from lio_xcopy.sg.resolve import StableName, resolve

    stable = StableName.parse(hc.path)
    recorded = StableName.parse(hc.options["id"]).designator if "id" in hc.options else None
    try:
        device_type = int(hc.options["type"])
    except (KeyError, ValueError) as e:
        raise ConfigError(f"{identity.name}: pass-through config without a type=N (the "
                          "peripheral device type): delete the LUN and create it again") from e
    return PassThrough(identity, device_type, functools.partial(
        resolve, stable, recorded, exclude_subtype=subtype))


def open_device(name: str, cfg: str, unit_serial: str | None, *,
                libraries: Libraries | None = None, subtype: str = SUBTYPE) -> LogicalUnit:
    """Open the SCSI device one storage object describes; changers and library drives
    find their library in ``libraries`` (a private one when not given). A pass-through
    LUN never forwards to a LUN of ``subtype`` (its own daemon's)."""
    hc = HandlerConfig.parse(cfg)
    serial = unit_serial or str(uuid.uuid5(uuid.NAMESPACE_URL, f"lio-xcopy:{name}"))
    if hc.kind == "passthrough":
        return _passthrough(LunIdentity(name, serial), hc, subtype)
    if hc.kind == "disk":
        from lio_xcopy.devices.backing import BackingStore
        from lio_xcopy.devices.disk import Disk

        try:
            block_size = int(hc.options.get("block_size", "512"))
        except ValueError as e:
            raise ConfigError(f"handler config {cfg!r}: block_size is not a number") from e
        read_only = hc.options.get("ro", "0") in ("1", "true", "yes")
        store = BackingStore(hc.path, read_only=read_only)
        return Disk(LunIdentity(name, serial, product="lio-xcopy disk"), store,
                    block_size=block_size, read_only=read_only,
                    max_transfer_length=MAX_TRANSFER_BYTES // block_size)
    if hc.kind == "changer":
        from lio_xcopy.devices.changer import MediumChanger

        library = (libraries or Libraries()).get(hc.path)
        return MediumChanger(LunIdentity(name, serial, product="lio-xcopy lib"), library)
    if "drive" in hc.options:
        return _library_drive(LunIdentity(name, serial, product="lio-xcopy tape"), hc,
                              libraries or Libraries())
    from lio_xcopy.devices.tape import Tape

    capacity = parse_size(hc.options.get("capacity", "1G"))
    tape = Tape(LunIdentity(name, serial, product="lio-xcopy tape"), hc.path, capacity,
                read_only=hc.options.get("ro", "0") in ("1", "true", "yes"),
                max_block_length=MAX_TRANSFER_BYTES)
    tape.power_on()
    return tape


#: PERIPHERAL DEVICE TYPE (SPC-4 6.6.2) of each kind of storage object
KIND_DEVICE_TYPE = {"disk": 0x00, "tape": 0x01, "changer": 0x08}
#: where systemd's PrivateTmp=yes gives the daemon directories of its own
PRIVATE_TMP = ("/tmp/", "/var/tmp/")
#: what the unit's ProtectHome=read-only leaves the daemon only to read
PROTECTED_HOME = ("/home/", "/root/", "/run/user/")


def unavailable_device(name: str, cfg: str, unit_serial: str | None,
                       error: BaseException) -> LogicalUnit:
    """The LUN :func:`open_device` could not open, as a device that answers NOT READY
    with the reason (:class:`~lio_xcopy.devices.unavailable.Unavailable`), of the type
    it was configured as; its designators are the ones it would have had."""
    from lio_xcopy.devices.unavailable import Unavailable

    serial = unit_serial or str(uuid.uuid5(uuid.NAMESPACE_URL, f"lio-xcopy:{name}"))
    device_type = 0x00
    try:
        hc = HandlerConfig.parse(cfg)
    except ConfigError:
        hc = None
    if hc is not None:
        device_type = KIND_DEVICE_TYPE.get(hc.kind, 0x00)
        with contextlib.suppress(KeyError, ValueError):
            device_type = int(hc.options["type"]) if hc.kind == "passthrough" else device_type
    return Unavailable(LunIdentity(name, serial), device_type, unopenable_reason(hc, error))


def unopenable_reason(hc: HandlerConfig | None, error: BaseException) -> str:
    """``error`` as the operator reads it, with the likeliest cause when the daemon runs
    under systemd (``INVOCATION_ID`` set): the unit's private /tmp, or its read-only
    home directories (systemd/lio-xcopy.service)."""
    reason = str(error)
    if hc is None or not os.environ.get("INVOCATION_ID"):
        return reason
    cause = error.__cause__ or error
    if hc.path.startswith(PRIVATE_TMP) and isinstance(cause, FileNotFoundError):
        return reason + ("; the lio-xcopy unit runs with PrivateTmp=yes and cannot see "
                         "files under /tmp or /var/tmp: keep backing files elsewhere, e.g. "
                         "/var/lib/lio-xcopy")
    if (hc.path.startswith(PROTECTED_HOME) and isinstance(cause, OSError)
            and cause.errno == errno.EROFS):
        return reason + ("; the lio-xcopy unit runs with ProtectHome=read-only: keep "
                         "backing files outside /home and /root, e.g. /var/lib/lio-xcopy")
    return reason
