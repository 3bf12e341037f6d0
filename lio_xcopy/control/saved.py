"""Saving what runs and restoring it: between LIO (through rtslib) and the saved file.

``running()`` reads our storage objects and their loopback exports back from configfs;
``restore(cfg)`` recreates what is missing, create-or-lookup, so restoring twice
changes nothing. Errors are collected and reported together, as rtslib's targetctl
does, and a LUN whose backing file is gone is refused rather than recreated empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from lio_xcopy.control import config, provision
from lio_xcopy.errors import ConfigError
from lio_xcopy.tcmu.handler import HandlerConfig, parse_size
from lio_xcopy.tcmu.uio import SUBTYPE


def running(keep_from: config.SavedConfig | None = None) -> config.SavedConfig:
    """The configuration LIO holds now. Copy groups live only in the saved file, so they
    are carried over from ``keep_from``."""
    rts = provision._rtslib()
    disks, tapes = [], []
    for so in rts.RTSRoot().storage_objects:
        if so.plugin != "user" or not (so.config or "").startswith(f"{SUBTYPE}/"):
            continue
        hc = HandlerConfig.parse(so.config.split("/", 1)[1])
        if hc.kind == "disk":
            disks.append(config.DiskConfig(so.name, Path(hc.path), so.size,
                                           int(hc.options.get("block_size", "512")), so.wwn))
        else:
            tapes.append(config.TapeConfig(so.name, Path(hc.path),
                                           parse_size(hc.options.get("capacity", "1G")),
                                           so.wwn))
    loopback: dict[str, int] = {}
    for target in rts.FabricModule("loopback").targets:
        for tpg in target.tpgs:
            for lun in tpg.luns:
                loopback.setdefault(lun.storage_object.name, lun.lun)
    names = {d.name for d in disks} | {t.name for t in tapes}
    return config.SavedConfig(
        tuple(sorted(disks, key=lambda d: d.name)), tuple(sorted(tapes, key=lambda t: t.name)),
        {k: v for k, v in loopback.items() if k in names},
        keep_from.iscsi if keep_from else (),
        dict(keep_from.copy_groups) if keep_from else {},
    )


def save(path: Path = config.DEFAULT_PATH, backups: int = 5) -> config.SavedConfig:
    """Write the running configuration to ``path`` (atomically, with backups)."""
    previous = config.load(path) if path.exists() else None
    cfg = running(previous)
    config.save(cfg, path, backups=backups)
    return cfg


@dataclass
class RestoreReport:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def restore(cfg: config.SavedConfig) -> RestoreReport:
    """Recreate every LUN and loopback export of ``cfg`` that LIO does not hold."""
    provision.ensure_configfs()
    report = RestoreReport()
    now = running()
    have = {b.name: b for b in now.backstores}
    luns: dict[str, provision.Lun] = {}
    for b in cfg.backstores:
        kind = "disk" if isinstance(b, config.DiskConfig) else "tape"
        if b.name in have:
            if replace(have[b.name], wwn=b.wwn or have[b.name].wwn) != b:
                report.errors.append(f"{kind} {b.name}: exists with other settings; delete it "
                                     "or edit the saved file")
                continue
            report.present.append(f"{kind} {b.name}")
        elif kind == "disk" and not os.path.exists(b.path):
            report.errors.append(f"disk {b.name}: backing {b.path} is missing; restore the "
                                 "file first, or remove the LUN from the saved file")
            continue
        try:
            if isinstance(b, config.DiskConfig):
                lun = provision.create_disk(b.name, b.path, b.size, b.block_size, b.wwn)
            else:
                lun = provision.create_tape(b.name, b.path, b.capacity, b.wwn)
        except (ConfigError, OSError) as e:
            report.errors.append(f"{kind} {b.name}: {e}")
            continue
        luns[b.name] = lun
        if b.name not in have:
            report.created.append(f"{kind} {b.name}")
    for name, lun_id in sorted(cfg.loopback.items()):
        if name not in luns:
            continue
        if name in now.loopback:
            report.present.append(f"loopback {name} lun {now.loopback[name]}")
            continue
        try:
            got = provision.export_loopback(luns[name], lun_id)
        except Exception as e:  # rtslib raises RTSLibError and OSError
            report.errors.append(f"loopback {name}: {e}")
            continue
        report.created.append(f"loopback {name} lun {got}")
    return report
