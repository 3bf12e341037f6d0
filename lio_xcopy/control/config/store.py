"""Writing a saved configuration: :func:`save` writes it atomically, mode 0600 (it may
hold CHAP secrets), keeping rotated backups; the same configuration always gives the
same bytes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from lio_xcopy import files
from lio_xcopy.control.config.model import (
    DEFAULT_PATH,
    SCHEMA_VERSION,
    Chap,
    SavedConfig,
)
from lio_xcopy.control.config.reader import loads
from lio_xcopy.errors import ConfigError


def _chap(c: Chap | None) -> dict[str, str] | None:
    return None if c is None else {"userid": c.userid, "password": c.password}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def to_json(cfg: SavedConfig) -> dict[str, Any]:
    """The JSON document of a configuration, keys in a fixed order."""
    return {
        "version": SCHEMA_VERSION,
        "disks": [_drop_none({"name": d.name, "path": str(d.path), "size": d.size,
                              "block_size": d.block_size, "wwn": d.wwn}) for d in cfg.disks],
        "tapes": [_drop_none({"name": t.name, "path": str(t.path), "capacity": t.capacity,
                              "wwn": t.wwn}) for t in cfg.tapes],
        "changers": [_drop_none({"name": c.name, "library": str(c.library), "wwn": c.wwn})
                     for c in cfg.changers],
        "library_drives": [_drop_none({"name": d.name, "library": str(d.library),
                                       "drive": d.drive, "wwn": d.wwn})
                           for d in cfg.library_drives],
        "passthrough": [_drop_none({"name": p.name, "device": p.device,
                                    "designator": p.designator, "wwn": p.wwn})
                        for p in cfg.passthrough],
        "loopback": [_drop_none({"wwn": t.wwn,
                                 "luns": {str(k): v for k, v in sorted(t.luns.items())}})
                     for t in cfg.loopback],
        "iscsi": [{"iqn": t.iqn, "tpgs": [{
            "tag": g.tag,
            "enable": g.enable,
            "attributes": dict(sorted(g.attributes.items())),
            "portals": [_drop_none({"ip": p.ip, "port": p.port, "netns": p.netns})
                        for p in g.portals],
            "luns": {str(k): v for k, v in sorted(g.luns.items())},
            "acls": [_drop_none({
                "initiator": a.initiator,
                "mapped_luns": [{"mapped_lun": m.mapped_lun, "tpg_lun": m.tpg_lun,
                                 "write_protect": m.write_protect} for m in a.mapped_luns],
                "chap": _chap(a.chap),
                "mutual_chap": _chap(a.mutual_chap),
            }) for a in g.acls],
        } for g in t.tpgs]} for t in cfg.iscsi],
        "copy_groups": {k: list(v) for k, v in sorted(cfg.copy_groups.items())},
    }


def dump(cfg: SavedConfig) -> str:
    """The file's text: the same configuration always gives the same bytes."""
    return json.dumps(to_json(cfg), indent=2) + "\n"


def _backup(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def _make_dir(directory: Path) -> None:
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # whatever the umask


def _rotate(path: Path, old: bytes, backups: int) -> None:
    """``.1`` becomes ``.2`` ...; ``.N`` drops off; the old content becomes ``.1``."""
    prefix = f"{path.name}."
    for p in path.parent.iterdir():
        suffix = p.name.removeprefix(prefix)
        if p.name.startswith(prefix) and suffix.isascii() and suffix.isdigit() \
                and int(suffix) > backups:
            p.unlink()
    for n in range(backups - 1, 0, -1):
        if _backup(path, n).exists():
            os.replace(_backup(path, n), _backup(path, n + 1))
            os.chmod(_backup(path, n + 1), 0o600)
    files.replace(files.write_temp(path, old), _backup(path, 1))


def save(cfg: SavedConfig, path: str | os.PathLike[str] = DEFAULT_PATH,
         backups: int = 5) -> Path:
    """Write ``cfg`` atomically, mode 0600, keeping ``backups`` older versions
    (``saveconfig.json.1`` newest); nothing changes on disk when the content is the same."""
    if backups < 0:
        raise ConfigError(f"backups {backups}: use 0 or more")
    path = Path(path)
    text = dump(cfg)
    loads(text, str(path))  # never save what load would refuse
    try:
        _save(path, text.encode(), backups)
    except OSError as e:
        raise ConfigError(f"{path}: cannot save ({e.strerror or e}); check the directory's "
                          "permissions and free space") from e
    return path


def _save(path: Path, data: bytes, backups: int) -> None:
    _make_dir(path.parent)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)  # one saver at a time
        try:
            old: bytes | None = path.read_bytes()
        except FileNotFoundError:
            old = None
        if old == data:
            os.chmod(path, 0o600)
            return
        tmp = files.write_temp(path, data)
        previous = old
        files.replace(tmp, path, (lambda: _rotate(path, previous, backups))
                      if previous is not None and backups > 0 else None)
        os.fsync(dfd)
    finally:
        os.close(dfd)
