"""systemd as PID 1: what scripts/install puts on a target host runs as an administrator
expects. The units start the daemon (Type=notify: active once it is ready), the boot
transaction restores /etc/lio-xcopy/saveconfig.json (its LUNs appear in configfs), and
``systemctl reload lio-xcopy`` makes the daemon look again (SIGHUP, logged).

Runs in a guest booted with systemd as init (``scripts/test --systemd``: vng --systemd),
installing offline from the wheels the host fetched into LIO_XCOPY_WHEELS. Skipped in the
shared guest, whose init is virtme-ng's.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run

REPO = Path(__file__).resolve().parents[2]
BIN = "/usr/local/bin/lio-xcopy"
SAVED = Path("/etc/lio-xcopy/saveconfig.json")
CONFIGFS = Path("/sys/kernel/config/target")
# what an administrator's root shell has: not the repository's .venv
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(
    Path("/proc/1/comm").read_text().strip() != "systemd",
    reason="needs systemd as PID 1: scripts/test --systemd",
)


def systemctl(*args: str, check: bool = True):
    return run("systemctl", *args, check=check, timeout=180)


def journal(unit: str) -> str:
    return run("journalctl", "-b", "-u", unit, "--no-pager", "-o", "cat", check=False).stdout


def wait_for(what: str, cond, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{journal('lio-xcopy')}")
        time.sleep(0.5)


def user_backstores() -> set[str]:
    return {p.name for p in (CONFIGFS / "core").glob("user_*/*") if p.is_dir()}


def test_units_start_restore_at_boot_and_reload() -> None:
    wheels = os.environ.get("LIO_XCOPY_WHEELS", "")
    assert Path(wheels, "wheels.ok").is_file(), "run it with scripts/test --systemd"
    env = {**os.environ, "PATH": PATH}
    env.pop("VIRTUAL_ENV", None)
    work = Path(os.environ["LIO_XCOPY_WORK"]) / "systemd"
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    p = subprocess.run([str(REPO / "scripts" / "install"), "--find-links", wheels, "--enable"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, f"scripts/install exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    print(f"install: {time.monotonic() - t0:.0f} s\n{p.stdout}")

    # the daemon, started by its unit from the installed command
    assert systemctl("is-active", "lio-xcopy").stdout.strip() == "active"
    pid = systemctl("show", "-p", "MainPID", "--value", "lio-xcopy").stdout.strip()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1:3] == [BIN.encode(), b"daemon"], cmdline
    # the venv's interpreter runs it (the link's target), not the repository's
    assert cmdline[0].startswith(b"/opt/lio-xcopy/venv/bin/python"), cmdline
    assert systemctl("is-enabled", "lio-xcopy-restore").stdout.strip() == "enabled"
    man = subprocess.run(["man", "-w", "lio-xcopy"], capture_output=True, text=True, env=env)
    assert man.stdout.strip() == "/usr/local/share/man/man8/lio-xcopy.8", man.stderr

    # a saved configuration: one disk exported over loopback
    from lio_xcopy.control import config as c

    img = work / "sysd0.img"
    img.unlink(missing_ok=True)
    with img.open("wb") as f:
        f.truncate(16 << 20)
    disk = c.DiskConfig("sysd0", img, 16 << 20, 512, "5e3c1a2b-7d4f-4e6a-9b0c-1d2e3f405162")
    c.save(c.SavedConfig(disks=(disk,), loopback=(c.LoopbackTarget(
        "naa.5001405e3c1a2b7d", {0: "sysd0"}),)), SAVED)
    assert json.loads(SAVED.read_text())["disks"][0]["name"] == "sysd0"
    assert "sysd0" not in user_backstores()

    # the boot: both units stopped, then the transaction that starts multi-user.target
    # pulls them in through their [Install] links, the daemon first
    systemctl("stop", "lio-xcopy-restore", "lio-xcopy")
    systemctl("start", "multi-user.target")
    assert systemctl("is-active", "lio-xcopy").stdout.strip() == "active"
    assert systemctl("is-active", "lio-xcopy-restore").stdout.strip() == "active", \
        journal("lio-xcopy-restore")
    assert "sysd0" in user_backstores(), journal("lio-xcopy-restore")
    luns = list((CONFIGFS / "loopback" / "naa.5001405e3c1a2b7d").glob("tpgt_1/lun/lun_0/*"))
    assert luns, "the restored LUN is not exported"
    status = run(BIN, "status").stdout
    assert "sysd0" in status, status

    # reload: SIGHUP, the daemon looks again and says so; it stays the same process
    pid = systemctl("show", "-p", "MainPID", "--value", "lio-xcopy").stdout.strip()
    before = journal("lio-xcopy").count("reload: looking for devices again")
    systemctl("reload", "lio-xcopy")
    wait_for("the reload's log line", lambda: journal("lio-xcopy").count(
        "reload: looking for devices again") > before)
    assert systemctl("show", "-p", "MainPID", "--value", "lio-xcopy").stdout.strip() == pid
    assert systemctl("is-active", "lio-xcopy").stdout.strip() == "active"

    # leave nothing behind a stopped daemon: LUNs first, then the units
    run(BIN, "clearconfig", "confirm=true")
    systemctl("stop", "lio-xcopy-restore", "lio-xcopy")
    assert "Traceback" not in journal("lio-xcopy")
