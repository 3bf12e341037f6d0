"""The administrator's tree, in the style of targetcli (configshell-fb nodes).

/backstores/disk, /backstores/tape, /backstores/passthrough   our LUNs (create, delete, info)
/backstores/changer, /backstores/library_drive   a cartridge library's changer and drives
/loopback/<naa>/luns                 tcm_loop targets and their LUN exports
/iscsi/<iqn>/tpg1/{portals,luns,acls} iSCSI targets, with CHAP per ACL
/copy_groups                         the saved file's copy groups (copy access policy)

Every command checks all of its values against LIO as it is now before it changes
anything; a refusal is one line saying what to do next. The tree is rebuilt from LIO
after each change.
"""

from __future__ import annotations

import glob
import inspect
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from configshell_fb import ConfigNode, ExecutionError

from lio_xcopy.control import backing, config, service
from lio_xcopy.control.shell import values
from lio_xcopy.control.shell.lio import Backstore, LiveLoopbackTarget, Snapshot
from lio_xcopy.devices.members import FOREIGN, foreign_member, is_designator_text
from lio_xcopy.errors import ConfigError

if TYPE_CHECKING:
    from lio_xcopy.devices.library import State as LibraryState


class Reported(Exception):
    """A command failed and has printed its own error line."""


def _complete(candidates: list[str] | tuple[str, ...], text: str) -> list[str]:
    """Candidates starting with ``text``; a single one gets its trailing space."""
    out = sorted(c for c in candidates if c.startswith(text))
    return [out[0] + " "] if len(out) == 1 and not out[0].endswith("/") else out


def _complete_path(text: str, want: Callable[[int], bool]) -> list[str]:
    """File names for ``file=``: directories (with /) and entries ``want(mode)`` accepts."""
    out = []
    for entry in glob.glob(glob.escape(text) + "*"):
        try:
            mode = os.stat(entry).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            out.append(entry + "/")
        elif want(mode):
            out.append(entry)
    out.sort(key=lambda s: "~" + s if s.endswith("/") else s)
    return [out[0] + " "] if len(out) == 1 and not out[0].endswith("/") else out


class UINode(ConfigNode):  # type: ignore[misc]  # configshell ships no types
    """Our base node: one-line parameter errors naming the command's syntax."""

    def __init__(self, name: str, parent: ConfigNode) -> None:
        super().__init__(name, parent)

    @property
    def root(self) -> Root:
        root: Root = self.get_root()
        return root

    @property
    def snap(self) -> Snapshot:
        return self.root.snapshot

    def fresh(self) -> Snapshot:
        """LIO as it is now (another admin may have changed it since the tree was built)."""
        return self.root.reload()

    def done(self, message: str) -> None:
        self.shell.log.info(message)
        self.root.refresh()

    def info_lines(self) -> list[str]:
        """What ``info`` shows: by default the node's path, summary and children."""
        text, _ = self.summary()
        lines = [f"path: {self.path}"]
        if text:
            lines.append(f"summary: {text}")
        return lines + [f"child: {c.name}" for c in sorted(self.children, key=lambda c: c.name)]

    def ui_command_info(self) -> None:
        """Shows what this node is: its settings, identity and what it holds."""
        for line in self.info_lines():
            self.shell.con.display(line)

    def execute_command(self, command: str, pparams: Sequence[str] = (),
                        kparams: dict[str, str] | None = None) -> Any:
        if command not in self.list_commands():
            raise ExecutionError(f"no command {command!r} at {self.path}: `{self.path} help` "
                                 "lists the commands there")
        return super().execute_command(command, list(pparams), dict(kparams or {}))

    def assert_params(self, method: Callable[..., Any], pparams: Sequence[str],
                      kparams: dict[str, str]) -> None:
        spec = inspect.getfullargspec(method)
        args = spec.args[1:]
        cmd = method.__name__.removeprefix(self.ui_command_method_prefix)
        required = args[: len(args) - len(spec.defaults or ())]
        syntax = " ".join([cmd, *required, *(f"[{a}]" for a in args[len(required):])])
        if spec.varkw is None:
            for k in kparams:
                if k not in args:
                    raise ExecutionError(f"{cmd}: unknown parameter {k}=; use {syntax} "
                                         f"(`help {cmd}`)")
        if spec.varargs is None and len(pparams) > len(args):
            raise ExecutionError(f"{cmd}: unexpected {pparams[len(args)]!r}; use {syntax}")
        for a in args[: len(pparams)]:
            if a in kparams:
                raise ExecutionError(f"{cmd}: {a} is given twice; give it once ({syntax})")
        for a in required[len(pparams):]:
            if a not in kparams:
                raise ExecutionError(f"{cmd}: {a}= is missing; use {syntax}")


# --- root -----------------------------------------------------------------------------------
class Root(UINode):
    """``/``: the tree's root, with the configuration commands."""

    def __init__(self, shell: Any, lio: Any) -> None:
        ConfigNode.__init__(self, "/", shell=shell)
        self.lio = lio
        self.snapshot = Snapshot()
        self.define_config_group_param(
            "global", "auto_save_on_exit", "bool",
            "If true, the interactive shell saves the configuration when it exits.")

    def reload(self) -> Snapshot:
        self.snapshot = self.lio.snapshot()
        return self.snapshot

    def refresh(self) -> None:
        """Rebuild the tree from LIO, keeping the shell where it was (or the nearest
        parent that still exists)."""
        here = self.shell._current_node.path if self.shell._current_node else "/"
        self.reload()
        self._children: set[ConfigNode] = set()
        Backstores(self)
        Loopback(self)
        Iscsi(self)
        CopyGroups(self)
        while True:
            try:
                self.shell._current_node = self.get_node(here)
                return
            except ValueError:
                here = here.rsplit("/", 1)[0] or "/"

    def summary(self) -> tuple[str, bool | None]:
        return "", None

    def ui_command_saveconfig(self, savefile: str | None = None) -> None:
        """
        Saves the LUNs, their loopback and iSCSI exports (and the copy groups already in
        the file) to savefile, atomically, mode 0600, keeping backups (savefile.1 ...).
        The default file is /etc/lio-xcopy/saveconfig.json; `restoreconfig` reads it
        back at boot.
        """
        _run_config("saveconfig", savefile)

    def ui_command_restoreconfig(self, savefile: str | None = None) -> None:
        """
        Recreates what savefile holds (default /etc/lio-xcopy/saveconfig.json); what
        exists already is left alone, so restoring twice is harmless.
        """
        try:
            _run_config("restoreconfig", savefile)
        finally:
            self.refresh()

    def ui_command_status(self) -> None:
        """
        Lists the LUNs, their backing and where they are exported (as
        `lio-xcopy status` does).
        """
        _run_config("status", None)

    def ui_command_version(self) -> None:
        """Prints lio-xcopy's version."""
        from lio_xcopy import __version__

        self.shell.con.display(__version__)

    def ui_command_refresh(self) -> None:
        """Reads the tree again from LIO (after changes made by others)."""
        self.refresh()

    def ui_command_clearconfig(self, confirm: str | None = None) -> None:
        """
        Deletes every LUN of ours (disks, tapes, pass-through LUNs, changers, library
        drives) with their exports, then every loopback and iSCSI target left without
        LUNs (with its portals and ACLs). Backing files, library directories and the
        saved file stay: `restoreconfig` brings it all back. Refused without
        confirm=true.
        """
        if confirm is None or not values.boolean(confirm, "confirm"):
            raise ConfigError("clearconfig deletes every LUN and target of lio-xcopy: type "
                              "`clearconfig confirm=true` to do it")
        gone = self.lio.clear()
        self.done(f"Cleared the configuration: deleted {len(gone)} object(s)"
                  + (f" ({', '.join(gone)})." if gone else "."))

    def ui_complete_clearconfig(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                                 current_param: str) -> list[str]:
        return _complete(["true"], text) if current_param == "confirm" else []

    def ui_complete_saveconfig(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                                current_param: str) -> list[str]:
        if current_param == "savefile":
            return _complete_path(text, stat.S_ISREG)
        return []

    ui_complete_restoreconfig = ui_complete_saveconfig


def _run_config(cmd: str, savefile: str | None) -> None:
    """saveconfig, restoreconfig and status print as the ``lio-xcopy`` subcommands do."""
    from lio_xcopy.control.commands import config_command

    if config_command(cmd, [savefile] if savefile else []) != 0:
        raise Reported(cmd)


# --- backstores -----------------------------------------------------------------------------
class Backstores(UINode):
    """``/backstores``: our LUNs, served by the lio-xcopy daemon."""

    def __init__(self, parent: UINode) -> None:
        super().__init__("backstores", parent)
        DiskStores(self)
        TapeStores(self)
        PassThroughStores(self)
        ChangerStores(self)
        LibraryDriveStores(self)


def _in_use(snap: Snapshot) -> list[backing.InUse]:
    return [backing.InUse(b.name, b.kind, b.path) for b in snap.backstores]


def _check_serial(snap: Snapshot, wwn: str | None) -> None:
    for b in snap.backstores:
        if wwn is not None and b.wwn.lower() == wwn:
            raise ConfigError(f"wwn={wwn} is already the unit serial of {b.kind} "
                              f"{b.name}: use a fresh UUID, or leave wwn= out")


class _Stores(UINode):
    kind = ""

    def __init__(self, parent: UINode) -> None:
        super().__init__(self.kind, parent)
        for b in self.snap.backstores:
            if b.kind == self.kind:
                BackstoreNode(b, self)

    def summary(self) -> tuple[str, bool | None]:
        return f"LUNs: {len(self.children)}", None

    def _check_new(self, snap: Snapshot, name: str, path: Path, wwn: str | None,
                   *, format: bool = False) -> None:  # noqa: A002
        values.name(name)
        if snap.backstore(name) is not None or name in snap.other_names:
            raise ConfigError(f"a LUN named {name!r} exists: choose another name, or "
                              f"delete it first")
        _check_serial(snap, wwn)
        if self.kind in ("disk", "tape"):
            backing.check(self.kind, path, _in_use(snap), format=format)

    def ui_command_delete(self, name: str) -> None:
        """
        Deletes the LUN named name and every export of it (loopback, iSCSI and their ACL
        mappings). The backing file stays.
        """
        b = self.fresh().backstore(name)
        if b is None or b.kind != self.kind:
            where = f": it is a {b.kind}, under /backstores/{b.kind}" if b else ""
            raise ConfigError(f"no {self.kind} named {name!r}{where}; `ls {self.path}` "
                              "lists them")
        self.root.lio.delete_backstore(name)
        self.done(f"Deleted {self.kind} {name}.")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "name":
            return _complete([c.name for c in self.children], text)
        return []


class DiskStores(_Stores):
    """``/backstores/disk``: disk LUNs (SBC-4) over a file or a block device."""

    kind = "disk"

    def ui_command_create(self, name: str, file: str, size: str | None = None,
                          block_size: str | None = None, wwn: str | None = None) -> None:
        """
        Creates a disk LUN named name over file: a regular file (created sparse when
        absent) or a block device.

        size: e.g. 10G (K, M, G, T = powers of 1024); defaults to the size of an
        existing file or device.
        block_size: 512 (default), 1024, 2048 or 4096.
        wwn: the unit serial number (a UUID); a fresh one by default.

        EXAMPLE
        =======
        create name=db0 file=/srv/db0.img size=10G
        """
        snap = self.fresh()
        bs = values.block_size(block_size) if block_size is not None else 512
        path = values.backing_path(file, block_ok=True)
        serial = values.unit_serial(wwn)
        self._check_new(snap, name, path, serial)
        have = values.existing_size(path)
        if size is None:
            if not have:
                raise ConfigError(f"size= is missing: {path} is new or empty; give e.g. "
                                  "size=10G")
            n = have - have % bs
        else:
            n = values.size(size, "size")
            if n % bs:
                raise ConfigError(f"size={size} is not a multiple of block_size={bs}: "
                                  "round it, e.g. to a whole MiB")
            if have is not None and stat.S_ISBLK(path.stat().st_mode) and n > have:
                raise ConfigError(f"size={size} is larger than {path} "
                                  f"({values.human(have)}): leave size= out to use all of it")
        self.root.lio.create_disk(name, path, n, bs, serial)
        self.done(f"Created disk {name} on {path} ({values.human(n)}, {bs}-byte blocks).")

    def ui_complete_create(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "file":
            return _complete_path(text or "/", lambda m: stat.S_ISREG(m) or stat.S_ISBLK(m))
        if current_param == "block_size":
            return _complete([str(b) for b in config.BLOCK_SIZES], text)
        if current_param == "size":
            return _complete([f"{text}{u}" for u in "MGT"] if text.isdigit() else [], text)
        return []


class TapeStores(_Stores):
    """``/backstores/tape``: tape drives (SSC-4) with their cartridge (an AWSTAPE file)."""

    kind = "tape"

    def ui_command_create(self, name: str, file: str, capacity: str, wwn: str | None = None,
                          format: str | None = None) -> None:  # noqa: A002
        """
        Creates a tape drive named name whose cartridge is file (an AWSTAPE file, created
        empty when absent). An existing file that is not a cartridge is refused:
        format=yes overwrites it with a blank cartridge. A library's cartridges are
        not taken (its drives are /backstores/library_drive).

        capacity: the cartridge's capacity, e.g. 100G (at least 1M).
        wwn: the unit serial number (a UUID); a fresh one by default.
        format: yes to erase file into a blank cartridge (no by default).

        EXAMPLE
        =======
        create name=tape0 file=/srv/tape0.aws capacity=100G
        """
        snap = self.fresh()
        n = values.size(capacity, "capacity")
        if n < config.MIN_TAPE_CAPACITY:
            raise ConfigError(f"capacity={capacity} is too small: use at least 1M")
        path = values.backing_path(file, block_ok=False)
        serial = values.unit_serial(wwn)
        erase = values.boolean(format, "format") if format is not None else False
        self._check_new(snap, name, path, serial, format=erase)
        if erase:
            self.root.lio.create_tape(name, path, n, serial, format=True)
        else:
            self.root.lio.create_tape(name, path, n, serial)
        self.done(f"Created tape {name} on {path} (capacity {values.human(n)}"
                  + (", formatted blank)." if erase else ")."))

    def ui_complete_create(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "file":
            return _complete_path(text or "/", stat.S_ISREG)
        if current_param == "capacity":
            return _complete([f"{text}{u}" for u in "MGT"] if text.isdigit() else [], text)
        if current_param == "format":
            return _complete(["yes", "no"], text)
        return []


class ChangerStores(_Stores):
    """``/backstores/changer``: the medium changer (SMC-3) of a cartridge library: a
    directory of AWSTAPE cartridges and its ``library.json``."""

    kind = "changer"

    def ui_command_create(self, name: str, library: str, slots: str | None = None,
                          ie_slots: str | None = None, drives: str | None = None,
                          capacity: str | None = None, barcodes: str | None = None,
                          wwn: str | None = None) -> None:
        """
        Creates the changer LUN named name of the library in directory library. When
        the directory holds no library yet, slots= makes one (as `lio-xcopy library DIR
        create` does): ie_slots import/export (mail) slots (0 by default), drives tape
        drives (1), cartridges of capacity (1G), and blank cartridges in the first
        slots: barcodes=6 (L00001L8 ...) or barcodes=L00001L8,L00002L8. Its drives are
        LUNs of their own: /backstores/library_drive create.

        EXAMPLE
        =======
        create name=lib0 library=/srv/lib slots=8 ie_slots=2 drives=2 barcodes=6
        """
        from lio_xcopy.control import library as lib_ops

        snap = self.fresh()
        path, serial = _new_library_lun(snap, name, library, wwn)
        for b in snap.backstores:
            if b.kind == "changer" and backing.same_file(b.path, path):
                raise ConfigError(f"library={path} already has changer {b.name!r}: a "
                                  "library has one changer")
            if b.kind not in backing.LIBRARY_KINDS and (
                    backing.same_file(b.path, path) or b.path.parent == path):
                raise ConfigError(f"library={path} holds the backing of {b.kind} {b.name!r}: "
                                  "give the library a directory of its own")
        layout = {"slots": slots, "ie_slots": ie_slots, "drives": drives,
                  "capacity": capacity, "barcodes": barcodes}
        made = None
        if (path / "library.json").is_file():
            given = [f"{k}=" for k, v in layout.items() if v is not None]
            if given:
                raise ConfigError(f"library={path} holds a library already: leave "
                                  f"{', '.join(given)} out to use it as it is")
        else:
            if slots is None:
                raise ConfigError(f"library={path} holds no library: add slots= (e.g. "
                                  "slots=8 drives=1 barcodes=4) to make one there")
            n_slots = values.number(slots, "slots", 1, 0xEFFF)
            cart = values.size(capacity, "capacity") if capacity is not None else 1 << 30
            if cart < config.MIN_TAPE_CAPACITY:
                raise ConfigError(f"capacity={capacity} is too small: use at least 1M")
            codes = values.barcodes(barcodes) if barcodes is not None else []
            if len(codes) > n_slots:
                raise ConfigError(f"barcodes={barcodes} gives {len(codes)} cartridges for "
                                  f"{n_slots} slots: add slots= or give fewer")
            made = path if not path.exists() else None
            lib_ops.create_library(
                path, slots=n_slots, capacity=cart, barcodes=codes,
                ie_slots=values.number(ie_slots, "ie_slots", 0, 0xF0) if ie_slots else 0,
                drives=values.number(drives, "drives", 1, 0xF00) if drives else 1)
        try:
            self.root.lio.create_changer(name, path, serial)
        except BaseException:
            if made is not None:  # undo the library we made
                import shutil

                shutil.rmtree(made, ignore_errors=True)
            raise
        self.done(f"Created changer {name} on {path} ({_library_text(path)}).")

    def ui_complete_create(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "library":
            return _complete_path(text or "/", lambda _m: False)
        if current_param in ("slots", "ie_slots", "drives", "barcodes"):
            return _complete([text] if text.isdigit() else [], text)
        if current_param == "capacity":
            return _complete([f"{text}{u}" for u in "MGT"] if text.isdigit() else [], text)
        return []


class LibraryDriveStores(_Stores):
    """``/backstores/library_drive``: a tape drive (SSC-4) of a cartridge library; it
    starts empty and takes the cartridges the changer moves into it."""

    kind = "library_drive"

    def ui_command_create(self, name: str, library: str, drive: str | None = None,
                          wwn: str | None = None) -> None:
        """
        Creates the tape LUN named name for drive number drive (0 for the first; the
        lowest one without a LUN by default) of the library in directory library.

        EXAMPLE
        =======
        create name=libtape0 library=/srv/lib drive=0
        """
        snap = self.fresh()
        path, serial = _new_library_lun(snap, name, library, wwn)
        count = len(_library_state(path).drives)
        taken = {b.drive: b.name for b in snap.backstores
                 if b.kind == "library_drive" and backing.same_file(b.path, path)}
        if drive is None:
            free = [i for i in range(count) if i not in taken]
            if not free:
                raise ConfigError(f"every drive of {path} has a LUN already "
                                  f"({', '.join(taken.values())}): nothing to create")
            n = free[0]
        else:
            n = values.number(drive, "drive", 0, max(count - 1, 0))
            if n >= count:
                raise ConfigError(f"drive={drive}: {path} has {count} drive(s)")
            if n in taken:
                raise ConfigError(f"drive {n} of {path} is LUN {taken[n]!r} already: "
                                  "give another drive=")
        self.root.lio.create_library_drive(name, path, n, serial)
        self.done(f"Created library_drive {name}: drive {n} of {path}.")

    def ui_complete_create(self, parameters: dict[str, str], text: str,
                            current_param: str) -> list[str]:
        if current_param == "library":  # the changers' libraries first, then directories
            libs = sorted({str(b.path) for b in self.snap.backstores if b.kind == "changer"})
            return _complete(libs, text) or _complete_path(text or "/", lambda _m: False)
        if current_param == "drive":
            lib = parameters.get("library")
            try:
                count = len(_library_state(Path(lib)).drives) if lib else 0
            except ConfigError:
                count = 0
            taken = {b.drive for b in self.snap.backstores
                     if b.kind == "library_drive" and lib and str(b.path) == lib}
            return _complete([str(i) for i in range(count) if i not in taken], text)
        return []


def _new_library_lun(snap: Snapshot, name: str, library: str,
                     wwn: str | None) -> tuple[Path, str | None]:
    """A changer's or library drive's name, directory and unit serial, checked."""
    values.name(name)
    if snap.backstore(name) is not None or name in snap.other_names:
        raise ConfigError(f"a LUN named {name!r} exists: choose another name, or "
                          "delete it first")
    path = values.library_path(library)
    serial = values.unit_serial(wwn)
    _check_serial(snap, serial)
    return path, serial


def _library_state(path: Path) -> LibraryState:
    """The library's state (``library.json``), or the one-line error saying it is not
    a library."""
    from lio_xcopy.devices.library import Library

    if not (path / "library.json").is_file():
        raise ConfigError(f"library={path} holds no library: create it first "
                          "(/backstores/changer create ... slots=N)")
    return Library.open(path).state()


def _library_text(path: Path) -> str:
    """``slots 8, drives 2, mail slots 2, cartridges 6``."""
    try:
        s = _library_state(path)
    except ConfigError as e:
        return f"unreadable: {e}"
    return (f"slots {len(s.slots)}, drives {len(s.drives)}, mail slots {len(s.ie)}, "
            f"cartridges {len(s.cartridges)}")


class PassThroughStores(_Stores):
    """``/backstores/passthrough``: a disk, tape drive or medium changer of this host,
    its commands forwarded with SG_IO."""

    kind = "passthrough"

    def ui_command_create(self, name: str, device: str) -> None:
        """
        Creates a LUN named name that passes through the SCSI device named device: a
        stable name, /dev/tape/by-id/... or /dev/disk/by-id/... (`ls -l /dev/tape/by-id`),
        or its designator naa.<hex>. It is found again by that name each time the daemon
        opens it, so /dev/sgN renumbering does not move it. A drive may be empty.

        EXAMPLE
        =======
        create name=drive0 device=/dev/tape/by-id/scsi-35000e11122334455-nst
        """
        snap = self.fresh()
        values.name(name)
        if snap.backstore(name) is not None or name in snap.other_names:
            raise ConfigError(f"a LUN named {name!r} exists: choose another name, or "
                              "delete it first")
        from lio_xcopy.sg.resolve import StableName

        StableName.parse(device)  # the one-line error for /dev/sg3 and the like
        if any(b.kind == self.kind and str(b.path) == device for b in snap.backstores):
            raise ConfigError(f"device={device} is already passed through: keep one LUN "
                              "per device")
        self.root.lio.create_passthrough(name, device)
        self.done(f"Created passthrough {name} on {device}.")

    def ui_complete_create(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "device":
            return _complete([str(p) for d in ("/dev/tape/by-id", "/dev/disk/by-id")
                              for p in sorted(Path(d).glob("*"))], text)
        return []


class BackstoreNode(UINode):
    """One LUN of ours."""

    def __init__(self, b: Backstore, parent: UINode) -> None:
        super().__init__(b.name, parent)
        self.b = b

    def summary(self) -> tuple[str, bool | None]:
        b = self.b
        exported = bool(self.snap.exports(b.name))
        state = "exported" if exported else "not exported"
        if b.kind == "passthrough":
            return f"{b.path} {state}", exported
        if b.kind == "changer":
            return f"{b.path} ({_library_text(b.path)}) {state}", exported
        if b.kind == "library_drive":
            return f"drive {b.drive} of {b.path} ({self._cartridge()}) {state}", exported
        size = (f"{values.human(b.size)}, {b.block_size}b" if b.kind == "disk"
                else f"capacity {values.human(b.size)}")
        return f"{b.path} ({size}) {state}", exported

    def _cartridge(self) -> str:
        try:
            place = _library_state(self.b.path).drives[self.b.drive or 0]
        except (ConfigError, IndexError):
            return "library unreadable"
        return f"{place.barcode} loaded" if place is not None else "empty"

    def info_lines(self) -> list[str]:
        """The LUN's settings, identity (unit serial, NAA) and exports."""
        from lio_xcopy.scsi.spc import naa_ieee_registered_extended

        b = self.b
        lines = [f"name: {b.name}", f"kind: {b.kind}"]
        if b.kind == "passthrough":  # the LUN answers with the device's identity
            lines.append(f"device: {b.path}")
        elif b.kind == "changer":
            lines += [f"library: {b.path}", *self._library_lines()]
        elif b.kind == "library_drive":
            lines += [f"library: {b.path}", f"drive: {b.drive}",
                      f"cartridge: {self._cartridge()}"]
        else:
            lines += [f"file: {b.path}",
                      f"{'size' if b.kind == 'disk' else 'capacity'}: {b.size} "
                      f"({values.human(b.size)})"]
            if b.block_size:
                lines.append(f"block_size: {b.block_size}")
        if b.kind != "passthrough":
            lines += [f"unit_serial: {b.wwn}",
                      f"naa: {naa_ieee_registered_extended(b.wwn).hex()}"]
        return lines + ([f"export: {e}" for e in self.snap.exports(b.name)]
                        or ["export: none"])

    def _library_lines(self) -> list[str]:
        """A changer's elements (SMC-3 addresses) and the cartridges in them."""
        from lio_xcopy.control import library as lib_ops

        try:
            s = _library_state(self.b.path)
            where = lib_ops.list_cartridges(self.b.path)
        except ConfigError as e:
            return [f"library: unreadable ({e})"]
        drive_luns = {b.drive: b.name for b in self.snap.backstores
                      if b.kind == "library_drive" and backing.same_file(b.path, self.b.path)}
        lines = [f"storage slots: {len(s.slots)}", f"mail slots (import/export): {len(s.ie)}",
                 f"drives: {len(s.drives)}"]
        lines += [f"drive {i}: LUN {drive_luns.get(i, 'none')}"
                  for i in range(len(s.drives))]
        lines.append(f"cartridges: {len(s.cartridges)}")
        lines += [f"cartridge {loc.barcode}: {loc.label} ({loc.address:#06x})"
                  for loc in where]
        lines.append(f"door: {'locked by a host' if s.prevent_removal else 'unlocked'}")
        return lines


# --- LUN exports (shared by loopback and iSCSI) ---------------------------------------------
class Luns(UINode):
    """``luns``: the LUNs a target exports (LUN id -> backstore)."""

    def __init__(self, parent: UINode, fabric: str, wwn: str, tag: int,
                 luns: dict[int, str]) -> None:
        super().__init__("luns", parent)
        self.fabric, self.wwn, self.tag, self.luns = fabric, wwn, tag, luns
        for lun_id, name in luns.items():
            LunNode(lun_id, name, self)

    def summary(self) -> tuple[str, bool | None]:
        return f"LUNs: {len(self.luns)}", None

    def _current(self, snap: Snapshot) -> dict[int, str]:
        if self.fabric == "loopback":
            lb = next((t for t in snap.loopback if t.wwn == self.wwn), None)
            if lb is not None:
                return lb.luns
        else:
            for t in snap.iscsi:
                for g in t.tpgs:
                    if t.iqn == self.wwn and g.tag == self.tag:
                        return g.luns
        raise ConfigError(f"{self.wwn} is gone: `refresh` and `ls` to see the targets")

    def ui_command_create(self, storage_object: str, lun: str | None = None) -> None:
        """
        Exports a LUN of ours through this target, as LUN id lun (the lowest free one by
        default). storage_object is /backstores/disk/NAME, /backstores/tape/NAME or NAME.
        On iSCSI, every ACL of the TPG gets it mapped too.

        EXAMPLE
        =======
        create storage_object=/backstores/disk/db0 lun=0
        """
        snap = self.fresh()
        luns = self._current(snap)
        name = storage_object
        kind = None
        if storage_object.startswith("/"):
            parts = storage_object.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "backstores" or parts[1] not in (
                "disk", "tape", "passthrough", "changer", "library_drive"
            ):
                raise ConfigError(f"storage_object={storage_object}: give "
                                  "/backstores/disk/NAME (or tape, passthrough, changer, "
                                  "library_drive for disk) or NAME")
            kind, name = parts[1], parts[2]
        b = snap.backstore(name)
        if b is None or (kind is not None and b.kind != kind):
            raise ConfigError(f"storage_object={storage_object}: no such LUN; "
                              "`ls /backstores` lists them")
        lun_id = values.number(lun.removeprefix("lun"), "lun", 0, config.MAX_LUN) \
            if lun is not None else None
        for lid, n in luns.items():
            if n == b.name:
                raise ConfigError(f"{b.name} is already LUN {lid} of {self.wwn}: nothing to do")
        if lun_id is not None and lun_id in luns:
            raise ConfigError(f"lun={lun_id} is taken by {luns[lun_id]} on {self.wwn}: choose "
                              "another or leave lun= out")
        if self.fabric == "loopback":
            got = self.root.lio.export_loopback(self.wwn, b.name, lun_id)
        else:
            got = self.root.lio.export_iscsi(self.wwn, self.tag, b.name, lun_id)
        self.done(f"Created LUN {got} of {self.wwn}: {b.kind} {b.name}.")

    def ui_complete_create(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "storage_object":
            paths = [f"/backstores/{b.kind}/{b.name}" for b in self.snap.backstores]
            return _complete(paths, text)
        if current_param == "lun":
            free = next(i for i in range(config.MAX_LUN + 1) if i not in self.luns)
            return _complete([str(free)], text)
        return []

    def ui_command_delete(self, lun: str) -> None:
        """
        Removes LUN lun (e.g. 0 or lun0) from this target, with its ACL mappings; the
        backstore stays.
        """
        lun_id = values.number(lun.removeprefix("lun"), "lun", 0, config.MAX_LUN)
        if lun_id not in self._current(self.fresh()):
            raise ConfigError(f"{self.wwn} has no LUN {lun_id}: `ls {self.path}` lists them")
        self.root.lio.unexport(self.fabric, self.wwn, self.tag, lun_id)
        self.done(f"Deleted LUN {lun_id} of {self.wwn}.")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "lun":
            return _complete([str(i) for i in self.luns], text)
        return []


class LunNode(UINode):
    def __init__(self, lun_id: int, name: str, parent: UINode) -> None:
        super().__init__(f"lun{lun_id}", parent)
        self.lun_id, self.so = lun_id, name

    def summary(self) -> tuple[str, bool | None]:
        b = self.snap.backstore(self.so)
        if b is None:
            return f"{self.so} (not a lio-xcopy LUN)", None
        return f"{b.kind}/{b.name} ({b.path})", True

    def info_lines(self) -> list[str]:
        b = self.snap.backstore(self.so)
        luns: Luns = self.parent
        lines = [f"lun: {self.lun_id}", f"target: {luns.wwn}", f"fabric: {luns.fabric}"]
        if b is None:
            return [*lines, f"backstore: {self.so} (not a lio-xcopy LUN)"]
        return [*lines, f"backstore: /backstores/{b.kind}/{b.name}", f"backing: {b.path}"]


# --- loopback -------------------------------------------------------------------------------
class Loopback(UINode):
    """``/loopback``: tcm_loop targets: the LUNs appear as SCSI devices on this host."""

    def __init__(self, parent: UINode) -> None:
        super().__init__("loopback", parent)
        for t in self.snap.loopback:
            LoopbackTargetNode(t, self)

    def summary(self) -> tuple[str, bool | None]:
        return f"Targets: {len(self.children)}", None

    def ui_command_create(self, wwn: str | None = None) -> None:
        """
        Creates a loopback target (naa. and 16 hex digits; a fresh one by default). Its
        LUNs are kept apart from other targets' by the copy access policy.
        """
        want = values.naa(wwn) if wwn is not None else None
        if want is not None and any(t.wwn == want for t in self.fresh().loopback):
            raise ConfigError(f"loopback target {want} exists: use it, or choose another wwn")
        got = self.root.lio.create_loopback(want)
        self.done(f"Created loopback target {got}.")

    def ui_command_delete(self, wwn: str) -> None:
        """Deletes a loopback target and its LUN exports (the backstores stay)."""
        want = values.naa(wwn)
        if not any(t.wwn == want for t in self.fresh().loopback):
            raise ConfigError(f"no loopback target {want}: `ls /loopback` lists them")
        self.root.lio.delete_loopback(want)
        self.done(f"Deleted loopback target {want}.")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "wwn":
            return _complete([c.name for c in self.children], text)
        return []


class LoopbackTargetNode(UINode):
    """A tcm_loop target: its LUNs appear as SCSI devices of this host."""

    def __init__(self, t: LiveLoopbackTarget, parent: UINode) -> None:
        super().__init__(t.wwn, parent)
        self.t = t
        Luns(self, "loopback", t.wwn, 1, t.luns)

    def summary(self) -> tuple[str, bool | None]:
        return f"LUNs: {len(self.t.luns)}", None

    def info_lines(self) -> list[str]:
        return [f"wwn: {self.t.wwn}", "fabric: loopback (tcm_loop), TPG 1",
                *(f"lun{i}: {n}" for i, n in sorted(self.t.luns.items()))]


# --- iSCSI ----------------------------------------------------------------------------------
class Iscsi(UINode):
    """``/iscsi``: iSCSI targets (RFC 7143) with explicit ACLs and optional CHAP."""

    def __init__(self, parent: UINode) -> None:
        super().__init__("iscsi", parent)
        for t in self.snap.iscsi:
            IscsiTargetNode(t, self)

    def summary(self) -> tuple[str, bool | None]:
        return f"Targets: {len(self.children)}", None

    def ui_command_create(self, iqn: str | None = None) -> None:
        """
        Creates an iSCSI target with TPG 1 (enabled; initiators need an ACL). Add
        portals, LUNs and ACLs under iqn/tpg1. A fresh iqn by default.

        EXAMPLE
        =======
        create iqn.2003-01.org.example.backup:t1
        """
        want = values.iqn(iqn, "iqn") if iqn is not None else None
        if want is not None and any(t.iqn == want for t in self.fresh().iscsi):
            raise ConfigError(f"iSCSI target {want} exists: use it, or choose another iqn")
        got = self.root.lio.create_iscsi(want)
        self.done(f"Created iSCSI target {got} with TPG 1.")

    def ui_command_delete(self, iqn: str) -> None:
        """Deletes an iSCSI target with its portals, ACLs and LUN exports."""
        want = values.iqn(iqn, "iqn")
        if not any(t.iqn == want for t in self.fresh().iscsi):
            raise ConfigError(f"no iSCSI target {want}: `ls /iscsi` lists them")
        self.root.lio.delete_iscsi(want)
        self.done(f"Deleted iSCSI target {want}.")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "iqn":
            return _complete([c.name for c in self.children], text)
        return []


class IscsiTargetNode(UINode):
    def __init__(self, t: config.IscsiTarget, parent: UINode) -> None:
        super().__init__(t.iqn, parent)
        for g in t.tpgs:
            TpgNode(t.iqn, g, self)

    def summary(self) -> tuple[str, bool | None]:
        return f"TPGs: {len(self.children)}", None

    def info_lines(self) -> list[str]:
        return [f"iqn: {self.name}", "fabric: iscsi",
                *(f"tpg: {c.name}" for c in sorted(self.children, key=lambda c: c.name))]


class TpgNode(UINode):
    def __init__(self, iqn: str, g: config.Tpg, parent: UINode) -> None:
        super().__init__(f"tpg{g.tag}", parent)
        self.iqn, self.tpg = iqn, g
        Portals(self)
        Luns(self, "iscsi", iqn, g.tag, g.luns)
        Acls(self)

    def summary(self) -> tuple[str, bool | None]:
        auth = "CHAP required" if self.tpg.authentication else "no CHAP"
        return (f"{'enabled' if self.tpg.enable else 'disabled'}, ACLs only, {auth}",
                self.tpg.enable)

    def info_lines(self) -> list[str]:
        g = self.tpg
        return [f"target: {self.iqn}", f"tpg: {g.tag}",
                f"enabled: {'yes' if g.enable else 'no'}",
                f"authentication: {'CHAP' if g.authentication else 'none'}",
                *(f"attribute {k}: {v}" for k, v in sorted(g.attributes.items())),
                *(f"portal: {_portal_name(p)}" for p in g.portals),
                *(f"lun{i}: {n}" for i, n in sorted(g.luns.items())),
                *(f"acl: {a.initiator} ({_auth(a)})" for a in g.acls)]


class Portals(UINode):
    """``portals``: the addresses the TPG listens on."""

    def __init__(self, parent: TpgNode) -> None:
        super().__init__("portals", parent)
        self.iqn, self.tag = parent.iqn, parent.tpg.tag
        self.portals = parent.tpg.portals
        for p in self.portals:
            PortalNode(p, self)

    def summary(self) -> tuple[str, bool | None]:
        return f"Portals: {len(self.portals)}", None

    def ui_command_create(self, ip_address: str, ip_port: str = "3260",
                          netns: str | None = None) -> None:
        """
        Listens on ip_address:ip_port (0.0.0.0 for every IPv4 address, :: for IPv6).
        netns: create the listening socket in that network namespace (`ip netns`).
        """
        ip = values.ip(ip_address)
        port = values.number(ip_port, "ip_port", 1, 65535)
        if netns is not None and not (Path("/run/netns") / netns).exists() \
                and not Path(netns).exists():
            raise ConfigError(f"netns={netns}: no such network namespace; create it with "
                              f"`ip netns add {netns}` or leave netns= out")
        if any((p.ip, p.port) == (ip, port) for p in self._now()):
            raise ConfigError(f"the TPG already listens on {ip} port {port}: nothing to do")
        self.root.lio.create_portal(self.iqn, self.tag, ip, port, netns)
        self.done(f"Created portal {ip}:{port} of {self.iqn}.")

    def ui_command_delete(self, ip_address: str, ip_port: str = "3260") -> None:
        """Stops listening on ip_address:ip_port."""
        ip = values.ip(ip_address)
        port = values.number(ip_port, "ip_port", 1, 65535)
        if not any((p.ip, p.port) == (ip, port) for p in self._now()):
            raise ConfigError(f"no portal {ip}:{port} on {self.iqn}: `ls {self.path}` "
                              "lists them")
        self.root.lio.delete_portal(self.iqn, self.tag, ip, port)
        self.done(f"Deleted portal {ip}:{port} of {self.iqn}.")

    def _now(self) -> tuple[config.Portal, ...]:
        return _tpg_now(self.fresh(), self.iqn, self.tag).portals

    def ui_complete_create(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "ip_address":
            return _complete(["0.0.0.0", "::", "127.0.0.1"], text)
        if current_param == "ip_port":
            return _complete(["3260"], text)
        return []


def _portal_name(p: config.Portal) -> str:
    return f"[{p.ip}]:{p.port}" if ":" in p.ip else f"{p.ip}:{p.port}"


def _own_netns() -> str:
    """The network namespace this shell runs in, as ``ip netns identify`` would name
    it, else its inode (``net:[4026531840]``)."""
    try:
        mine = os.stat("/proc/self/ns/net")
    except OSError:
        return "unknown"
    run = Path("/run/netns")
    for p in sorted(run.iterdir()) if run.is_dir() else ():
        try:
            st = p.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return p.name
    return f"net:[{mine.st_ino}]"


class PortalNode(UINode):
    """An address the TPG listens on. LIO does not record a portal's network
    namespace; it is the named one (``ip netns``) whose interfaces hold the address,
    or else this shell's own."""

    def __init__(self, p: config.Portal, parent: UINode) -> None:
        super().__init__(_portal_name(p), parent)
        self.p = p

    def _netns(self) -> str:
        if self.p.netns:
            return self.p.netns
        return f"{_own_netns()} (this host's; LIO does not record a portal's namespace)"

    def summary(self) -> tuple[str, bool | None]:
        return (f"netns {self.p.netns}" if self.p.netns else "", None)

    def info_lines(self) -> list[str]:
        return [f"ip_address: {self.p.ip}", f"ip_port: {self.p.port}",
                f"netns: {self._netns()}"]


def _tpg_now(snap: Snapshot, iqn: str, tag: int) -> config.Tpg:
    for t in snap.iscsi:
        for g in t.tpgs:
            if t.iqn == iqn and g.tag == tag:
                return g
    raise ConfigError(f"{iqn} tpg{tag} is gone: `refresh` and `ls /iscsi` to see the targets")


def _auth(acl: config.Acl) -> str:
    if acl.mutual_chap is not None:
        return "mutual CHAP"
    return "1-way CHAP" if acl.chap is not None else "no CHAP"


class Acls(UINode):
    """``acls``: the initiators allowed to log in, with their CHAP secrets."""

    def __init__(self, parent: TpgNode) -> None:
        super().__init__("acls", parent)
        self.iqn, self.tag = parent.iqn, parent.tpg.tag
        for a in parent.tpg.acls:
            AclNode(a, parent.tpg, self)

    def summary(self) -> tuple[str, bool | None]:
        return f"ACLs: {len(self.children)}", None

    def ui_command_create(self, initiator_iqn: str, userid: str | None = None,
                          password: str | None = None, mutual_userid: str | None = None,
                          mutual_password: str | None = None) -> None:
        """
        Lets initiator_iqn log in and see every LUN of the TPG. With userid= and
        password= it must authenticate with CHAP (RFC 7143 12.1.3); mutual_userid= and
        mutual_password= make the target authenticate to it too. Secrets are 1-255
        printable characters without spaces; once one initiator of a target uses CHAP,
        all must.

        EXAMPLE
        =======
        create iqn.1994-05.com.redhat:backup userid=backup password=s3cret-pass1
        """
        ini = values.iqn(initiator_iqn, "initiator_iqn", initiator=True)
        chap = values.chap_pair(userid, password, "")
        mutual = values.chap_pair(mutual_userid, mutual_password, "mutual_")
        if mutual is not None and chap is None:
            raise ConfigError("mutual_userid= needs userid= and password= too: the initiator "
                              "authenticates first")
        if chap is not None and mutual is not None and chap[1] == mutual[1]:
            raise ConfigError("password= and mutual_password= must differ (RFC 7143 12.1.3): "
                              "choose another mutual_password")
        g = _tpg_now(self.fresh(), self.iqn, self.tag)
        if any(a.initiator == ini for a in g.acls):
            raise ConfigError(f"{ini} already has an ACL on {self.iqn}: delete it first to "
                              "change its secrets")
        if chap is None and any(a.chap is not None for a in g.acls):
            raise ConfigError(f"{self.iqn}'s other initiators use CHAP: give userid= and "
                              "password= too")
        if chap is not None and any(a.chap is None for a in g.acls):
            raise ConfigError(f"{self.iqn} has initiators without CHAP: delete their ACLs "
                              "or create this one without userid=/password=")
        luns = self.root.lio.allow(self.iqn, ini, chap, mutual)
        auth = "mutual CHAP" if mutual else "1-way CHAP" if chap else "no CHAP"
        self.done(f"Created ACL for {ini} on {self.iqn} ({auth}, mapped LUNs: {len(luns)}).")

    def ui_command_delete(self, initiator_iqn: str) -> None:
        """Removes an initiator's ACL (its sessions end)."""
        ini = values.iqn(initiator_iqn, "initiator_iqn", initiator=True)
        if not any(a.initiator == ini for a in _tpg_now(self.fresh(), self.iqn, self.tag).acls):
            raise ConfigError(f"{ini} has no ACL on {self.iqn}: `ls {self.path}` lists them")
        self.root.lio.deny(self.iqn, ini)
        self.done(f"Deleted ACL for {ini} on {self.iqn}.")

    def ui_complete_delete(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "initiator_iqn":
            return _complete([c.name for c in self.children], text)
        return []


class AclNode(UINode):
    def __init__(self, acl: config.Acl, tpg: config.Tpg, parent: UINode) -> None:
        super().__init__(acl.initiator, parent)
        self.acl = acl
        for m in acl.mapped_luns:
            MappedLunNode(m, tpg.luns.get(m.tpg_lun, "?"), self)

    def summary(self) -> tuple[str, bool | None]:
        return f"Mapped LUNs: {len(self.acl.mapped_luns)}, {_auth(self.acl)}", None

    def info_lines(self) -> list[str]:
        """The initiator's CHAP user names; secrets show only as set or unset."""
        a = self.acl
        lines = [f"initiator: {a.initiator}"]
        for label, c in (("", a.chap), ("mutual_", a.mutual_chap)):
            lines.append(f"{label}userid: {c.userid if c else ''}")
            lines.append(f"{label}password: {'set' if c and c.password else 'unset'}")
        lines += [f"mapped_lun{m.mapped_lun}: tpg lun{m.tpg_lun}"
                  f"{' (read-only)' if m.write_protect else ''}" for m in a.mapped_luns]
        return lines


class MappedLunNode(UINode):
    def __init__(self, m: config.MappedLun, name: str, parent: UINode) -> None:
        super().__init__(f"mapped_lun{m.mapped_lun}", parent)
        self.m, self.so = m, name

    def summary(self) -> tuple[str, bool | None]:
        return f"lun{self.m.tpg_lun} {self.so} ({'ro' if self.m.write_protect else 'rw'})", True

    def info_lines(self) -> list[str]:
        return [f"mapped_lun: {self.m.mapped_lun}", f"tpg_lun: {self.m.tpg_lun}",
                f"backstore: {self.so}",
                f"access: {'read-only' if self.m.write_protect else 'read-write'}"]


# --- copy groups ----------------------------------------------------------------------------
class CopyGroups(UINode):
    """``/copy_groups``: groups of LUNs that may copy to each other even when exported to
    different initiators. They live only in the saved file; the daemon reads them at
    start and on reload, which `create` and `delete` ask of a running daemon."""

    def __init__(self, parent: UINode) -> None:
        super().__init__("copy_groups", parent)
        self.note = ""
        try:
            cfg = _load(None)
        except ConfigError as e:
            self.note = str(e)
            return
        for name, members in cfg.copy_groups.items():
            CopyGroupNode(name, members, self)

    def summary(self) -> tuple[str, bool | None]:
        if self.note:
            return "saved file unreadable", False
        return f"Groups: {len(self.children)}", None

    def ui_command_create(self, name: str, members: str, savefile: str | None = None) -> None:
        """
        Adds copy group name to the saved file (default /etc/lio-xcopy/saveconfig.json):
        its members (comma separated) may be named together in one EXTENDED COPY. A
        member is a LUN already saved with `saveconfig`, or a SCSI device this daemon
        does not serve, by a stable name (/dev/disk/by-id/..., /dev/tape/by-id/...) or
        its designator (naa.<hex>, ...): the file records its designator
        (foreign:naa.<hex>), never its /dev/sgN. A running daemon is asked to reload
        (SIGHUP, as `systemctl reload lio-xcopy`) and applies it at once.

        EXAMPLE
        =======
        create name=nightly members=db0,tape0
        create name=offsite members=tape0,/dev/disk/by-id/wwn-0x6001405f00d0000
        """
        values.name(name)
        group = tuple(_copy_group_member(m) for m in values.members(members))
        path = Path(savefile) if savefile else config.DEFAULT_PATH
        cfg = _load(savefile)
        if name in cfg.copy_groups:
            raise ConfigError(f"copy group {name!r} exists in {path}: delete it first, or "
                              "choose another name")
        if len(set(group)) < len(group):
            raise ConfigError(f"members={members!r} names one device twice; keep one")
        saved = {b.name for b in cfg.backstores}
        luns = [m for m in group if not m.startswith(FOREIGN)]
        if not luns:
            raise ConfigError(f"members={members!r}: a copy group needs a LUN of ours, which "
                              "receives the copies")
        for m in luns:
            if m not in saved:
                raise ConfigError(f"LUN {m!r} is not in {path}: create it and `saveconfig` "
                                  "first (copy groups name saved LUNs)")
        config.save(replace(cfg, copy_groups={**cfg.copy_groups, name: group}), path)
        self.done(f"Saved copy group {name} ({', '.join(group)}) in {path}; "
                  + _applied(savefile))

    def ui_command_delete(self, name: str, savefile: str | None = None) -> None:
        """Removes copy group name from the saved file; a running daemon reloads it."""
        path = Path(savefile) if savefile else config.DEFAULT_PATH
        cfg = _load(savefile)
        if name not in cfg.copy_groups:
            raise ConfigError(f"no copy group {name!r} in {path}: `ls /copy_groups` lists "
                              "the default file's")
        groups = {k: v for k, v in cfg.copy_groups.items() if k != name}
        config.save(replace(cfg, copy_groups=groups), path)
        self.done(f"Deleted copy group {name} from {path}; " + _applied(savefile))

    def ui_complete_create(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "members":
            head, _, tail = text.rpartition(",")
            prefix = f"{head}," if head else ""
            taken = set(head.split(",")) if head else set()
            if tail.startswith("/"):  # a foreign device by a stable name
                return [f"{prefix}{p}" for p in _complete_path(
                    tail, lambda mode: stat.S_ISBLK(mode) or stat.S_ISCHR(mode))]
            return sorted(f"{prefix}{b.name}" for b in self.snap.backstores
                          if b.name.startswith(tail) and b.name not in taken)
        if current_param == "savefile":
            return _complete_path(text or "/", stat.S_ISREG)
        return []

    def ui_complete_delete(self, parameters: dict[str, str], text: str,  # noqa: ARG002
                            current_param: str) -> list[str]:
        if current_param == "name":
            return _complete([c.name for c in self.children], text)
        return []


def _copy_group_member(m: str) -> str:
    """A LUN name as it is; a foreign device (a node path or a designator) as
    ``foreign:`` and its designator."""
    if m.startswith(FOREIGN):
        return foreign_member(m[len(FOREIGN):])
    if m.startswith("/") or is_designator_text(m):
        from lio_xcopy.devices.foreign import admit_name

        return foreign_member(admit_name(m))
    return m


def _applied(savefile: str | None) -> str:
    """After a copy group changed: the daemon reads the default saved file, so it is
    asked to reload; another file is only a file."""
    if savefile and Path(savefile).resolve() != config.DEFAULT_PATH.resolve():
        return f"the daemon reads {config.DEFAULT_PATH}, not this file."
    return service.reload_daemon() + "."


def _load(savefile: str | None) -> config.SavedConfig:
    path = Path(savefile) if savefile else config.DEFAULT_PATH
    return config.load(path) if path.exists() else config.SavedConfig()


class CopyGroupNode(UINode):
    def __init__(self, name: str, members: tuple[str, ...], parent: UINode) -> None:
        super().__init__(name, parent)
        self.members = members

    def summary(self) -> tuple[str, bool | None]:
        return ", ".join(self.members), None
