"""The progress display that copy, backup and restore share."""

from __future__ import annotations

import io
import json

import pytest

from lio_xcopy.initiator import progress as pg

MiB = 1 << 20


def test_progress_line():
    assert pg.format_progress(0, 96 * MiB, 0.0) == (
        "[........................]   0%      0.0/96.0 MiB     0.0 MiB/s  ETA --:--")
    assert pg.format_progress(24 * MiB, 96 * MiB, 2.0) == (
        "[######..................]  25%     24.0/96.0 MiB    12.0 MiB/s  ETA 0:06")
    assert pg.format_progress(96 * MiB, 96 * MiB, 8.0).endswith("100%     96.0/96.0 MiB"
                                                                "    12.0 MiB/s  ETA 0:00")
    assert pg.format_progress(MiB, 10_000 * MiB, 1.0).endswith(
        "0%      0.0/9.8 GiB     1.0 MiB/s  ETA 2:46:39")
    assert "   16.0/32.0 KiB" in pg.format_progress(16 << 10, 32 << 10, 1.0)


def test_a_terminal_gets_one_line_redrawn_in_place():
    tty = io.StringIO()
    p = pg.Progress(4 * MiB, tty, pg.BAR)
    p.show(MiB, 1.0)
    p.show(2 * MiB, 2.0)
    p.finish(4 * MiB, 4.0)
    drawn = tty.getvalue().split("\r")
    assert len(drawn) == 4 and drawn[-1].endswith("\n") and "in 0:04" in drawn[-1]
    assert len(drawn[-1]) > len(drawn[-2])  # the last draw covers the one before


def test_elsewhere_a_line_per_update_every_interval_and_no_carriage_return():
    now = [0.0]
    log = io.StringIO()
    p = pg.Progress(4 * MiB, log, pg.LINES, interval=5, clock=lambda: now[0])
    for t in range(12):
        now[0] = float(t)
        p.show(t * MiB // 4, max(t, 1))
    p.finish(4 * MiB, 12.0)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 4  # at 0, 5, 10 s and the end
    assert lines[-1].endswith("in 0:12")


def test_json_one_object_per_line():
    now = [0.0]
    out = io.StringIO()
    p = pg.Progress(4 * MiB, out, pg.JSON, interval=0, clock=lambda: now[0])
    p.show(0, 0.0)
    p.show(MiB, 1.0)
    p.finish(4 * MiB, 4.0)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert docs[0] == {"bytes": 0, "total": 4 * MiB, "percent": 0.0, "mib_per_s": 0.0,
                       "elapsed": 0.0, "eta": None, "done": False}
    assert docs[1]["percent"] == 25.0 and docs[1]["eta"] == 3.0
    assert docs[-1] == {"bytes": 4 * MiB, "total": 4 * MiB, "percent": 100.0,
                        "mib_per_s": 1.0, "elapsed": 4.0, "eta": 0.0, "done": True}


def test_quiet_writes_nothing_and_abandon_ends_a_drawn_line():
    out = io.StringIO()
    p = pg.Progress(MiB, out, pg.QUIET)
    p.show(1, 1.0)
    p.finish(MiB, 1.0)
    p.abandon()
    assert out.getvalue() == ""
    p = pg.Progress(MiB, out, pg.BAR)
    p.show(1, 1.0)
    p.abandon()
    assert out.getvalue().endswith("\n")  # an error printed next starts its own line
    p.abandon()
    assert out.getvalue().count("\n") == 1


@pytest.mark.parametrize(("setting", "tty", "mode"), [
    (True, True, pg.BAR), (True, False, pg.LINES), (False, True, pg.QUIET),
    ("json", True, pg.JSON), (True, None, pg.LINES)])  # a StringIO is no terminal
def test_make_picks_the_mode(setting, tty, mode):
    assert pg.make(1, io.StringIO(), setting=setting, tty=tty).mode == mode
