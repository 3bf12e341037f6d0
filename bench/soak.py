"""Soak: a bounded run of mixed load on one daemon, watching its memory, fds and threads.

Run in the VM: ``scripts/soak --minutes 20`` (or ``scripts/vm python bench/soak.py
--minutes 20``). In one guest it starts its own daemon, serves LUNs from files in
/dev/shm, and for ``--minutes`` runs at once:

* **fio** on two disk LUNs: random writes of 4 KiB-1 MiB with crc32c verify
  (``verify_backlog``: written blocks are read back and checked all along), O_DIRECT;
* **EXTENDED COPY** disk->tape over and over (rewind, copy 16 MiB in 64 KiB records,
  compare the cartridge with the source), polling RECEIVE COPY RESULTS (COPY STATUS)
  on a second handle while each copy runs;
* a **hostile initiator** over SG_IO on a scratch disk and a scratch tape only (whose
  bytes nobody checks): random opcodes with random CDB bytes, the LUN's own opcodes
  with random fields, RECEIVE COPY RESULTS with odd allocation lengths, mutated
  EXTENDED COPY lists naming the two scratch LUNs. Never sent: what LIO's core answers
  itself and that changes state for everything after (reservations, ALUA).

Every ``--interval`` seconds it samples the daemon's VmRSS, open fds and threads
(/proc/PID) and prints a row (``--where``: also which kind of mapping holds the
anonymous memory). At the end: whether RSS levelled off (the median and the maximum
RssAnon of the last third of the samples are within ``--tolerance`` + 2 MiB of those of
the middle third), whether fds and threads did (maxima, within 2), and the counts
(commands tried, copies done, errors).
Exit status 0 only when it levelled off and nothing failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guest import Daemon, MiB, require_guest, run

from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.initiator.copy import send_and_poll
from lio_xcopy.scsi import ssc, xcopy
from lio_xcopy.scsi.xcopy import BlockToStream, IdentificationCscd, ListIdUsage
from lio_xcopy.sg import sgio

BS = 512
RECORD = 64 * 1024
FIO_DISK = 32 * MiB
COPY_SIZE = 16 * MiB
SCRATCH = 2048 * BS
#: Answered by LIO's core, and they change reservations or ALUA state for what follows.
CORE_STATE = frozenset({0x16, 0x17, 0x56, 0x57, 0x5F, 0xA4})
#: The statuses a command may end in (SAM-5 5.3).
STATUSES = frozenset({0x00, 0x02, 0x04, 0x08, 0x18, 0x28, 0x40})
#: Opcodes that carry data to the device.
DATA_OUT = frozenset({0x0A, 0x2A, 0x8A, 0xAA, 0x2E, 0x8E, 0xAE, 0x15, 0x55, 0x4C, 0x83,
                      0x1D, 0x3B, 0x41, 0x93, 0x42, 0x89})
_CDB_SIZE = (6, 10, 10, 12, 16, 12, 10, 10)  # Linux scsi_command_size, by opcode group


@dataclass
class Counts:
    """What the load threads did; updated by them, read by the sampler."""

    commands: int = 0  # hostile commands sent
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    copies: int = 0  # copies that completed and matched
    copy_polls: int = 0  # RECEIVE COPY RESULTS answered while a copy ran
    errors: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors.append(what)
        if len(self.errors) <= 20:
            print(f"  ERROR: {what}", flush=True)


# --- the daemon's resources -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sample:
    t: float
    rss_kib: int  # VmRSS: all of it
    anon_kib: int  # RssAnon: the heap and thread stacks, where a leak grows
    shared_kib: int  # RssFile + RssShmem: the rings' data areas the kernel maps in and out
    fds: int
    threads: int


def sample(pid: int, t: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()

    def field_of(name: str) -> int:
        m = re.search(rf"^{name}:\s+(\d+)", status, re.M)
        return int(m.group(1)) if m else 0

    return Sample(t, field_of("VmRSS"), field_of("RssAnon"),
                  field_of("RssFile") + field_of("RssShmem"),
                  len(os.listdir(f"/proc/{pid}/fd")), field_of("Threads"))


#: The daemon under tracemalloc: SIGUSR2 writes its 15 largest allocation sites.
TRACED_DAEMON = """
import signal, sys, tracemalloc
def dump(*_):
    top = tracemalloc.take_snapshot().statistics("traceback")[:15]
    with open({out!r} + ".tmp", "w") as f:
        for st in top:
            f.write(f"{{st.size / 1024:10.1f}} KiB {{st.count:7d}} blocks\\n")
            f.write("".join(f"        {{line}}\\n" for line in st.traceback.format()[-8:]))
    import os; os.replace({out!r} + ".tmp", {out!r})
signal.signal(signal.SIGUSR2, dump)
sys.argv = ["lio-xcopy"] + sys.argv[1:]
from lio_xcopy.cli import main
sys.exit(main(["daemon"] + sys.argv[1:]))
"""


def tracemalloc_top(pid: int, out: Path, timeout: float = 60) -> str:
    """Ask the traced daemon for its largest allocation sites and return them."""
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return out.read_text() if out.exists() else "(no tracemalloc answer)"


def anon_where(pid: int) -> dict[str, int]:
    """KiB of anonymous memory by kind of mapping (/proc/PID/smaps): glibc's main heap
    (brk), its other arenas (64 MiB reservations), pymalloc's 1 MiB object arenas, other
    large anonymous mappings (mmap'd buffers), thread stacks (8 MiB + guard)."""
    where: collections.Counter[str] = collections.Counter()
    kind = "other"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            size = hi - lo
            name = head[5] if len(head) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif name:
                kind = "file" if not name.startswith("[") else name.strip("[]")
            elif size == 1 << 20:
                kind = "pyarena"
            elif size == 8 << 20:
                kind = "stack"
            elif size <= 64 << 20 and (lo & ((64 << 20) - 1)) == 0:
                kind = "arena"
            else:
                kind = "mmap"
        elif head and head[0] == "Anonymous:":
            where[kind] += int(head[1])
    where.pop("file", None)
    return {k: v for k, v in sorted(where.items()) if v}


def levelled(values: list[int], tolerance: float, slack: int,
             stat: Callable[[list[int]], float] = max) -> tuple[bool, float, float]:
    """(levelled off, ``stat`` of the middle third, ``stat`` of the last third)."""
    n = len(values)
    middle, last = values[n // 3: 2 * n // 3], values[2 * n // 3:]
    if not middle or not last:
        return False, -1, -1
    m, lst = stat(middle), stat(last)
    return lst <= m * (1 + tolerance) + slack, m, lst


# --- load --------------------------------------------------------------------------------
def copy_loop(stop: threading.Event, counts: Counts, src: provision.Lun, src_sg: str,
              tape: provision.Lun, tape_sg: str, data: bytes) -> None:
    half = COPY_SIZE // BS // 2
    list_id = 0
    with (sgio.SgIoDevice(src_sg) as s, sgio.SgIoDevice(src_sg) as poll,
          sgio.SgIoDevice(tape_sg) as t):
        while not stop.is_set():
            list_id = list_id % 250 + 1
            plist = xcopy.build_extended_copy(
                [IdentificationCscd(bytes.fromhex(src.naa), 0, block_length=BS),
                 IdentificationCscd(bytes.fromhex(tape.naa), 1, block_length=0)],
                [BlockToStream(0, 1, half, i * half, RECORD) for i in range(2)],
                list_identifier=list_id, list_id_usage=ListIdUsage.HOLD)

            def polled(st: xcopy.CopyStatus, dt: float) -> None:
                counts.copy_polls += 1

            try:
                t.execute(ssc.Rewind().encode(), timeout=120)
                final, _ = send_and_poll(s, poll, plist, list_id, on_status=polled,
                                         interval=0.2, timeout=600)
            except sgio.SgIoError as e:
                counts.error(f"copy {list_id}: {e}")
                time.sleep(1)
                continue
            with AwsTape.open_readonly(tape.path, strict=False) as cart:
                got = b"".join(r for r in cart.dump_records() if r is not None)
            if got != data:
                counts.error(f"copy {list_id}: the cartridge holds {len(got)} bytes that "
                             "differ from the source")
            elif final.transfer_count == 0:
                counts.error(f"copy {list_id}: COPY STATUS after the copy: {final}")
            else:
                counts.copies += 1


class Hostile:
    """Random and mutated commands (the idea of tests/vm/test_hostile.py)."""

    def __init__(self, rng: random.Random, counts: Counts, lists: list[bytes]):
        self.rng, self.counts, self.lists = rng, counts, lists

    def send(self, dev: sgio.SgIoDevice, cdb: bytes, data_in: int = 0,
             data_out: bytes | None = None) -> None:
        self.counts.commands += 1
        try:
            res = dev.execute(cdb, data_in=data_in, data_out=data_out or None, timeout=60,
                              check=False)
        except sgio.SgIoError as e:
            self.counts.error(f"{dev.path}: {cdb.hex(' ')}: no SCSI status: {e}")
            return
        self.counts.statuses[res.status_name] += 1
        if res.status not in STATUSES:
            self.counts.error(f"{dev.path}: {cdb.hex(' ')}: status {res.status:#04x}")
        elif res.status == 0x02 and (len(res.sense_bytes) < 18
                                     or res.sense_bytes[0] & 0x7F not in (0x70, 0x71)):
            self.counts.error(f"{dev.path}: {cdb.hex(' ')}: sense {res.sense_bytes.hex(' ')}")

    def buffers(self, opcode: int) -> tuple[int, bytes | None]:
        rng = self.rng
        size = rng.choice([0, 0, rng.randint(1, 64), rng.randint(1, 600), 512, 4096,
                           rng.randint(1, 65536)])
        if opcode in DATA_OUT or rng.random() < 0.1:
            return 0, rng.randbytes(size) if size else None
        return size, None

    def mutate(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(0, 4)):
            if out:
                out[self.rng.randrange(len(out))] = self.rng.randrange(256)
        if self.rng.random() < 0.2:
            out = out[: self.rng.randint(0, len(out))]
        return bytes(out)

    def one(self, dev: sgio.SgIoDevice, layouts: list) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.35:  # any opcode, random bytes
            op = rng.choice([o for o in range(256) if o not in CORE_STATE])
            if op == 0x7F:
                cdb = bytearray(rng.randbytes(16))
                cdb[7] = 8
            else:
                cdb = bytearray(rng.randbytes(_CDB_SIZE[op >> 5]))
            cdb[0] = op
            self.send(dev, bytes(cdb), *self.buffers(op))
        elif kind < 0.75:  # one of the LUN's opcodes, random fields
            layout = rng.choice([la for la in layouts if la.OPCODE not in CORE_STATE])
            values = {f.name: rng.choice([0, f.mask, rng.randint(0, f.mask),
                                          rng.randint(0, min(16, f.mask))])
                      for f in layout.FIELDS
                      if not (f.name == "service_action" and layout.SERVICE_ACTION is not None)}
            cdb = layout(**values).encode()
            self.send(dev, cdb, *self.buffers(cdb[0]))
        elif kind < 0.88:  # RECEIVE COPY RESULTS, odd allocation lengths
            layout = rng.choice([*xcopy.RECEIVE_COPY_RESULTS, xcopy.ReceiveCopyDigest])
            fields = {"allocation_length": rng.choice([0, 1, 12, 48, 0xFFFFFFFF,
                                                       rng.randint(0, 70000)])}
            if any(f.name == "list_identifier" for f in layout.FIELDS):
                fields["list_identifier"] = rng.randrange(256)
            self.send(dev, layout(**fields).encode(),
                      data_in=rng.choice([0, 12, 512, rng.randint(1, 65536)]))
        else:  # a valid EXTENDED COPY between the scratch LUNs, mutated
            plist = self.mutate(rng.choice(self.lists))
            cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
            self.send(dev, cdb, data_out=plist)


def hostile_loop(stop: threading.Event, counts: Counts, seed: int,
                 scratch: dict[str, tuple[provision.Lun, str]]) -> None:
    d_lun, d_sg = scratch["disk"]
    t_lun, t_sg = scratch["tape"]
    d = IdentificationCscd(bytes.fromhex(d_lun.naa), 0, block_length=BS)
    t = IdentificationCscd(bytes.fromhex(t_lun.naa), 1)
    lists = [
        xcopy.build_extended_copy([d, t], [BlockToStream(0, 1, 64, 0, 4096)]),
        xcopy.build_extended_copy([t, d], [xcopy.StreamToBlock(0, 1, 1, 100, 512)],
                                  list_identifier=251, list_id_usage=ListIdUsage.HOLD),
        xcopy.build_extended_copy([d, d], [xcopy.BlockToBlock(0, 1, 16, 0, 1000)]),
    ]
    h = Hostile(random.Random(seed), counts, lists)
    with sgio.SgIoDevice(d_sg) as disk, sgio.SgIoDevice(t_sg) as tape:
        plan = [(disk, Disk.layouts()), (tape, Tape.layouts())]
        while not stop.is_set():
            dev, layouts = h.rng.choice(plan)
            h.one(dev, layouts)
            time.sleep(0.005)  # leave the daemon's time mostly to the real load


def start_fio(devs: list[str], seconds: int, out: Path, stop_file: Path) -> subprocess.Popen:
    job = out.with_suffix(".fio")
    job.write_text(
        "[global]\nioengine=libaio\ndirect=1\niodepth=4\nrw=randwrite\n"
        "bssplit=4k/40:16k/20:64k/20:256k/10:1m/10\nblockalign=4k\n"
        f"verify=crc32c\nverify_backlog=32\nverify_fatal=1\ntime_based=1\nruntime={seconds}\n"
        + "".join(f"[{os.path.basename(d)}]\nfilename={d}\nsize={FIO_DISK}\n" for d in devs))
    stop_file.unlink(missing_ok=True)
    return subprocess.Popen(["fio", "--output-format=json", f"--output={out}",
                             f"--trigger-file={stop_file}", "--trigger=true", str(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fio_result(fio: subprocess.Popen, out: Path, counts: Counts) -> tuple[int, int]:
    """(bytes written, bytes verified); errors go to ``counts``."""
    _, err = fio.communicate(timeout=300)
    if fio.returncode != 0:
        counts.error(f"fio exited {fio.returncode}: {err.strip()[-500:]}")
    text = out.read_text() if out.exists() else ""
    if "{" not in text:
        counts.error("fio wrote no report")
        return 0, 0
    jobs = json.loads(text[text.index("{"):])["jobs"]
    for j in jobs:
        if j["error"]:
            counts.error(f"fio job {j['jobname']}: error {j['error']}")
    return (sum(j["write"]["io_bytes"] for j in jobs), sum(j["read"]["io_bytes"] for j in jobs))


def main() -> int:
    require_guest("bench/soak.py")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=0.0,
                    help="seconds between samples (default: the run in 20 rows)")
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="RssAnon may grow this fraction from the middle to the last third")
    ap.add_argument("--seed", type=int, default=None, help="the hostile commands' seed")
    ap.add_argument("--where", action="store_true",
                    help="also print where the anonymous memory is at each sample: glibc's "
                         "main heap, its other arenas, Python's object arenas, large "
                         "buffers, thread stacks (from /proc/PID/smaps)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="run the daemon under tracemalloc and print its largest Python "
                         "allocation sites at the first and the last sample (slows it)")
    args = ap.parse_args()
    if not shutil.which("fio"):
        sys.exit("fio is not installed (on the host, which the guest shares)")
    seconds = max(int(args.minutes * 60), 60)
    interval = args.interval or max(seconds / 20, 5.0)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    shm = Path("/dev/shm/lio-xcopy-soak")
    shm.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("LIO_XCOPY_WORK", "/tmp")) / "bench" / "soak"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "daemon.log"
    pidfile = shm / "pid"
    pidfile.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "lio_xcopy", "daemon", "--pidfile", str(pidfile)]
    traces = work / "tracemalloc"
    if args.tracemalloc:
        cmd[1:3] = ["-X", "tracemalloc=8", "-c", TRACED_DAEMON.format(out=str(traces))]
    daemon = Daemon.start("lio-xcopy", cmd, log,
                          lambda p: pidfile.exists(), timeout=180)
    counts = Counts()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    samples: list[Sample] = []
    fio = None
    devs: dict[str, provision.KernelDevice] = {}
    alive = True
    written = verified = 0
    try:
        provision.delete_all()
        data = os.urandom(COPY_SIZE)
        (shm / "src.img").write_bytes(data)
        luns = {
            "io0": provision.create_disk("soakio0", shm / "io0.img", FIO_DISK),
            "io1": provision.create_disk("soakio1", shm / "io1.img", FIO_DISK),
            "src": provision.create_disk("soaksrc", shm / "src.img", COPY_SIZE),
            "tape": provision.create_tape("soaktape", shm / "tape.aws", 2 * COPY_SIZE),
            "sdisk": provision.create_disk("soakscratch", shm / "scratch.img", SCRATCH),
            "stape": provision.create_tape("soakstape", shm / "stape.aws", 8 * MiB),
        }
        for lun in luns.values():
            provision.export_loopback(lun)
        devs = {k: provision.find_kernel_device(lun) for k, lun in luns.items()}
        for d in devs.values():  # REPORTED LUNS DATA HAS CHANGED, the tapes' power on
            for _ in range(4):
                if subprocess.run(["sg_turs", str(d.sg)], capture_output=True).returncode == 0:
                    break
        print(f"soak: {seconds} s, a sample every {interval:.0f} s, hostile seed {seed}; "
              f"fio on {devs['io0'].block} {devs['io1'].block}, copies {devs['src'].sg} -> "
              f"{devs['tape'].sg}, hostile on {devs['sdisk'].sg} {devs['stape'].sg}; "
              f"daemon pid {daemon.pid}, log {log}", flush=True)
        fio = start_fio([str(devs["io0"].block), str(devs["io1"].block)], seconds + 120,
                        work / "fio.json", work / "fio.stop")
        threads = [
            threading.Thread(target=copy_loop, name="copies", daemon=True,
                             args=(stop, counts, luns["src"], str(devs["src"].sg),
                                   luns["tape"], str(devs["tape"].sg), data)),
            threading.Thread(target=hostile_loop, name="hostile", daemon=True,
                             args=(stop, counts, seed,
                                   {"disk": (luns["sdisk"], str(devs["sdisk"].sg)),
                                    "tape": (luns["stape"], str(devs["stape"].sg))})),
        ]
        for th in threads:
            th.start()
        t0 = time.monotonic()
        print(f"\n{'t/s':>6} {'VmRSS':>7} {'anon':>7} {'shared':>7} {'fds':>4} "
              f"{'threads':>7} {'copies':>6} {'polls':>6} {'hostile':>8} {'errors':>6}"
              "   (RSS in MiB)", flush=True)
        while True:
            now = time.monotonic() - t0
            s = sample(daemon.pid, now)
            samples.append(s)
            print(f"{now:6.0f} {s.rss_kib / 1024:7.1f} {s.anon_kib / 1024:7.1f} "
                  f"{s.shared_kib / 1024:7.1f} {s.fds:4d} {s.threads:7d} "
                  f"{counts.copies:6d} {counts.copy_polls:6d} {counts.commands:8d} "
                  f"{len(counts.errors):6d}", flush=True)
            if args.where:
                print("       " + "  ".join(f"{k} {v / 1024:.1f}"
                                            for k, v in anon_where(daemon.pid).items()),
                      flush=True)
            if args.tracemalloc and (len(samples) == 1 or now >= seconds):
                print(tracemalloc_top(daemon.pid, traces), flush=True)
            if now >= seconds or daemon.proc.poll() is not None:
                break
            time.sleep(min(interval, max(seconds - now, 0.1)))
            if fio.poll() is not None:
                counts.error(f"fio ended early (exit {fio.returncode})")
                break
    finally:
        stop.set()
        if fio is not None:
            (work / "fio.stop").touch()
        for th in threads:
            th.join(timeout=600)
        if fio is not None:
            try:
                written, verified = fio_result(fio, work / "fio.json", counts)
            finally:
                if fio.poll() is None:
                    fio.kill()
                    fio.wait()
        alive = daemon.proc.poll() is None
        if alive:  # every LUN still answers INQUIRY
            for name, d in devs.items():
                if "Vendor identification" not in run("sg_inq", str(d.sg), check=False):
                    counts.error(f"{name} ({d.sg}) does not answer INQUIRY")
        provision.delete_all()
        rc = daemon.stop()
        for f in shm.glob("*"):
            f.unlink()
    text = log.read_text(errors="replace")
    if not alive:
        counts.error(f"the daemon died: exit {daemon.proc.returncode}")
    if rc != 0:
        counts.error(f"the daemon exited {rc} on SIGTERM")
    for bad in ("Traceback", "failed unexpectedly"):
        if bad in text:
            counts.error(f"the daemon's log has {bad!r}")
    print()
    ok = True
    # Judged: the anonymous RSS (what Python allocates), by the median and the maximum of
    # each third: a leak raises the level, a held buffer the peaks. VmRSS also counts the
    # pages of the rings' data areas that the kernel maps in while commands use them and
    # takes back when it reclaims blocks: not judged.
    values = [s.rss_kib for s in samples]
    _, mid, last = levelled(values, 0, 0)
    print(f"soak: VmRSS: max of the middle third {mid / 1024:.1f} MiB, of the last "
          f"third {last / 1024:.1f} MiB (not judged)")
    for name, values, tol, slack, stat in (
            ("RssAnon", [s.anon_kib for s in samples], args.tolerance, 2048,
             statistics.median),
            ("RssAnon", [s.anon_kib for s in samples], args.tolerance, 2048, max),
            ("fds", [s.fds for s in samples], 0.0, 2, max),
            ("threads", [s.threads for s in samples], 0.0, 2, max)):
        flat, mid, last = levelled(values, tol, slack, stat)
        ok &= flat
        what = "median" if stat is statistics.median else "max"
        fmt = (lambda v: f"{v / 1024:.1f} MiB") if name == "RssAnon" else (lambda v: f"{v:g}")
        print(f"soak: {name}: {what} of the middle third {fmt(mid)}, of the last third "
              f"{fmt(last)}: {'levelled off' if flat else 'STILL GROWING'}")
    print(f"soak: {len(samples)} samples over {samples[-1].t if samples else 0:.0f} s; "
          f"hostile commands {counts.commands} (" + ", ".join(
              f"{k} {v}" for k, v in counts.statuses.most_common()) + f"); copies done "
          f"{counts.copies} ({counts.copies * COPY_SIZE // MiB} MiB, {counts.copy_polls} COPY "
          f"STATUS polls); fio {written} bytes written, {verified} verified; errors "
          f"{len(counts.errors)}")
    verdict = ok and not counts.errors
    print(f"soak: verdict: {'PASS' if verdict else 'FAIL'}; daemon log {log}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
