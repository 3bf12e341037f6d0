"""Our handler's configuration string (a storage object's control string) and the sizes in it.

A storage object's config is ``xcopy/<kind>;<path>[;key=value...]``, e.g.
``xcopy/disk;/srv/db0.img;block_size=512`` or ``xcopy/tape;/srv/tape0.aws;capacity=1G``.
(The kernel splits its control string at commas and rtslib refuses colons.)

A library: ``xcopy/changer;/srv/lib`` is the medium changer of the library directory
``/srv/lib``, and ``xcopy/tape;/srv/lib;drive=0`` its first drive, a tape LUN that
starts empty and takes the cartridges the changer moves into it.

A pass-through LUN: ``xcopy/passthrough;/dev/tape/by-id/scsi-...-nst;id=naa.<hex>;type=1``
forwards its commands to the device that stable name (or a designator in place of the
path, ``xcopy/passthrough;naa.<hex>;type=8``) names when the daemon opens it; ``id``
is the designator it had when the LUN was made, ``type`` its peripheral device type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lio_xcopy.errors import ConfigError

#: the TCMU subtype of our storage objects: their config string is ``xcopy/<kind>;...``
SUBTYPE = "xcopy"
#: a designator's text form that names a pass-through device in place of a path
#: (SPC-4 7.8.6: NAA or EUI-64, written ``naa.<hex>`` or ``eui.<hex>``)
DESIGNATOR = re.compile(r"(naa|eui)\.([0-9a-fA-F]{16}|[0-9a-fA-F]{32})")
KINDS = ("disk", "tape", "changer", "passthrough")
#: The kernel's per-command limit we configure (hw_max_sectors, 512-byte sectors).
HW_MAX_SECTORS = 8192
MAX_TRANSFER_BYTES = HW_MAX_SECTORS * 512
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``64M`` -> 67108864; plain numbers are bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _SUFFIX and not t[-1:].isdigit() else ""
    try:
        value = int(t[: len(t) - len(unit)], 0)
    except ValueError as e:
        raise ConfigError(f"size {text!r} is not a number: use e.g. 512, 64M or 10G") from e
    if value < 0:
        raise ConfigError(f"size {text!r} is negative")
    return value * _SUFFIX[unit]


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    kind: str
    path: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, cfg: str) -> HandlerConfig:
        kind, sep, rest = cfg.partition(";")
        if not sep or kind not in KINDS:
            raise ConfigError(
                f"handler config {cfg!r}: expected <kind>;<path>[;key=value] with kind in "
                f"{', '.join(KINDS)}"
            )
        path, *opts = rest.split(";")
        if not path.startswith("/") and not (kind == "passthrough" and DESIGNATOR.fullmatch(path)):
            raise ConfigError(f"handler config {cfg!r}: the path must be absolute")
        options = {}
        for o in opts:
            k, eq, v = o.partition("=")
            if not eq or not k:
                raise ConfigError(f"handler config {cfg!r}: option {o!r} is not key=value")
            options[k] = v
        return cls(kind, path, options)

    def format(self) -> str:
        for text in (self.path, *self.options.values()):
            if any(c in text for c in ",:;\n"):
                raise ConfigError(f"{text!r}: commas, colons, semicolons and newlines "
                                  "cannot be passed to the kernel; rename or link the file")
        opts = (f"{k}={v}" for k, v in self.options.items())
        return ";".join([self.kind, self.path, *opts])
