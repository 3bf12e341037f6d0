"""``lio-xcopy``'s command line: --help everywhere does nothing else, --version, the
bash completion script and the man pages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from plugins.fake_lio import FakeLio

from lio_xcopy import __version__, cli
from lio_xcopy.control import rtslib_adapter, saved
from lio_xcopy.control.config import SavedConfig
from lio_xcopy.initiator import backup as bk
from lio_xcopy.initiator import backup_cli

ROOT = Path(__file__).resolve().parents[2]
COMPLETION = ROOT / "lio_xcopy" / "data" / "lio-xcopy.bash"
MAN_PAGES = [ROOT / "man" / "lio-xcopy.8", ROOT / "man" / "lio-xcopy.json.5"]

#: every subcommand, with arguments before the help flag (it counts anywhere)
INVOCATIONS = [
    ["daemon"], ["daemon", "-v"], ["copy", "if=/dev/sg1"], ["library"],
    ["library", "/srv/lib", "create", "--slots", "4"], ["backup", "/dev/sda"],
    ["restore", "1", "/dev/sda"], ["catalog"], ["saveconfig"], ["saveconfig", "out.json"],
    ["restoreconfig"], ["restoreconfig", "in.json"], ["status"], ["version"],
    ["completion"],
]


@pytest.fixture
def untouchable(tmp_path, monkeypatch):
    """The current directory is an empty temp directory; anything that would read or
    change the configuration, LIO or a device fails the test."""
    monkeypatch.chdir(tmp_path)

    def forbidden(*a, **k):
        raise AssertionError("--help did something")

    for name in ("save", "restore", "running"):
        monkeypatch.setattr(saved, name, forbidden)
    monkeypatch.setattr(bk, "backup", forbidden)
    monkeypatch.setattr(bk, "restore", forbidden)
    monkeypatch.setattr("lio_xcopy.tcmu.daemon.Daemon", forbidden)
    monkeypatch.setenv("LIO_XCOPY_CATALOG", str(tmp_path / "catalog.db"))
    return tmp_path


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("args", INVOCATIONS, ids=lambda a: "-".join(a))
def test_every_subcommand_helps_and_does_nothing_else(args, flag, untouchable, capsys):
    assert cli.main([*args, flag]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: ") and err == ""
    assert f"lio-xcopy {args[0]}" in out.splitlines()[0]
    assert list(untouchable.iterdir()) == []  # no file named --help, no catalog


def test_saveconfig_help_writes_no_file_named_help(untouchable, capsys):
    assert cli.main(["saveconfig", "--help"]) == 0
    assert not (untouchable / "--help").exists()
    assert "FILE" in capsys.readouterr().out
    (untouchable / "-h").write_text("{}")  # restoreconfig -h must not read it either
    assert cli.main(["restoreconfig", "-h"]) == 0


@pytest.mark.parametrize("cmd", ["saveconfig", "restoreconfig", "status"])
def test_config_commands_refuse_unknown_options_and_extra_files(cmd, untouchable, capsys):
    assert cli.main([cmd, "--bogus"]) == 2
    _, err = capsys.readouterr()
    assert err == (f"lio-xcopy {cmd}: unrecognized arguments: --bogus; see "
                   f"`lio-xcopy {cmd} --help`\n")
    assert cli.main([cmd, "a.json", "b.json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(untouchable.iterdir()) == []


def test_a_file_named_like_an_option_after_double_dash(untouchable, monkeypatch, capsys):
    got = []
    monkeypatch.setattr(saved, "save", lambda path: got.append(path) or SavedConfig())
    assert cli.main(["saveconfig", "--", "-odd.json"]) == 0
    assert got == [Path("-odd.json")]


@pytest.mark.parametrize("argv", [["--version"], ["-V"], ["version"]])
def test_version(argv, capsys):
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"{__version__}\n"


def test_help_command_and_unknown_commands(capsys):
    assert cli.main(["help", "backup"]) == 0
    assert capsys.readouterr().out.startswith("usage: lio-xcopy backup DISK")
    assert cli.main(["help"]) == 0
    assert "completion bash" in capsys.readouterr().out
    assert cli.main(["bogus"]) == 2
    assert capsys.readouterr().err == ("lio-xcopy: unknown command 'bogus'; `lio-xcopy "
                                       "--help` lists the commands\n")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ls_help_is_the_shells_help_for_ls(monkeypatch, capsys):
    from lio_xcopy.control import shell

    assert shell.help_line(["ls", "--help"]) == ["help", "ls"]
    assert shell.help_line(["/backstores/disk", "create", "-h", "name=x"]) == [
        "/backstores/disk", "help", "create"]
    assert shell.help_line(["/iscsi", "--help"]) == ["/iscsi", "help"]
    assert shell.help_line(["ls", "/iscsi"]) == ["ls", "/iscsi"]
    lio = FakeLio()
    assert shell.run(["ls", "--help"], lio=lio) == 0
    out, err = capsys.readouterr()
    assert "ls [path] [depth]" in out and err == ""
    assert shell.run(["/backstores/disk", "create", "--help"], lio=lio) == 0
    assert "create name file [size]" in capsys.readouterr().out
    assert lio.calls == []


# --- completion --------------------------------------------------------------------------
def test_completion_bash_prints_the_packaged_script(capsys):
    assert cli.main(["completion", "bash"]) == 0
    assert capsys.readouterr().out == COMPLETION.read_text()
    assert cli.main(["completion", "zsh"]) == 2
    assert "bash" in capsys.readouterr().err
    assert (ROOT / "completion" / "lio-xcopy").resolve() == COMPLETION.resolve()


def test_completion_knows_every_command_and_backup_option():
    text = COMPLETION.read_text()
    commands = re.search(r'local commands="([^"]*)"', text).group(1).split()
    assert set(cli.COMMANDS) <= set(commands)
    for cmd in ("backup", "restore"):
        for opt in backup_cli.options(cmd):
            assert opt in text, (cmd, opt)


def _complete(line: str) -> list[str]:
    script = (f'source {COMPLETION}; read -ra COMP_WORDS <<<"$LINE"; '
              '[[ $LINE == *" " ]] && COMP_WORDS+=(""); '
              'COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _lio_xcopy; printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "--norc", "-c", script], env={**os.environ, "LINE": line},
                       capture_output=True, text=True, timeout=30, check=True)
    return sorted(x for x in r.stdout.splitlines() if x)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_completion_in_bash():
    assert _complete("lio-xcopy sa") == ["saveconfig"]
    assert _complete("lio-xcopy backup /dev/sda --sl") == ["--slot"]
    assert _complete("lio-xcopy restore 1 /dev/sdb --la") == ["--latest"]
    assert _complete("lio-xcopy daemon --log-level w") == ["warning"]
    assert _complete("lio-xcopy daemon --copy-digest ") == ["sha256", "xxh3-128"]
    assert _complete("lio-xcopy daemon --copy-d") == ["--copy-digest"]
    assert _complete("lio-xcopy /backstores/d") == ["/backstores/disk"]
    assert _complete("lio-xcopy completion ") == ["--help", "-h", "bash"]


# --- man pages ---------------------------------------------------------------------------
@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
@pytest.mark.skipif(shutil.which("groff") is None, reason="groff-base is not installed")
def test_man_page_renders_without_warnings(page):
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    if shutil.which("man"):
        r = subprocess.run(["man", "--warnings=w", "-l", str(page)], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "MANWIDTH": "80",
                                                       "MAN_KEEP_FORMATTING": ""})
        assert r.returncode == 0 and r.stderr == "", r.stderr


def test_man_page_names_every_command_and_the_saved_files_fields():
    page = MAN_PAGES[0].read_text()
    for cmd in cli.COMMANDS:
        assert f"{cmd}" in page, cmd
    fields = MAN_PAGES[1].read_text()
    from lio_xcopy.control import config

    doc = config.to_json(config.SavedConfig())
    for key in doc:
        assert f".B {key}" in fields or f"\n.B {key}\n" in fields, key
    assert f"schema version, {config.SCHEMA_VERSION}" in fields


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_shell_help_needs_no_lio(capsys):
    from lio_xcopy.control import shell
    from lio_xcopy.errors import ConfigError

    class NoLio:
        def snapshot(self):
            raise ConfigError("LIO is not available: load it")

    assert shell.run(["/backstores/tape", "create", "-h"], lio=NoLio()) == 0
    out, err = capsys.readouterr()
    assert "SYNTAX" in out and err == ""
    assert shell.run(["ls"], lio=NoLio()) == 1  # a real command still says LIO is missing
    assert "LIO is not available" in capsys.readouterr().err


def test_help_of_a_shell_command_and_daemon_usage_errors(monkeypatch, capsys):
    from lio_xcopy.control import shell

    got = []
    monkeypatch.setattr(shell, "main", lambda argv: got.append(argv) or 0)
    assert cli.main(["help", "ls"]) == 0 and got == [["ls", "--help"]]
    assert cli.main(["daemon", "--config"]) == 2
    assert capsys.readouterr().err == ("lio-xcopy daemon: argument --config: expected one "
                                       "argument; see `lio-xcopy daemon --help`\n")


@pytest.mark.parametrize("mounted", [False, True])
@pytest.mark.parametrize("cmd", ["status", "saveconfig"])
def test_status_and_saveconfig_without_lio_say_how_to_load_it(
        tmp_path, monkeypatch, capsys, cmd, mounted):
    """No configfs mounted, or configfs without target_core_mod: one line on stderr with
    the commands that load LIO, exit status 1, nothing written."""
    configfs = tmp_path / "sys" / "kernel" / "config"
    configfs.mkdir(parents=True)
    monkeypatch.setattr(rtslib_adapter, "CONFIGFS", configfs)
    monkeypatch.setattr(rtslib_adapter.os.path, "ismount", lambda p: mounted and p == configfs)
    out_file = tmp_path / "saved.json"
    assert cli.main([cmd, str(out_file)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith(f"lio-xcopy {cmd}: LIO is not available on this host: ")
    if mounted:
        assert line.endswith("run `modprobe target_core_user tcm_loop`")
    else:
        assert f"`modprobe configfs && mount -t configfs none {configfs} && modprobe " \
               "target_core_user tcm_loop`" in line
    assert not out_file.exists()


def test_status_and_saveconfig_without_lio_as_a_user_types_them(tmp_path):
    """The installed command on a host without LIO (as this test host may be)."""
    if (rtslib_adapter.CONFIGFS / "target").is_dir():
        pytest.skip("this host has LIO")
    for cmd in (["status"], ["saveconfig", str(tmp_path / "saved.json")]):
        p = subprocess.run([sys.executable, "-m", "lio_xcopy", *cmd],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and p.stdout == "", p
        assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
        assert "LIO is not available on this host" in p.stderr
