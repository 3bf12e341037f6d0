"""A command whose cost grows with its parameters holds up no other LUN: while one LUN
reads a MiB from storage that takes 1.5 s to answer (device-mapper `delay`), writes
millions of filemarks or spaces over them, another LUN answers TEST UNIT READY at once,
and the daemon's memory stays bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, dm_disk, extra_lun

from lio_xcopy.control import provision
from lio_xcopy.scsi import sbc, spc, ssc
from lio_xcopy.sg import sgio

BS = 512
SIZE = 16 * MiB
DELAY_MS = 1500
DELAYED = (4 * MiB // BS, 4 * MiB // BS)  # sectors [4 MiB, 8 MiB) answer after DELAY_MS


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def while_running(other: str, call) -> tuple[object, list[float]]:
    """Run ``call`` on a thread; meanwhile send TEST UNIT READY to ``other`` again and
    again. Returns what ``call`` returned and the latencies of the TURs answered while it
    ran."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["result"] = call()
        except BaseException as e:
            out["error"] = e

    latencies: list[float] = []
    with sgio.SgIoDevice(other) as dev:
        t = threading.Thread(target=target)
        t.start()
        time.sleep(0.3)  # the long command is on the ring
        while t.is_alive():
            t0 = time.monotonic()
            dev.execute(spc.TestUnitReady().encode(), timeout=120)
            if t.is_alive():
                latencies.append(time.monotonic() - t0)
        t.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("result"), latencies


@pytest.fixture(scope="module")
def slow_disk(lab):
    data = bytes(range(256)) * (SIZE // 256)
    start, length = DELAYED
    end = SIZE // BS - start - length

    def table(loop: str) -> str:
        return (f"0 {start} linear {loop} 0\n"
                f"{start} {length} delay {loop} {start} {DELAY_MS}\n"
                f"{start + length} {end} linear {loop} {start + length}\n")

    with dm_disk(lab, "vmslow", data, table, modules=("dm_mod", "dm_delay")) as (_, dev):
        yield dev, data


def test_a_slow_read_holds_up_no_other_lun(lab, slow_disk):
    dev, data = slow_disk
    lba, blocks = DELAYED[0], MiB // BS

    def read() -> bytes:
        with sgio.SgIoDevice(str(dev.sg)) as d:
            return d.execute(sbc.Read16(lba=lba, transfer_length=blocks).encode(),
                             data_in=MiB, timeout=120).data

    got, lat = while_running(lab.disk_sg, read)
    print(f"\nslow READ: {len(lat)} TURs on another LUN meanwhile, worst "
          f"{max(lat, default=0) * 1000:.0f} ms")
    assert got == data[lba * BS : lba * BS + MiB]
    # a loop held by the READ would answer at most one TUR before the READ ends
    assert len(lat) >= 5, lat


@pytest.fixture
def small_tape(lab):
    lun = provision.create_tape("vmfmtape", lab.work / "fmtape.aws", SIZE)
    try:
        dev = extra_lun(lab, lun)
        clear_unit_attention(str(dev.sg))
        yield dev, lab.work / "fmtape.aws"
    finally:
        provision.delete(lun.name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_millions_of_filemarks_hold_up_no_other_lun_and_take_bounded_memory(lab, small_tape):
    dev, path = small_tape
    pid = lab.daemon.proc.pid
    rss0 = _rss_kib(pid)
    with sgio.SgIoDevice(str(dev.sg)) as tape:
        tape.execute(ssc.Rewind().encode())

        def write_filemarks():
            return tape.execute(ssc.WriteFilemarks6(filemark_count=0xFFFFFF).encode(),
                                timeout=600, check=False)

        res, lat_w = while_running(lab.disk_sg, write_filemarks)
        # the cartridge fills before 16 M filemarks fit: end of medium, VOLUME OVERFLOW
        assert res.status == 0x02 and res.sense is not None and res.sense.eom, res.explain()
        marks = path.stat().st_size // 6
        assert marks > 2_000_000, marks
        tape.execute(ssc.Rewind().encode(), timeout=600)

        def space():
            return tape.execute(ssc.Space6(code=ssc.SPACE_FILEMARKS,
                                            count=0x7FFFFF).encode(), timeout=600, check=False)

        res, lat_s = while_running(lab.disk_sg, space)
        assert res.status == 0x02 and res.sense is not None, res.explain()  # end of data
        pos = tape.execute(ssc.ReadPositionShort(allocation_length=20).encode(),
                           data_in=20).data
        assert int.from_bytes(pos[4:8], "big") == marks  # at end of data, after every mark
        rss1 = _rss_kib(pid)
        tape.execute(ssc.Rewind().encode(), timeout=600)
        tape.execute(ssc.Erase6(long=1).encode(), timeout=600)
    lat = lat_w + lat_s
    print(f"\n{marks} filemarks: RSS {rss0} -> {rss1} KiB; {len(lat)} TURs on another LUN "
          f"meanwhile, worst {max(lat, default=0) * 1000:.0f} ms")
    assert rss1 - rss0 < 24 * 1024, (rss0, rss1)  # 24 bytes an object would be 64 MiB
