"""The jobs of ``lio-xcopy backup`` and ``lio-xcopy restore``: serverless backups from
the backup server, recorded in the catalog (the command line is
:mod:`lio_xcopy.initiator.backup_cli`, the tape drive's commands
:mod:`lio_xcopy.initiator.drive`, the display :mod:`lio_xcopy.initiator.progress`).

A backup loads the cartridge (SMC-3 MOVE MEDIUM slot -> drive, then TEST UNIT READY
until the drive is ready), goes to end of data (SSC-4 SPACE, code 011b; the tape file
number and logical object from READ POSITION long form), and has the target's copy
manager write the whole tape file in one EXTENDED COPY: locate (12h), a label record
from inline data (04h, :mod:`lio_xcopy.initiator.label`), the disk range (00h) and the
closing filemark (10h), SPC-4 6.4.6, while COPY STATUS drives a progress bar. A copy
manager whose OPERATING PARAMETERS lack those types gets the 00h segments alone and
the filemark from the backup server. The job reads the copy's digest (XXH3-128 or
SHA-256, as the target's daemon is set) from the copy manager and is recorded with its
algorithm and the label's length. The data never crosses the backup server. A restore
finds the cartridge and tape file in the catalog, loads and positions the tape (REWIND,
SPACE filemarks), copies tape -> disk the same way (a label read into the first block
restored, then overwritten by the data) and checks the copy's digest against the
catalog's when both are of one algorithm.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, NamedTuple

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.initiator.catalog import (
    BACKUP,
    DONE,
    FAILED,
    RESTORE,
    Catalog,
    Job,
    Terminated,
    size,
)
from lio_xcopy.initiator.changer import (
    UNIT_ATTENTION_RETRIES,
    Changer,
    ChangerError,
    ElementStatus,
    Inventory,
    wait_ready,
)
from lio_xcopy.initiator.copy import (
    DEFAULT_RECORD,
    AnyCopyStatus,
    CopyRequest,
    Endpoint,
    ask_before_stopping,
    build,
    copy_status,
    identify,
    operating_parameters,
    send_and_poll,
    status_of,
    supports_lid4,
)
from lio_xcopy.initiator.drive import BackupError, InitiatorDrive, append_position, locate_file
from lio_xcopy.initiator.label import BackupLabel
from lio_xcopy.initiator.progress import Display, Progress
from lio_xcopy.scsi import spc, xcopy
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.scsi.smc import ElementType
from lio_xcopy.scsi.xcopy import CopyCommandStatus
from lio_xcopy.sg import sgio
from lio_xcopy.sg.transport import ScsiTransport

#: List identifiers tried when the copy manager says one is in use (OPERATION IN PROGRESS).
LIST_ID_ATTEMPTS = 4


# --- the copy's digest -----------------------------------------------------------------------
class Digest(NamedTuple):
    """A copy's digest as the catalog keeps it."""

    algorithm: str  # xcopy.DigestAlgorithm's label: xxh3-128, sha256
    hex: str

    @property
    def title(self) -> str:
        return xcopy.DigestAlgorithm.named(self.algorithm).title


def copy_digest(dev: ScsiTransport, list_id: int) -> xcopy.CopyDigest | None:
    """The digest of a finished copy (bytes digested, algorithm, digest), from the LUN
    that received the EXTENDED COPY (lio-xcopy's vendor-specific RECEIVE COPY DIGEST,
    docs/copy-digest.md); None from a copy manager that does not have it."""
    n = xcopy.CopyDigest.LENGTH
    try:
        r = dev.execute(xcopy.ReceiveCopyDigest(list_identifier=list_id,
                                                allocation_length=n).encode(),
                        data_in=n, timeout=60)
    except sgio.ScsiCommandError as e:
        if e.key == SenseKey.ILLEGAL_REQUEST and e.asc == Asc.INVALID_COMMAND_OPERATION_CODE:
            return None
        raise
    d = xcopy.parse_copy_digest(r.data)
    if d.status != CopyCommandStatus.COMPLETED:
        raise BackupError(f"the copy manager reports the copy unfinished (status "
                          f"{d.status:#04x}): its digest is not final")
    return d


# --- finding devices -------------------------------------------------------------------------
@dataclass
class Devices:
    """How this run reaches SCSI devices: ``opener`` opens a node (tests give a fake) and
    ``sysfs`` is where tape drives are looked for by NAA."""

    opener: Callable[[str], ScsiTransport] = sgio.SgIoDevice
    sysfs: str = "/sys"
    _open: list[ScsiTransport] = field(default_factory=list)

    def open(self, path: str) -> ScsiTransport:
        """Open a device and take the unit attentions it holds for this I_T nexus (LUNs
        added, power on, a new cartridge: SPC-4 5.9) with TEST UNIT READY, so that
        the job's first real command is not refused for them; NOT READY is left for
        the job to handle."""
        dev = self.opener(self.sg_node(path))
        self._open.append(dev)
        dev.take_unit_attentions(UNIT_ATTENTION_RETRIES)
        return dev

    def sg_node(self, path: str) -> str:
        """The sg node of a device (st allows one open, and the copy needs a second
        handle to poll COPY STATUS): /dev/nst0 -> /dev/sgN."""
        try:
            sg = sgio.scsi_nodes(path, sysfs_root=self.sysfs).sg
        except sgio.SgIoError:
            return path
        return str(sg) if sg is not None and sg.exists() else path

    def tapes(self) -> list[str]:
        """The sg nodes of every tape device this host sees."""
        out = []
        for d in sorted(Path(self.sysfs, "bus", "scsi", "devices").glob("*:*:*:*")):
            try:
                if (d / "type").read_text().strip() != str(spc.TYPE_TAPE):
                    continue
                sg = next(iter((d / "scsi_generic").iterdir()), None)
            except OSError:
                continue
            if sg is not None:
                out.append(f"/dev/{sg.name}")
        return out

    def find_tape(self, naa: bytes) -> str | None:
        for path in self.tapes():
            try:
                with self.opener(path) as dev:
                    if dev.naa() == naa:
                        return path
            except sgio.SgIoError:
                continue
        return None

    def close(self) -> None:
        while self._open:
            self._open.pop().close()

    def __enter__(self) -> Devices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _naa(dev: ScsiTransport, what: str) -> bytes:
    naa = dev.naa()
    if naa is None:
        raise BackupError(f"{dev.path} ({what}) reports no NAA designator in VPD page 83h: "
                          "the catalog cannot name it")
    return naa


@dataclass
class InitiatorLibrary:
    """A changer and the drive a job uses in it, as the initiator reaches them."""

    changer: Changer
    inventory: Inventory
    drive_element: ElementStatus


def _drive_in_library(devs: Devices, changer: Changer, inv: Inventory,
                      drive_path: str | None, want: str | None) -> tuple[str, ElementStatus]:
    """The drive to use: ``--drive`` (matched to its element by NAA), else the drive
    holding cartridge ``want``, else the first empty drive this host can reach."""
    if drive_path is not None:
        dev = devs.open(drive_path)
        naa = _naa(dev, "the drive")
        serial = None
        with contextlib.suppress(sgio.SgIoError):
            serial = dev.unit_serial_number()
        el = inv.drive_for(naa, serial)
        if el is None:
            raise BackupError(f"{changer.path} has no drive with NAA {naa.hex()}: is "
                              f"{drive_path} a drive of this library? (`mtx status`)")
        return drive_path, el
    order = sorted(inv.drives, key=lambda e: (not (want and e.barcode == want), e.full))
    for el in order:
        if el.full and el.barcode != want:
            continue
        if el.identifier is None or el.identifier.designator_type != 3:
            continue
        path = devs.find_tape(el.identifier.value)
        if path is not None:
            return path, el
    raise BackupError(f"no empty drive of {changer.path} is reachable from this host: give "
                      "--drive /dev/sgN (or unload a drive: mtx unload)")


def load(lib: InitiatorLibrary, drive: InitiatorDrive, slot: ElementStatus, out: IO[str]) -> None:
    """MOVE MEDIUM slot -> drive (SMC-3 6.9); a drive that holds another cartridge gives
    it back to its slot first. Then the changer must report the cartridge in the drive."""
    inv, el = lib.inventory, lib.drive_element
    _refuse_other_drive(lib, slot)
    if _in_drive(slot):
        return
    if el.full:
        back = el.source if el.source is not None else (inv.free_slot() or slot).address
        print(f"unloading {el.barcode or 'the cartridge'} from the drive to element "
              f"{back:#06x}", file=out)
        drive.unload()
        lib.changer.move(el.address, back, inv)
    print(f"loading {slot.barcode or 'the cartridge'} from slot "
          f"{inv.slot_number(slot.address)} into drive {inv.drive_number(el.address)}",
          file=out)
    lib.changer.move(slot.address, el.address, inv)
    now = next((d for d in lib.changer.inventory().drives if d.address == el.address), None)
    if now is None or not now.full or (slot.barcode and now.barcode != slot.barcode):
        raise BackupError(f"after MOVE MEDIUM the changer does not report "
                          f"{slot.barcode or 'the cartridge'} in the drive: check the library "
                          "(`mtx status`)")


def _refuse_other_drive(lib: InitiatorLibrary, slot: ElementStatus) -> None:
    """A cartridge already in a drive can only be used there."""
    if _in_drive(slot) and slot.address != lib.drive_element.address:
        raise BackupError(
            f"{slot.barcode or 'the cartridge'} is in drive "
            f"{lib.inventory.drive_number(slot.address)}, not in the drive chosen: give that "
            "drive with --drive, or unload it first (mtx unload)")


def _refuse_not_tape(dev: ScsiTransport) -> None:
    if dev.peripheral_device_type() != spc.TYPE_TAPE:
        raise BackupError(f"{dev.path} is not a tape drive: give the drive's /dev/sgN or "
                          "/dev/nstN with --drive (`lsscsi -g`)")


@contextlib.contextmanager
def _unload_afterwards(unload: bool,  # noqa: FBT001
                       lib: InitiatorLibrary, drive: InitiatorDrive, cartridge: ElementStatus,
                       copy_dev: ScsiTransport, cat: Catalog, job: Job,
                       out: IO[str]) -> Iterator[None]:
    """With ``--unload``, put the cartridge back in its slot after the job, whether it
    succeeded or failed; not while the job's copy still runs on the target (an
    interrupted job's, or one whose EXTENDED COPY lost its answer): that is said
    instead."""
    try:
        yield
    except Exception:
        if unload:
            _unload_after_failure(lib, drive, cartridge, copy_dev, cat.job(job.id).list_id,
                                  out)
        raise
    if unload:
        unload_to(lib, drive, _home(cartridge), out)


def _unload_after_failure(lib: InitiatorLibrary, drive: InitiatorDrive, cartridge: ElementStatus,
                          copy_dev: ScsiTransport, list_id: int | None,
                          out: IO[str]) -> None:
    if list_id is not None:
        with contextlib.suppress(sgio.SgIoError):
            if copy_status(copy_dev, list_id).status == CopyCommandStatus.IN_PROGRESS:
                print("the job failed but its copy still runs on the target: the cartridge "
                      "stays in the drive (unload it when the copy ends: mtx unload)",
                      file=out)
                return
    try:
        home = _home(cartridge)
        now = next((d for d in lib.changer.inventory().drives
                    if d.address == lib.drive_element.address), None)
        if now is None or not now.full:
            return  # nothing was loaded
        print("the job failed: unloading the cartridge (--unload)", file=out)
        unload_to(lib, drive, home, out)
    except (LioXcopyError, ChangerError, sgio.SgIoError) as e:
        print(f"the job failed, and so did --unload: {e}; unload by hand (mtx unload)",
              file=out)


def _in_drive(el: ElementStatus) -> bool:
    return el.element_type == ElementType.DATA_TRANSFER


def _home(el: ElementStatus) -> int:
    """Where a cartridge goes back to: its slot, or for one found in a drive the slot
    the changer says it came from."""
    if _in_drive(el) and el.source is not None:
        return el.source
    if _in_drive(el):
        raise BackupError("the changer does not say which slot the cartridge came from: "
                          "unload it by hand (mtx unload SLOT DRIVE)")
    return el.address


def unload_to(lib: InitiatorLibrary, drive: InitiatorDrive, address: int, out: IO[str]) -> None:
    drive.unload()
    lib.changer.move(lib.drive_element.address, address)
    print(f"unloaded the cartridge to slot {lib.inventory.slot_number(address)}", file=out)


def wait_for_interrupted_copies(cat: Catalog, devs: Devices, drive_naa: bytes, out: IO[str],
                                sleep: Callable[[float], None] = time.sleep) -> None:
    """A job killed during its EXTENDED COPY leaves the copy running on the target: the
    copy manager goes on writing to the drive. Before the drive is positioned for a new
    job, wait for every such copy of a failed job on this drive (COPY STATUS on the LUN
    that received it, SPC-4 r31 6.18.3) to end."""
    recent = time.time() - 24 * 3600
    for old in cat.jobs(state=FAILED):
        if old.drive_naa != drive_naa.hex() or old.list_id is None or (old.ended or 0) < recent:
            continue
        path, naa = (old.disk, old.disk_naa) if old.kind == BACKUP else (old.drive,
                                                                         old.drive_naa)
        try:
            dev = devs.open(path)
            if dev.naa() != bytes.fromhex(naa):
                continue
        except (sgio.SgIoError, ValueError):
            continue
        said = False
        while True:
            try:
                st = copy_status(dev, old.list_id)
            except sgio.ScsiCommandError:
                break  # no such copy (any more)
            if st.status != CopyCommandStatus.IN_PROGRESS:
                break
            if not said:
                print(f"waiting for the copy of interrupted job {old.id} to end on the "
                      f"target ({size(st.transferred_bytes or 0)} so far)", file=out,
                      flush=True)
                said = True
            sleep(1.0)


# --- signals ---------------------------------------------------------------------------------
@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread while the job runs, so the
    catalog marks it failed (SIGKILL cannot be caught: the next catalog open does it)."""
    def raise_(_signum: int, _frame: Any) -> None:
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, raise_)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# --- the jobs --------------------------------------------------------------------------------
#: What a backup job needs of the copy manager to be one EXTENDED COPY: locate (12h), the
#: label as inline data (04h), the data (00h) and the closing filemark (10h), SPC-4
#: 6.4.6.2, 6.4.6.8, 6.4.6.18, 6.4.6.20.
ONE_COMMAND_TYPES = (xcopy.Locate, xcopy.InlineToStream, xcopy.BlockToStream,
                     xcopy.WriteFilemarks)


def one_command_missing(op: xcopy.OperatingParameters, label_length: int) -> str | None:
    """Why a backup cannot be one EXTENDED COPY on this copy manager (its OPERATING
    PARAMETERS, SPC-4 r31 6.18.4), or None when it can."""
    lacking = sorted((c for c in ONE_COMMAND_TYPES
                      if c.TYPE_CODE not in op.implemented_descriptor_types),
                     key=lambda c: c.TYPE_CODE)
    if lacking:
        return ("the copy manager does not list segment type"
                f"{'s' if len(lacking) > 1 else ''} "
                + ", ".join(f"{c.TYPE_CODE:02X}h" for c in lacking))
    if op.max_inline_data_length < label_length:
        return (f"the copy manager takes {op.max_inline_data_length} bytes of inline data, "
                f"the label needs {label_length}")
    if op.max_segment_count < 4:
        return f"the copy manager takes {op.max_segment_count} segments"
    return None


def copy_manager(disk: ScsiTransport, drive: ScsiTransport, label_length: int
                 ) -> tuple[ScsiTransport, xcopy.OperatingParameters]:
    """The device to send the job's EXTENDED COPY to, and its OPERATING PARAMETERS
    (SPC-4 6.18.4): the disk's copy manager where it copies to a tape in one command,
    else the drive's (a disk on another array whose copy manager copies only between
    disks, behind a copy device that serves the drive), else whichever of the two
    copies disk to tape (block to stream, 00h) at all."""
    found: list[tuple[ScsiTransport, xcopy.OperatingParameters]] = []
    for dev in (disk, drive):
        try:
            found.append((dev, operating_parameters(dev)))
        except sgio.ScsiCommandError:  # no copy manager there (ILLEGAL REQUEST)
            continue
    for dev, op in found:
        if one_command_missing(op, label_length) is None:
            return dev, op
    for dev, op in found:
        if xcopy.BlockToStream.TYPE_CODE in op.implemented_descriptor_types:
            return dev, op
    raise BackupError(f"neither {disk.path} nor {drive.path} answers EXTENDED COPY from a "
                      "disk to a tape (OPERATING PARAMETERS lists no segment type 00h): "
                      "back up through a copy manager that serves the drive, e.g. "
                      "lio-xcopy's")


UNLOAD_NEEDS_CHANGER = ("--unload puts the cartridge back in its slot: it needs --changer; "
                        "without a library use `mt -f DRIVE offline`")


def check_backup_request(req: BackupRequest) -> None:
    """Refuse options that contradict each other or mean nothing, before any device is
    opened or any job entered in the catalog."""
    if req.changer is None and req.drive is None:
        raise BackupError("give --drive DEVICE, or --changer DEVICE --slot N")
    if req.slot is not None and req.barcode is not None:
        raise BackupError(f"--slot {req.slot} and --barcode {req.barcode} name a cartridge "
                          "twice: give one of them")
    if req.changer is None and (req.slot is not None or req.barcode is not None):
        what = "--slot" if req.slot is not None else "--barcode"
        raise BackupError(f"{what} picks a cartridge of a library: give the library with "
                          "--changer DEVICE too, or leave it out to use the cartridge in "
                          "--drive")
    if req.changer is not None and req.slot is None and req.barcode is None:
        raise BackupError("with --changer give --slot N or --barcode LABEL")
    if req.slot == 0:
        raise BackupError("--slot 0: slots are numbered from 1, as `mtx status` shows them")
    if req.unload and req.changer is None:
        raise BackupError(UNLOAD_NEEDS_CHANGER)
    if req.blocks == 0:
        raise BackupError("--count 0 backs up nothing: give at least 1 block, or leave "
                          "--count out for the rest of the disk")
    if req.record <= 0:
        raise BackupError(f"--record {req.record}: give the tape record length in bytes, "
                          f"at least 1 (default {DEFAULT_RECORD})")


@dataclass(frozen=True, slots=True)
class BackupRequest:
    disk: str
    drive: str | None = None
    changer: str | None = None
    slot: int | None = None
    barcode: str | None = None
    first_block: int = 0
    blocks: int | None = None  # default: to the end of the disk
    record: int = DEFAULT_RECORD
    unload: bool = False


def _copy(src_dev: ScsiTransport, devs: Devices, src: Endpoint, dst: Endpoint,
          req: CopyRequest, out: IO[str], progress: Progress | None, cat: Catalog,
          job: Job, op: xcopy.OperatingParameters | None = None,
          leading: tuple[xcopy.Segment, ...] = ()) -> tuple[int, float, Digest | None]:
    """One EXTENDED COPY with progress; (bytes moved, seconds, its digest or None)."""
    op = op or operating_parameters(src_dev)
    lid4 = supports_lid4(src_dev)  # LID4 with IMMED, polled: no command waits on the copy
    poll = devs.open(src_dev.path)
    for attempt in range(LIST_ID_ATTEMPTS):
        list_id = random.randint(1, 255)  # LID1: one byte, ours to choose (SPC-4 6.4.3.2)
        plist, _segments = build(src, dst, req, op, list_id, leading, lid4=lid4)
        cat.update(job.id, list_id=list_id)
        try:
            st, seconds = send_and_poll(
                src_dev, poll, plist, list_id, on_status=_shows(progress), interval=0.5,
                on_interrupt=ask_before_stopping(
                    src_dev.path, sys.stderr, input if sys.stdin.isatty() else None),
                lid4=lid4)
            break
        except sgio.ScsiCommandError as e:
            if e.asc == Asc.OPERATION_IN_PROGRESS and attempt + 1 < LIST_ID_ATTEMPTS:
                continue  # another copy holds that list identifier: pick another
            if progress:
                progress.abandon()
            raise
        except BaseException:
            if progress:
                progress.abandon()
            with contextlib.suppress(sgio.SgIoError):
                print(f"  copy status: {status_of(poll, list_id, lid4=lid4).describe()}",
                      file=out)
            raise
    moved = st.transferred_bytes or 0
    if progress:
        progress.finish(moved, seconds)
    digest = copy_digest(src_dev, list_id)
    if digest is None:
        print("  the copy manager reports no digest: the catalog keeps no checksum", file=out)
        return moved, seconds, None
    if digest.byte_count != moved:
        raise BackupError(f"the copy manager digested {digest.byte_count} bytes but moved "
                          f"{moved}: check the target's log")
    algorithm = digest.known_algorithm
    if algorithm is None:
        print(f"  the copy manager's digest algorithm {digest.algorithm:02X}h is unknown to "
              "this lio-xcopy: the catalog keeps no checksum", file=out)
        return moved, seconds, None
    return moved, seconds, Digest(algorithm.label, digest.value.hex())


def _shows(progress: Progress | None) -> Callable[[AnyCopyStatus, float], None] | None:
    if progress is None:
        return None
    return lambda st, seconds: progress.show(st.transferred_bytes or 0, seconds)


def _open_library(devs: Devices, changer_path: str) -> tuple[Changer, Inventory]:
    ch = Changer(devs.open(changer_path))
    ch.check_type()
    return ch, ch.inventory()


def backup(req: BackupRequest, cat: Catalog, *, devs: Devices | None = None,
           out: IO[str] | None = None, progress: bool | str = True,
           tty: bool | None = None, err: IO[str] | None = None) -> Job:
    """One backup job; returns its catalog row (done). Raises :class:`LioXcopyError`
    after marking the job failed; an operator's mistake is refused before the job is
    entered in the catalog. Progress goes to ``err`` (default stderr)."""
    with devs or Devices() as d:
        return _backup(req, cat, d, sys.stdout if out is None else out,
                       Display(progress, err, tty))


def _cartridge(inv: Inventory, req: BackupRequest) -> ElementStatus:
    """The element holding the cartridge to write: by barcode, or the slot (or the drive
    the slot's cartridge was loaded into)."""
    if req.barcode is not None:
        found = inv.find(req.barcode)
        if found is None:
            raise BackupError(f"no cartridge {req.barcode} in {req.changer}: `mtx status` "
                              "lists the volume tags")
        return found
    slot = inv.slot(req.slot or 0)
    if slot.full:
        return slot
    holder = next((d for d in inv.drives if d.source == slot.address), None)
    if holder is None:
        raise BackupError(f"slot {req.slot} of {req.changer} is empty: pick a full slot "
                          "(`mtx status`)")
    return holder


def _backup(req: BackupRequest, cat: Catalog, devs: Devices, out: IO[str],
            display: Display) -> Job:
    check_backup_request(req)
    disk_dev = devs.open(req.disk)
    src = identify(disk_dev)
    if src.is_tape:
        raise BackupError(f"{req.disk} is a tape: give the disk to back up first")
    first = req.first_block
    if first >= src.blocks:
        raise BackupError(f"{req.disk} has {src.blocks} blocks: --skip {first} is past its "
                          f"end; give --skip below {src.blocks}")
    blocks = req.blocks if req.blocks is not None else src.blocks - first
    if first + blocks > src.blocks:
        raise BackupError(f"{req.disk} has {src.blocks} blocks: --skip {first} --count "
                          f"{blocks} does not fit; give --count {src.blocks - first} or less")
    lib: InitiatorLibrary | None = None
    slot: ElementStatus | None = None
    drive_path = req.drive or ""
    if req.changer is not None:
        changer, inv = _open_library(devs, req.changer)
        slot = _cartridge(inv, req)
        drive_path, el = _drive_in_library(devs, changer, inv, req.drive, slot.barcode)
        lib = InitiatorLibrary(changer, inv, el)
        _refuse_other_drive(lib, slot)
    tape_dev = devs.open(drive_path)
    _refuse_not_tape(tape_dev)
    drive = InitiatorDrive(tape_dev)
    drive_naa = _naa(tape_dev, "the drive")
    cartridge = slot.barcode if slot is not None else None
    wait_for_interrupted_copies(cat, devs, drive_naa, out)
    with cat.running(BACKUP, disk=req.disk, disk_naa=src.designator.value.hex(),
                     first_block=first, blocks=blocks, block_size=src.block_size,
                     cartridge=cartridge, drive=drive_path, drive_naa=drive_naa.hex(),
                     record_length=req.record) as job, sigterm_raises():
        print(f"job {job.id}: {replace(src, path=req.disk).describe()} -> "
              f"{cartridge or 'the cartridge'} in {drive_path}", file=out)
        if lib is not None and slot is not None:
            with _unload_afterwards(req.unload, lib, drive, slot, disk_dev, cat, job, out):
                load(lib, drive, slot, out)
                return _write_backup(req, cat, job, src, disk_dev, tape_dev, drive, devs,
                                     out, display, first, blocks)
        return _write_backup(req, cat, job, src, disk_dev, tape_dev, drive, devs, out,
                             display, first, blocks)


def _write_backup(req: BackupRequest, cat: Catalog, job: Job, src: Endpoint,
                  disk_dev: ScsiTransport, tape_dev: ScsiTransport, drive: InitiatorDrive,
                  devs: Devices, out: IO[str], display: Display, first: int,
                  blocks: int) -> Job:
    """The job once the cartridge is in the drive: position, copy, filemark, catalog."""
    wait_ready(tape_dev)
    dst = identify(tape_dev)
    manager, op = copy_manager(disk_dev, tape_dev, src.block_size)
    pos = append_position(drive, out)
    file_number = pos.file_number
    missing = one_command_missing(op, src.block_size)
    label = b"" if missing else BackupLabel(
        job.id, src.designator.value.hex(), first, blocks, src.block_size, req.record,
        time.time()).encode()
    cat.update(job.id, file_number=file_number, label_length=len(label))
    total = blocks * src.block_size
    print(f"writing tape file {file_number}: {size(total)} in "
          f"{req.record}-byte records, by the target's copy manager", file=out)
    if missing:
        print(f"  {missing}: no label, the filemark is a command of its own", file=out)
    else:
        print(f"  one EXTENDED COPY: locate to object {pos.logical_object}, a "
              f"{len(label)}-byte label record, the data, a filemark", file=out)
    bar = display.make(total + len(label))
    creq = CopyRequest(count=blocks, skip=first, record=req.record, header=label,
                       filemarks=0 if missing else 1,
                       locate=None if missing else pos.logical_object)
    moved, _seconds, digest = _copy(manager, devs, src, dst, creq, out, bar, cat, job, op)
    if moved != total + len(label):
        raise BackupError(f"the copy moved {moved} bytes of {total + len(label)}: the tape "
                          "file is incomplete; run the backup again")
    moved = total
    if missing:
        drive.write_filemark()
    after = drive.position().file_number
    if after != file_number + 1:
        raise BackupError(f"after the filemark the drive is in file {after}, not "
                          f"{file_number + 1}: another host used the drive?")
    done = _finish(cat, job, moved, digest)
    print(f"job {job.id} done: {size(moved)} in tape file {file_number} of "
          f"{job.cartridge or drive.path}"
          + (f", {digest.algorithm} {digest.hex}" if digest else ""), file=out)
    return done


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    disk: str
    job: int | None = None
    latest_of: str | None = None  # source NAA (hex) for --latest
    drive: str | None = None
    changer: str | None = None
    seek: int = 0  # first block of the destination
    unload: bool = False


def check_restore_request(req: RestoreRequest) -> None:
    """Refuse what a restore cannot do, before any device or the catalog is touched."""
    if req.changer is None and req.drive is None:
        raise BackupError("give --changer DEVICE (the cartridge is found by its barcode) "
                          "or --drive DEVICE with the cartridge loaded")
    if req.unload and req.changer is None:
        raise BackupError(UNLOAD_NEEDS_CHANGER)


def restore(req: RestoreRequest, cat: Catalog, *, devs: Devices | None = None,
            out: IO[str] | None = None, progress: bool | str = True,
            tty: bool | None = None, err: IO[str] | None = None) -> Job:
    """One restore job; returns its catalog row (done, digest verified). Progress
    goes to ``err`` (default stderr)."""
    with devs or Devices() as d:
        return _restore(req, cat, d, sys.stdout if out is None else out,
                        Display(progress, err, tty))


def _restore(req: RestoreRequest, cat: Catalog, devs: Devices, out: IO[str],
             display: Display) -> Job:
    if req.job is not None:
        src_job = cat.job(req.job)
    elif req.latest_of is not None:
        src_job = cat.latest(req.latest_of)
    else:
        raise BackupError("give a JOB_ID, or --latest --source NAA")
    check_restore_request(req)
    if src_job.kind != BACKUP or src_job.state != DONE:
        raise BackupError(f"job {src_job.id} is a {src_job.state} {src_job.kind}: restore "
                          "from a done backup (`lio-xcopy catalog`)")
    disk_dev = devs.open(req.disk)
    dst = identify(disk_dev)
    if dst.is_tape:
        raise BackupError(f"{req.disk} is a tape: give the disk to restore to")
    if dst.block_size != src_job.block_size:
        raise BackupError(f"{req.disk} has {dst.block_size}-byte blocks, the backup "
                          f"{src_job.block_size}: restore to a disk like the source")
    if req.seek + src_job.blocks > dst.blocks:
        raise BackupError(f"{req.disk} has {dst.blocks} blocks; the backup needs "
                          f"{src_job.blocks} from block {req.seek}: give a larger disk")
    lib: InitiatorLibrary | None = None
    holder: ElementStatus | None = None
    drive_path = req.drive or ""
    changer_path = req.changer
    if changer_path is not None:
        if src_job.cartridge is None:
            raise BackupError(f"job {src_job.id} went to a drive without a changer: load "
                              "its cartridge and give --drive alone")
        changer, inv = _open_library(devs, changer_path)
        holder = inv.find(src_job.cartridge)
        if holder is None:
            raise BackupError(f"cartridge {src_job.cartridge} is not in {changer_path}: "
                              "import it (mail slot) and retry")
        drive_path, el = _drive_in_library(devs, changer, inv, req.drive, src_job.cartridge)
        lib = InitiatorLibrary(changer, inv, el)
        _refuse_other_drive(lib, holder)
    tape_dev = devs.open(drive_path)
    _refuse_not_tape(tape_dev)
    drive = InitiatorDrive(tape_dev)
    wait_for_interrupted_copies(cat, devs, _naa(tape_dev, "the drive"), out)
    with cat.running(RESTORE, disk=req.disk, disk_naa=dst.designator.value.hex(),
                     first_block=req.seek, blocks=src_job.blocks,
                     block_size=src_job.block_size, cartridge=src_job.cartridge,
                     drive=drive_path, drive_naa=_naa(tape_dev, "the drive").hex(),
                     file_number=src_job.file_number, record_length=src_job.record_length,
                     restored_job=src_job.id) as job, sigterm_raises():
        print(f"job {job.id}: restore of job {src_job.id} ({src_job.disk}, "
              f"{size(src_job.size)}) from tape file {src_job.file_number} of "
              f"{src_job.cartridge or drive_path} to {req.disk}", file=out)
        if lib is not None and holder is not None:
            with _unload_afterwards(req.unload, lib, drive, holder, tape_dev, cat, job, out):
                load(lib, drive, holder, out)
                return _read_back(req, cat, job, src_job, dst, tape_dev, drive,
                                  devs, out, display)
        print(f"  (no changer: {drive_path} must hold "
              f"{src_job.cartridge or 'the cartridge of job ' + str(src_job.id)})", file=out)
        return _read_back(req, cat, job, src_job, dst, tape_dev, drive, devs, out,
                          display)


def _read_back(req: RestoreRequest, cat: Catalog, job: Job, src_job: Job, dst: Endpoint,
               tape_dev: ScsiTransport, drive: InitiatorDrive,
               devs: Devices, out: IO[str], display: Display) -> Job:
    """The restore once the cartridge is in the drive: position, copy, check the digest."""
    wait_ready(tape_dev)
    src = identify(tape_dev)
    locate_file(drive, src_job.file_number or 0)
    label = src_job.label_length or 0
    leading = label_segments(label, src_job.block_size, req.seek)
    bar = display.make(src_job.size + label)
    moved, _s, digest = _copy(tape_dev, devs, src, dst,
                              CopyRequest(count=src_job.blocks, seek=req.seek,
                                          record=src_job.record_length),
                              out, bar, cat, job, leading=leading)
    if moved != src_job.size + label:
        raise BackupError(f"the restore moved {moved} bytes of {src_job.size + label}")
    moved = src_job.size
    verdict = _verdict(digest, src_job)
    done = _finish(cat, job, moved, digest)
    print(f"job {job.id} done: {size(moved)} restored, {verdict}", file=out)
    return done


def _verdict(digest: Digest | None, src_job: Job) -> str:
    """How the restore's digest compares with the backup's, in words; BackupError when
    they differ. Digests of two algorithms say nothing of each other: that is no
    verification, as with no digest at all, never a mismatch."""
    if digest is None:
        return "not verified: no digest from the copy manager"
    if src_job.digest is None:
        return f"not verified: the catalog holds no digest of job {src_job.id}"
    if digest.algorithm != src_job.algorithm:
        return (f"not verified: the copy manager digests with {digest.algorithm}, the "
                f"backup's is {src_job.algorithm} (the target's `lio-xcopy daemon "
                f"--copy-digest` changed since the backup; set it to {src_job.algorithm} to "
                "verify)")
    if digest.hex != src_job.digest:
        raise BackupError(f"digest mismatch: the restore read {digest.algorithm} "
                          f"{digest.hex}, the backup wrote {src_job.digest}; the "
                          "cartridge's data changed")
    return f"verified: {digest.title} matches the backup's"


def _finish(cat: Catalog, job: Job, moved: int, digest: Digest | None) -> Job:
    return cat.finish(job.id, bytes=moved, digest=digest.hex if digest else None,
                      digest_algorithm=digest.algorithm if digest else None)


def label_segments(label_length: int, block_size: int,
                   seek: int) -> tuple[xcopy.Segment, ...]:
    """The restore's first segment when the tape file opens with a label record: the
    label read into the first block of the range restored (01h, SPC-4 6.4.6.3), which
    the data then overwrites, so that the copy manager digests the label and the data
    as the backup did and one digest comparison verifies both."""
    if not label_length:
        return ()
    if label_length % block_size:
        raise BackupError(f"the job's label record is {label_length} bytes, not whole "
                          f"{block_size}-byte blocks: it was not written by lio-xcopy backup")
    return (xcopy.StreamToBlock(0, 1, label_length // block_size, seek, label_length),)
