"""LUN churn: 20 disk LUNs created and deleted in quick batches while O_DIRECT I/O runs
on the session disk. Each new uio device's "add" uevent can come before the kernel made
its ``maps/map0`` (``device_add`` then ``uio_dev_add_attributes``): the daemon must
serve every LUN anyway (tried again with a back-off), none left unserved, the I/O must
end without error and with the right bytes, and the daemon must live."""

from __future__ import annotations

import os
import re
import subprocess
import time

from conftest import MiB, clear_unit_attention, run

from lio_xcopy.control import provision

LUNS = 20
BATCH = 5  # created back to back; the previous batch is deleted right after
IO_OFFSET = 40 * MiB  # the region of the session disk the I/O loop rewrites
IO_SIZE = 4 * MiB
READY = re.compile(r"(churn\d+): ready after (\d+) attempt\(s\) in ([\d.]+) s")

# write the region, read it back, compare; until told to stop; prints the rounds done
IO_LOOP = """
set -u
n=0
while [ ! -e "$STOP" ]; do
    dd if="$SRC" of="$DEV" bs=64k seek=$((OFFSET / 65536)) oflag=direct conv=notrunc \
        status=none || exit 1
    dd if="$DEV" of="$BACK" bs=64k skip=$((OFFSET / 65536)) count=$((SIZE / 65536)) \
        iflag=direct status=none || exit 2
    cmp -s "$SRC" "$BACK" || exit 3
    n=$((n + 1))
done
echo "$n"
"""


def _wait(what: str, cond, timeout: float, log_text) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log_text()[-3000:]}"
        time.sleep(0.1)


def _served(lab, since: int, name: str) -> bool:
    return re.search(rf"serving {name} \(", lab.daemon.text()[since:]) is not None


def _kernel_device(lab, lun):
    """The LUN's initiator-side device; if it does not come, what the kernel and the
    daemon said about it."""
    from lio_xcopy.errors import ConfigError

    try:
        return provision.find_kernel_device(lun, timeout=60)
    except ConfigError as e:
        said = [ln for ln in lab.daemon.text().splitlines() if lun.name in ln]
        raise AssertionError(f"{e}\n--- daemon on {lun.name} ---\n" + "\n".join(said)
                             + "\n--- dmesg ---\n"
                             + "\n".join(run("dmesg").stdout.splitlines()[-40:])) from e


def _check_answers(name: str, sg: str, size: int) -> None:
    """INQUIRY (never held back by a unit attention) and READ CAPACITY (after the unit
    attentions of the LUN changes are cleared) answered by the daemon."""
    out = run("sg_inq", sg).stdout
    assert "LIO-ORG" in out and "lio-xcopy disk" in out, (name, out)
    for _ in range(4):
        p = run("sg_readcap", sg, check=False)
        if p.returncode == 0:
            break
    assert re.search(rf"Number of logical blocks={size // 512}\b", p.stdout), (name, p.stdout,
                                                                                p.stderr)


def test_luns_created_and_deleted_under_io_are_all_served(lab):
    since = len(lab.daemon.text())
    region = lab.work / "churn.orig"
    run("dd", f"if={lab.sd}", f"of={region}", "bs=64k", f"skip={IO_OFFSET // 65536}",
        f"count={IO_SIZE // 65536}", "iflag=direct", "status=none")
    src, back, stop = lab.work / "churn.src", lab.work / "churn.back", lab.work / "churn.stop"
    src.write_bytes(os.urandom(IO_SIZE))
    stop.unlink(missing_ok=True)
    io = subprocess.Popen(
        ["sh", "-c", IO_LOOP], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SRC": str(src), "BACK": str(back), "STOP": str(stop),
             "DEV": lab.sd, "OFFSET": str(IO_OFFSET), "SIZE": str(IO_SIZE)})
    made: dict[str, int] = {}  # name -> size, created and not yet deleted
    served: list[str] = []
    t0 = time.monotonic()
    try:
        previous: list[str] = []
        for first in range(0, LUNS, BATCH):
            batch = []
            for i in range(first, first + BATCH):  # back to back: no wait in between
                name, size = f"churn{i}", (1 + i % 4) * MiB
                lun = provision.create_disk(name, lab.work / f"{name}.img", size)
                made[name] = size
                provision.export_loopback(lun)
                batch.append(lun)
            for name in previous:  # removes interleaved with the adds above
                provision.delete(name)
                del made[name]
            for lun in batch:
                _wait(f"the daemon serving {lun.name}", lambda n=lun.name: _served(lab, since, n),
                      60, lab.daemon.text)
                dev = _kernel_device(lab, lun)
                _check_answers(lun.name, str(dev.sg), made[lun.name])
                served.append(lun.name)
            previous = [lun.name for lun in batch]
            assert io.poll() is None, io.communicate()
        for name in previous:
            provision.delete(name)
            del made[name]
        churn_s = time.monotonic() - t0
        stop.touch()
        out, err = io.communicate(timeout=120)
    finally:
        stop.touch()
        if io.poll() is None:
            io.kill()
            io.wait()
        for name in made:
            provision.delete(name)
        run("dd", f"if={region}", f"of={lab.sd}", "bs=64k", f"seek={IO_OFFSET // 65536}",
            "oflag=direct", "conv=notrunc", "status=none")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
    assert io.returncode == 0, (io.returncode, err)
    rounds = int(out.strip())
    assert rounds > 0
    assert back.read_bytes() == src.read_bytes()
    assert served == [f"churn{i}" for i in range(LUNS)]
    _wait("every churn LUN's end", lambda: all(
        f"LUN churn{i} removed\n" in lab.daemon.text()[since:] for i in range(LUNS)),
        60, lab.daemon.text)
    text = lab.daemon.text()[since:]
    assert lab.daemon.alive()
    assert "still not ready after" not in text and "cannot serve" not in text, text[-3000:]
    assert "Traceback" not in text
    assert "uio device gone" not in text and "its uio device failed" not in text, text[-3000:]
    for i in range(LUNS):
        assert text.count(f"LUN churn{i} removed\n") == 1, f"churn{i}"
        assert len(re.findall(rf"serving churn{i} \(", text)) == 1, f"churn{i}"
    retries = READY.findall(text)
    missed = re.findall(r"(churn\d+) \([^)]*\): a device of ours that was not served", text)
    not_ready = text.count("not ready yet")
    maps_late = text.count("not ready yet (cannot read uio device")
    serial_late = text.count("wwn/vpd_unit_serial is not set yet)")
    run("sg_turs", lab.disk_sg)
    run("sg_turs", lab.tape_sg)
    print(f"\nchurn: {LUNS} LUNs created, {len(served)} served and answered INQUIRY + READ "
          f"CAPACITY, all stopped, in {churn_s:.1f} s; I/O on {lab.sd}: {rounds} rounds of "
          f"{IO_SIZE // MiB} MiB written + read back, no error; uio devices not ready at "
          f"their add event: {not_ready} ({maps_late} without maps/map0/size, {serial_late} "
          f"without a unit serial); served after a retry: "
          f"{[(n, int(a), float(s)) for n, a, s in retries] or 'none'}; found by the "
          f"rescan: {missed or 'none'}")


def test_commands_queued_before_the_daemon_opens_a_new_lun_are_answered(lab, monkeypatch):
    """sd probes a LUN as soon as it is exported. Here the test holds the LUN's uio node
    open from its enable (TCMU lets one process open it; the daemon's tries get EBUSY
    and are repeated) until sd's INQUIRY is queued on the ring. Nobody has read that
    ring: the daemon answers what it finds there, where a ring an earlier daemon left is
    reset and its commands failed BUSY (test_crash.py)."""
    import threading
    from pathlib import Path

    from lio_xcopy.control import rtslib_adapter

    # the class whose _configure writes the unit serial, after the enable
    storage_object = rtslib_adapter.rtslib().UserBackedStorageObject.__mro__[1]
    since = len(lab.daemon.text())
    path = lab.work / "early0.img"
    held: list[int] = []
    configure = storage_object._configure

    def hold_the_node(so, wwn=None):
        if so.name == "early0":  # enabled: its uio device is there
            for uio in Path("/sys/class/uio").glob("uio*"):
                if f"/{so.name}/" in (uio / "name").read_text():
                    held.append(os.open(f"/dev/{uio.name}", os.O_RDWR))
        configure(so, wwn)

    monkeypatch.setattr(storage_object, "_configure", hold_the_node)
    export = None
    try:
        lun = provision.create_disk("early0", path, 2 * MiB)
        monkeypatch.undo()
        assert held, "rtslib no longer configures a storage object as this test expects"
        export = threading.Thread(target=provision.export_loopback, args=(lun,))
        export.start()  # blocks in the kernel until sd's INQUIRY is answered
        time.sleep(2)
        assert export.is_alive(), "the export did not wait for the INQUIRY"
        os.close(held.pop())
        export.join(60)
        assert not export.is_alive(), "the export never returned"
        dev = _kernel_device(lab, lun)
        _check_answers("early0", str(dev.sg), 2 * MiB)
        text = lab.daemon.text()[since:]
        queued = re.search(r"early0: (\d+) command\(s\) queued before the daemon opened the "
                           r"new LUN: serving them", text)
        assert queued is not None and int(queued.group(1)) >= 1, text[-3000:]
        assert "left on the ring" not in text, text[-3000:]
        assert "WARNING" not in text, text[-3000:]
    finally:
        monkeypatch.undo()
        for fd in held:
            os.close(fd)
        if export is not None:
            export.join(60)
        provision.delete("early0")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
