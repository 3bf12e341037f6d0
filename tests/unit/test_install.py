"""scripts/install: the file layout on a target host, staged under --destdir.

The venv is prepared as an earlier install leaves it (its stamp names this tree), so the
script lays down the command, units, man pages and completion without building the
wheel; building and installing the wheel runs in tests/vm/test_systemd.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install"
VENV = "/opt/lio-xcopy/venv"
UNITS = ("lio-xcopy.service", "lio-xcopy-restore.service")


def install(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(INSTALL), *map(str, args)], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def destdir(tmp_path: Path) -> Path:
    """A staging root holding a venv that an install made from this very tree."""
    stamp = install("--tree-hash")
    assert stamp.returncode == 0, stamp.stderr
    venv = tmp_path / VENV.lstrip("/")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "lio-xcopy").write_text("#!/bin/sh\necho lio-xcopy 0.1.0\n")
    (venv / "bin" / "lio-xcopy").chmod(0o755)
    (venv / ".lio-xcopy-source").write_text(stamp.stdout)
    return tmp_path


def exec_start(unit: Path) -> str:
    lines = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    return lines[0].removeprefix("ExecStart=").split()[0]


def test_install_puts_command_units_man_pages_and_completion_in_place(destdir: Path) -> None:
    p = install("--destdir", destdir)
    assert p.returncode == 0, p.stderr
    link = destdir / "usr/local/bin/lio-xcopy"
    assert os.readlink(link) == f"{VENV}/bin/lio-xcopy"
    for unit in UNITS:
        installed = destdir / "usr/local/lib/systemd/system" / unit
        # ExecStart names the installed command, which resolves to the venv's
        assert exec_start(installed) == "/usr/local/bin/lio-xcopy"
        target = destdir / os.readlink(destdir / exec_start(installed).lstrip("/")).lstrip("/")
        assert os.access(target, os.X_OK)
        tree = (REPO / "systemd" / unit).read_text()
        assert installed.read_text() == tree
    for rel, src in (("share/man/man8/lio-xcopy.8", "man/lio-xcopy.8"),
                     ("share/man/man5/lio-xcopy.json.5", "man/lio-xcopy.json.5"),
                     ("share/bash-completion/completions/lio-xcopy", "completion/lio-xcopy")):
        assert (destdir / "usr/local" / rel).read_bytes() == (REPO / src).read_bytes()
        assert (destdir / "usr/local" / rel).stat().st_mode & 0o777 == 0o644


def test_second_install_changes_nothing(destdir: Path) -> None:
    assert install("--destdir", destdir).returncode == 0
    files = [f for f in destdir.rglob("*") if f.is_file() and "venv" not in f.parts]
    before = {f: f.stat().st_mtime_ns for f in files}
    p = install("--destdir", destdir)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"install: lio-xcopy up to date in {VENV}\n"
    assert {f: f.stat().st_mtime_ns for f in files} == before


def test_other_prefix_gets_units_whose_exec_start_names_it(destdir: Path) -> None:
    p = install("--destdir", destdir, "--prefix", "/opt/lx")
    assert p.returncode == 0, p.stderr
    assert os.readlink(destdir / "opt/lx/bin/lio-xcopy") == f"{VENV}/bin/lio-xcopy"
    # systemd does not search /opt/lx/lib/systemd/system: the units go to /etc
    for unit in UNITS:
        assert exec_start(destdir / "etc/systemd/system" / unit) == "/opt/lx/bin/lio-xcopy"
    assert (destdir / "opt/lx/share/man/man8/lio-xcopy.8").is_file()
    assert not (destdir / "usr").exists()


def test_uninstall_removes_what_install_put_there_and_nothing_else(destdir: Path) -> None:
    assert install("--destdir", destdir).returncode == 0
    other = destdir / "usr/local/bin/other-tool"
    other.write_text("#!/bin/sh\n")
    p = install("--destdir", destdir, "--uninstall")
    assert p.returncode == 0, p.stderr
    left = sorted(str(f.relative_to(destdir)) for f in destdir.rglob("*") if not f.is_dir())
    assert left == ["usr/local/bin/other-tool"]


def test_refusals_are_one_line_and_change_nothing(destdir: Path) -> None:
    p = install("--destdir", destdir, "--prefix", "usr/local")
    assert (p.returncode, p.stderr) == (1, "install: --prefix usr/local: give an absolute path\n")
    assert not (destdir / "usr").exists()

    (destdir / "usr/local/bin").mkdir(parents=True)
    (destdir / "usr/local/bin/lio-xcopy").write_text("#!/bin/sh\n")
    p = install("--destdir", destdir)
    assert p.returncode == 1
    assert p.stderr == ("install: /usr/local/bin/lio-xcopy exists and is not a link into a venv:"
                        " move it away, then run again\n")
    assert (destdir / "usr/local/bin/lio-xcopy").read_text() == "#!/bin/sh\n"
    assert not (destdir / "usr/local/lib").exists()

    (destdir / "srv/data").mkdir(parents=True)
    (destdir / "srv/data/db0.img").write_bytes(b"x")
    p = install("--destdir", destdir, "--venv", "/srv/data")
    assert (p.returncode, p.stderr) == (
        1, "install: /srv/data holds files but is not a venv: give another --venv DIR\n")
    assert [f.name for f in (destdir / "srv/data").iterdir()] == ["db0.img"]

    p = install("--destdir", destdir / "empty", "--uninstall")
    assert p.returncode == 1
    assert p.stderr == (f"install: no lio-xcopy install in {VENV} "
                        f"(no {VENV}/lio-xcopy-install.manifest): give its --venv\n")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_finds_the_installed_command_the_units_start(destdir: Path) -> None:
    """systemd's own check of the staged units: ExecStart resolves inside the root."""
    assert install("--destdir", destdir).returncode == 0

    def verify() -> list[str]:
        p = subprocess.run(["systemd-analyze", "verify", f"--root={destdir}", *UNITS],
                           capture_output=True, text=True, timeout=30)
        # the staging root has no modprobe, kill, systemctl or sysinit.target: only the
        # rest counts
        return [line for line in p.stderr.splitlines()
                if "/sbin/modprobe" not in line and "/bin/kill" not in line
                and "/bin/systemctl" not in line and "sysinit.target" not in line]

    assert verify() == []
    (destdir / VENV.lstrip("/") / "bin" / "lio-xcopy").unlink()
    missing = "Command /usr/local/bin/lio-xcopy is not executable: No such file or directory"
    # the restore unit names it twice: ExecStart (restoreconfig) and ExecStop (clearconfig)
    assert verify() == [f"lio-xcopy.service: {missing}",
                        f"lio-xcopy-restore.service: {missing}",
                        f"lio-xcopy-restore.service: {missing}"]


@pytest.mark.skipif(not Path("/usr/share/bash-completion/bash_completion").is_file()
                    or shutil.which("man") is None, reason="needs bash-completion and man-db")
def test_bash_completion_and_man_find_what_was_installed(destdir: Path) -> None:
    assert install("--destdir", destdir).returncode == 0
    share = destdir / "usr/local/share"
    # bash-completion loads completions on demand from $XDG_DATA_DIRS/bash-completion
    p = subprocess.run(["bash", "-c", ". /usr/share/bash-completion/bash_completion; "
                        "__load_completion lio-xcopy; complete -p lio-xcopy"],
                       capture_output=True, text=True, timeout=30,
                       env={**os.environ, "XDG_DATA_DIRS": str(share)})
    assert p.stdout == "complete -F _lio_xcopy lio-xcopy\n", p.stderr
    p = subprocess.run(["man", "-w", "lio-xcopy", "lio-xcopy.json"], capture_output=True,
                       text=True, timeout=30, env={**os.environ, "MANPATH": str(share / "man")})
    assert p.stdout.split() == [str(share / "man/man8/lio-xcopy.8"),
                                str(share / "man/man5/lio-xcopy.json.5")], p.stderr
