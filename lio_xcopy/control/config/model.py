"""The saved configuration's model: frozen dataclasses of what a restore recreates
(backstores, loopback and iSCSI exports, copy groups), and the schema's limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2
#: versions :func:`loads` still reads (1: ``loopback`` was ``{name: lun_id}``)
READABLE_VERSIONS = (1, 2)
DEFAULT_PATH = Path("/etc/lio-xcopy/saveconfig.json")
BLOCK_SIZES = (512, 1024, 2048, 4096)
MIN_TAPE_CAPACITY = 1 << 20
MAX_LUN = 65535  # rtslib's LUN and mapped-LUN limit
DEFAULT_ISCSI_PORT = 3260


@dataclass(frozen=True, slots=True)
class DiskConfig:
    """A disk LUN over a file or block device; ``wwn`` is its unit serial (a UUID)."""

    name: str
    path: Path
    size: int
    block_size: int = 512
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class TapeConfig:
    """A tape drive and its cartridge file; ``wwn`` is its unit serial (a UUID)."""

    name: str
    path: Path
    capacity: int
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class ChangerConfig:
    """The medium changer (SMC-3) LUN of a library directory."""

    name: str
    library: Path
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class LibraryDriveConfig:
    """Tape drive number ``drive`` of a library: its cartridges come from the changer."""

    name: str
    library: Path
    drive: int
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class PassThroughConfig:
    """A LUN forwarding to a device of the target host: ``device`` is its stable name
    (``/dev/tape/by-id/...`` or ``naa.<hex>``), ``designator`` the one it had when the
    LUN was made (a restore refuses a device that no longer carries it)."""

    name: str
    device: str
    designator: str | None = None
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class LoopbackTarget:
    """A tcm_loop target and its LUNs (LUN id -> backstore name). ``wwn`` None means
    the first loopback target, created when there is none."""

    wwn: str | None
    luns: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Portal:
    """An iSCSI network portal; ``netns`` names the network namespace it listens in
    (``ip netns``), None for the host's own."""

    ip: str
    port: int = DEFAULT_ISCSI_PORT
    netns: str | None = None


@dataclass(frozen=True, slots=True)
class Chap:
    """A CHAP user name and secret."""

    userid: str
    password: str = field(repr=False)  # never in a log line or a traceback


@dataclass(frozen=True, slots=True)
class MappedLun:
    """The LUN an initiator sees (``mapped_lun``) for a LUN of its TPG (``tpg_lun``)."""

    mapped_lun: int
    tpg_lun: int
    write_protect: bool = False


@dataclass(frozen=True, slots=True)
class Acl:
    """One initiator's access to a TPG; ``mutual_chap`` authenticates the target to it."""

    initiator: str
    mapped_luns: tuple[MappedLun, ...] = ()
    chap: Chap | None = None
    mutual_chap: Chap | None = None


@dataclass(frozen=True, slots=True)
class Tpg:
    """A target portal group: portals, LUNs (LUN id -> backstore name), ACLs, attributes."""

    tag: int
    enable: bool = True
    portals: tuple[Portal, ...] = ()
    luns: dict[int, str] = field(default_factory=dict)
    acls: tuple[Acl, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def authentication(self) -> bool:
        """Whether initiators must log in with CHAP."""
        return self.attributes.get("authentication", "0") == "1"


@dataclass(frozen=True, slots=True)
class IscsiTarget:
    """An iSCSI target and its portal groups."""

    iqn: str
    tpgs: tuple[Tpg, ...] = ()


@dataclass(frozen=True, slots=True)
class SavedConfig:
    """Everything a restore recreates. ``copy_groups`` maps a group name to the backstore
    names that may copy to each other, and the foreign devices (``foreign:naa.<hex>``,
    by designator) their copies may name."""

    disks: tuple[DiskConfig, ...] = ()
    tapes: tuple[TapeConfig, ...] = ()
    loopback: tuple[LoopbackTarget, ...] = ()
    iscsi: tuple[IscsiTarget, ...] = ()
    copy_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    changers: tuple[ChangerConfig, ...] = ()
    library_drives: tuple[LibraryDriveConfig, ...] = ()
    passthrough: tuple[PassThroughConfig, ...] = ()

    @property
    def backstores(self) -> tuple[Backstore, ...]:
        """Every LUN: disks, tapes, changers, library drives and pass-through LUNs."""
        return (*self.disks, *self.tapes, *self.changers, *self.library_drives,
                *self.passthrough)

    def loopback_luns(self) -> dict[str, tuple[str | None, int]]:
        """Backstore name -> (loopback target WWN, LUN id), first export of each."""
        out: dict[str, tuple[str | None, int]] = {}
        for t in self.loopback:
            for lun_id, name in sorted(t.luns.items()):
                out.setdefault(name, (t.wwn, lun_id))
        return out

    @property
    def has_secrets(self) -> bool:
        """Whether any ACL holds a CHAP password."""
        return any(c is not None and c.password
                   for t in self.iscsi for g in t.tpgs for a in g.acls
                   for c in (a.chap, a.mutual_chap))


Backstore = DiskConfig | TapeConfig | ChangerConfig | LibraryDriveConfig | PassThroughConfig


#: the kinds of :class:`Change` that are backstores (keyed ``("backstore", name)``)
BACKSTORE_KINDS = ("disk", "tape", "changer", "library_drive", "passthrough")


def kind_of(b: Backstore) -> str:
    """``disk``, ``tape``, ``changer``, ``library_drive`` or ``passthrough``."""
    return {DiskConfig: "disk", TapeConfig: "tape", ChangerConfig: "changer",
            LibraryDriveConfig: "library_drive", PassThroughConfig: "passthrough"}[type(b)]

__all__ = [
    "BACKSTORE_KINDS",
    "BLOCK_SIZES",
    "DEFAULT_ISCSI_PORT",
    "DEFAULT_PATH",
    "MAX_LUN",
    "MIN_TAPE_CAPACITY",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "Acl",
    "Backstore",
    "ChangerConfig",
    "Chap",
    "DiskConfig",
    "IscsiTarget",
    "LibraryDriveConfig",
    "LoopbackTarget",
    "MappedLun",
    "PassThroughConfig",
    "Portal",
    "SavedConfig",
    "TapeConfig",
    "Tpg",
    "kind_of",
]
