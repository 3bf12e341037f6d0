"""A disk of another array to a pass-through tape: EXTENDED COPY against the backup
server's dd and the target host's own dd.

Run in the VM: ``scripts/vm python bench/foreign_to_passthrough.py [--size 64M]
[--runs 2]``. In one guest run it builds what the VM tests of the copy device on the SAN
use (tests/vm/test_zz_foreign.py, tests/plugins/vm_bridge.py):

* **the other array**: LIO's in-kernel ``fileio`` backstore over a file in /dev/shm,
  exported over iSCSI from network namespace ``lioxc-bench`` and logged into with
  open-iscsi: this host sees it as /dev/sdX;
* **the physical drive**: a tape LUN (its cartridge in /dev/shm) that a second daemon
  (subtype ``physlib``) serves over a loopback target of its own: this host sees it as
  /dev/nstN, as it would a drive on its HBA;
* **the pass-through tape**: the daemon under test passes that drive (by its
  designator, a stable name as its /dev/tape/by-id link is) through on another
  loopback target, with a copy group that admits the array's disk (by designator).

Then it times, for ``--runs`` rounds with the order alternating:

* ``xcopy``: one EXTENDED COPY (LID1, SPC-4 6.4) sent to the pass-through tape: the
  array's disk to the real drive in 64 KiB records, moved by the target host;
* ``dd-initiator``: ``dd if=/dev/sdX of=<pass-through nst> bs=64k iflag=direct``: the
  backup server without EXTENDED COPY, every byte crossing it twice;
* ``dd-local``: the same ``dd`` on the target host, from the array's /dev/sdX to the
  physical drive's /dev/nstN (what this machine's path to the drive allows).

It prints MB/s and the ratios xcopy/dd-initiator and xcopy/dd-local (medians over the
runs), and the bytes that crossed the backup server's devices for the copy. The first
copy's cartridge is compared with the array's bytes. Read the ratios, not the absolute
figures, which move between runs under software emulation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guest import MB, Daemon, require_guest, run, work_dir

from lio_xcopy.control import iscsi, provision, rtslib_adapter
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.handler_config import HW_MAX_SECTORS, HandlerConfig, parse_size
from lio_xcopy.initiator.copy import (
    CopyRequest,
    build,
    copy_status,
    identify,
    operating_parameters,
)
from lio_xcopy.scsi import xcopy
from lio_xcopy.sg import sgio

RECORD = 65536
NETNS = "lioxc-bench"
TARGET_IP, INITIATOR_IP = "10.98.0.1", "10.98.0.2"
ARRAY = "iqn.2026-12.org.example:bench-array"
INITIATOR = "iqn.2026-12.org.example:bench-backup-server"
PHYS_SUBTYPE = "physlib"
PHYS_TARGET = "naa.5001405aaaaaaab1"
PT_TARGET = "naa.5001405bbbbbbbc2"


def quietly(fn, *args: object) -> None:
    """Tear-down that goes on past what is already gone."""
    with contextlib.suppress(Exception):
        fn(*args)


def timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def settle_unit_attentions(*sgs: str) -> None:
    """New LUNs report REPORTED LUNS DATA HAS CHANGED (and a drive its cartridge) once."""
    for sg in sgs:
        for _ in range(4):
            if subprocess.run(["sg_turs", sg], capture_output=True).returncode == 0:
                break


def start_array(shm: Path, size: int, stack: contextlib.ExitStack) -> SimpleNamespace:
    """The other array: a fileio LUN exported over iSCSI from NETNS, logged into."""
    from rtslib_fb import FileIOStorageObject

    run("ip", "netns", "del", NETNS, check=False)  # what an interrupted run left
    run("ip", "link", "del", "lioxb-i", check=False)
    run("ip", "netns", "add", NETNS)
    stack.callback(run, "ip", "netns", "del", NETNS, check=False)
    run("ip", "link", "add", "lioxb-i", "type", "veth", "peer", "name", "lioxb-t",
        "netns", NETNS)
    stack.callback(run, "ip", "link", "del", "lioxb-i", check=False)
    run("ip", "addr", "add", f"{INITIATOR_IP}/24", "dev", "lioxb-i")
    run("ip", "link", "set", "lioxb-i", "up")
    run("ip", "-n", NETNS, "addr", "add", f"{TARGET_IP}/24", "dev", "lioxb-t")
    run("ip", "-n", NETNS, "link", "set", "lioxb-t", "up")
    run("ip", "-n", NETNS, "link", "set", "lo", "up")

    run("modprobe", "iscsi_tcp")
    etc = Path("/etc/iscsi")  # a throwaway overlay in the guest
    etc.mkdir(exist_ok=True)
    (etc / "initiatorname.iscsi").write_text(f"InitiatorName={INITIATOR}\n")
    for d in ("nodes", "send_targets", "ifaces"):  # no other run's records
        shutil.rmtree(etc / d, ignore_errors=True)
    log = work_dir("foreign_to_passthrough") / "iscsid.log"
    with log.open("w") as f:
        # its own session: on SIGTERM iscsid signals its whole process group
        iscsid = Daemon("iscsid", subprocess.Popen(["iscsid", "-f"], stdout=f,
                                                   stderr=subprocess.STDOUT,
                                                   start_new_session=True), log)
    stack.callback(iscsid.stop, 20)
    deadline = time.monotonic() + 30
    while subprocess.run(["iscsiadm", "-m", "session"],
                         capture_output=True).returncode not in (0, 21):
        if iscsid.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"iscsid did not start:\n{iscsid.tail()}")
        time.sleep(0.2)

    data = os.urandom(size)
    img = shm / "array.img"
    img.write_bytes(data)
    so = FileIOStorageObject("benchArray", dev=str(img), size=size)
    stack.callback(so.delete)
    iscsi.export_iscsi(SimpleNamespace(name="benchArray", storage_object=so), ARRAY,
                       TARGET_IP, netns=NETNS)
    stack.callback(quietly, iscsi.delete_target, ARRAY)
    iscsi.allow_initiator(ARRAY, INITIATOR)
    run("iscsiadm", "-m", "discovery", "-t", "st", "-p", TARGET_IP, "-I", "default")
    run("iscsiadm", "-m", "node", "-T", ARRAY, "-p", f"{TARGET_IP}:3260", "-I", "default",
        "--login")
    stack.callback(run, "iscsiadm", "-m", "node", "-T", ARRAY, "--logout", check=False)
    run("udevadm", "settle", check=False)
    lun = provision.Lun("benchArray", "disk", img, so.wwn, so)
    dev = provision.find_kernel_device(lun, timeout=60)
    return SimpleNamespace(naa=lun.naa, sd=str(dev.block), sg=str(dev.sg), data=data)


def start_physical_drive(shm: Path, work: Path, capacity: int,
                         stack: contextlib.ExitStack) -> SimpleNamespace:
    """The drive "on the target host's HBA": a tape LUN a second daemon serves."""
    state = shm / "physlib"  # a daemon's lock file goes beside its state file
    state.mkdir(exist_ok=True)
    pidfile = state / "pid"
    phys = Daemon.start(
        "physlib", [sys.executable, "-m", "lio_xcopy", "daemon", "--subtype", PHYS_SUBTYPE,
                    "--pidfile", str(pidfile), "--state-file", str(state / "state")],
        work / "physlib.log", lambda _p: pidfile.exists(), timeout=180)
    stack.callback(phys.stop)
    cartridge = shm / "phys.aws"
    hc = HandlerConfig("tape", str(cartridge), {"capacity": str(capacity)})
    so = rtslib_adapter.rtslib().UserBackedStorageObject(
        "benchphysdrive", config=f"{PHYS_SUBTYPE}/{hc.format()}", size=capacity,
        wwn=str(uuid.uuid4()), hw_max_sectors=HW_MAX_SECTORS, control=provision.CONTROL)
    stack.callback(provision.delete, "benchphysdrive")
    lun = provision.Lun("benchphysdrive", "tape", cartridge, so.wwn, so)
    provision.export_loopback(lun, target_wwn=PHYS_TARGET)
    dev = provision.find_kernel_device(lun)
    return SimpleNamespace(nst=str(dev.tape), sg=str(dev.sg), cartridge=cartridge,
                           name=f"naa.{lun.naa}")


def start_passthrough(shm: Path, work: Path, array: SimpleNamespace, drive_name: str,
                      stack: contextlib.ExitStack) -> tuple[Daemon, SimpleNamespace]:
    """The daemon under test, with a copy group admitting the array's disk for the
    pass-through tape, and the pass-through tape as the backup server sees it."""
    config = work / "saveconfig.json"
    config.write_text(json.dumps({
        "version": 2, "passthrough": [{"name": "benchpt", "device": drive_name}],
        "copy_groups": {"bench": ["benchpt", f"foreign:naa.{array.naa}"]}}))
    state = shm / "lio-xcopy"
    state.mkdir(exist_ok=True)
    pidfile = state / "pid"
    daemon = Daemon.start(
        "lio-xcopy", [sys.executable, "-m", "lio_xcopy", "daemon", "--pidfile", str(pidfile),
                      "--state-file", str(state / "state"), "--config", str(config)],
        work / "daemon.log", lambda _p: pidfile.exists(), timeout=180)
    stack.callback(daemon.stop)
    pt = provision.create_passthrough("benchpt", drive_name)
    stack.callback(provision.delete, "benchpt")
    provision.export_loopback(pt, target_wwn=PT_TARGET)
    dev = provision.find_kernel_device(pt)
    return daemon, SimpleNamespace(nst=str(dev.tape), sg=str(dev.sg))


def remove_targets() -> None:
    rts = rtslib_adapter.rtslib()
    for wwn in (PHYS_TARGET, PT_TARGET):
        with contextlib.suppress(rts.RTSLibError):
            rts.Target(rts.FabricModule("loopback"), wwn, mode="lookup").delete()


def xcopy_to_tape(array: SimpleNamespace, pt: SimpleNamespace, size: int
                  ) -> tuple[float, int]:
    """One EXTENDED COPY (LID1) of the array's first ``size`` bytes to the pass-through
    tape, sent to the tape; (seconds, bytes that crossed the backup server for it)."""
    run("mt", "-f", pt.nst, "rewind")
    with sgio.SgIoDevice(array.sg) as disk, sgio.SgIoDevice(pt.sg) as tape:
        src, dst = identify(disk), identify(tape)
        op = operating_parameters(tape)
        list_id = random.randint(1, 255)
        plist, _ = build(src, dst, CopyRequest(count=size // 512, record=RECORD), op,
                         list_id)
        cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
        seconds = timed(lambda: tape.execute(cdb, data_out=plist, timeout=3600))
        st = copy_status(tape, list_id)
        if st.transferred_bytes != size:
            raise RuntimeError(f"the copy moved {st.transferred_bytes} of {size} bytes: "
                               f"{st.describe()}")
        crossed = sum(d.bytes_in + d.bytes_out for d in (disk, tape))
    return seconds, crossed


def dd_to_tape(sd: str, nst: str, size: int) -> float:
    """The array's first ``size`` bytes to a drive in 64 KiB records (variable mode)."""
    run("mt", "-f", nst, "rewind")
    run("mt", "-f", nst, "setblk", "0")
    out = ""

    def dd() -> None:
        nonlocal out
        out = run("dd", f"if={sd}", f"of={nst}", f"bs={RECORD}", "iflag=direct",
                  f"count={size // RECORD}")

    seconds = timed(dd)
    if f"{size} bytes" not in out:
        raise RuntimeError(f"dd {sd} -> {nst} did not copy {size} bytes:\n{out}")
    return seconds


def on_cartridge(path: Path, size: int) -> bytes:
    with AwsTape.open_readonly(path, strict=False) as t:
        return b"".join(r for r in t.dump_records() if r is not None)[:size]


def main() -> int:
    require_guest("bench/foreign_to_passthrough.py")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="64M", help="bytes copied each time (default 64M)")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    size = parse_size(args.size)
    if size % RECORD:
        sys.exit(f"--size {args.size}: give a multiple of {RECORD} (the record length)")
    if not (shutil.which("iscsid") and shutil.which("iscsiadm")):
        sys.exit("open-iscsi is missing: scripts/setup-host installs it on the host")
    if not Path("/sys/module/iscsi_target_mod").exists():
        sys.exit("iscsi_target_mod is not loaded in this guest's kernel")
    work = work_dir("foreign_to_passthrough")
    shm = Path("/dev/shm/lio-xcopy-bench-f2p")
    shm.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[float]] = {}
    crossed: list[int] = []
    rc = 0
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, shm, ignore_errors=True)
        stack.callback(remove_targets)
        array = start_array(shm, size, stack)
        phys = start_physical_drive(shm, work, size + (64 << 20), stack)
        daemon, pt = start_passthrough(shm, work, array, phys.name, stack)
        settle_unit_attentions(array.sg, phys.sg, pt.sg)
        print(f"array disk {array.sd} ({array.sg}, naa.{array.naa}, iSCSI from netns "
              f"{NETNS}); physical drive {phys.nst} ({phys.sg}, {phys.name}); pass-through "
              f"tape {pt.nst} ({pt.sg}); {size >> 20} MiB, {RECORD >> 10} KiB records; "
              f"{os.cpu_count()} cpu(s)", flush=True)

        def xcopy_way() -> float:
            before = (sgio.io_counters(array.sd), sgio.io_counters(pt.sg))
            seconds, over_sgio = xcopy_to_tape(array, pt, size)
            moved = [sgio.io_counters(array.sd) - before[0],
                     sgio.io_counters(pt.sg) - before[1]]
            crossed.append(over_sgio + sum(m.total_bytes for m in moved))
            if len(crossed) == 1 and on_cartridge(phys.cartridge, size) != array.data:
                raise RuntimeError(f"the cartridge {phys.cartridge} does not hold the "
                                   "array's bytes after the copy")
            return seconds

        ways = {"xcopy": xcopy_way,
                "dd-initiator": lambda: dd_to_tape(array.sd, pt.nst, size),
                "dd-local": lambda: dd_to_tape(array.sd, phys.nst, size)}
        for r in range(args.runs):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for name in order:
                secs = ways[name]()
                results.setdefault(name, []).append(size / MB / secs)
                print(f"  run {r + 1} {name:13} {size / MB / secs:8.1f} MB/s", flush=True)
    # the stack stopped the daemon after its LUN was gone
    if daemon.proc.returncode != 0 or "Traceback" in daemon.log.read_text(errors="replace"):
        print(f"the daemon exited {daemon.proc.returncode} or logged a traceback: "
              f"{daemon.log}", flush=True)
        rc = 1
    x, i, lo = (statistics.median(results[n]) for n in ("xcopy", "dd-initiator", "dd-local"))
    print(f"\nmedian MB/s over {args.runs} run(s) of {size >> 20} MiB; ratios > 1: xcopy "
          "faster")
    print(f"{'xcopy':>9} {'dd-initiator':>13} {'dd-local':>9} {'xcopy/dd-init':>14} "
          f"{'xcopy/dd-local':>15}")
    print(f"{x:9.1f} {i:13.1f} {lo:9.1f} {x / i:14.2f} {x / lo:15.2f}")
    gib = size / (1 << 30)
    print(f"\nbytes across the backup server's devices per copy: at most {max(crossed)} "
          f"({max(crossed) / gib:.0f} B a GiB; dd-initiator: {2 * size / gib:.0f} B a GiB)")
    print(f"logs in {work}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
