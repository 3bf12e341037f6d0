"""``lio-xcopy /PATH COMMAND ...``: the administrator's shell, in the style of targetcli.

Interactive (``lio-xcopy`` on a terminal) with ``ls``, ``cd``, ``help`` and tab
completion, or one command from the command line
(``lio-xcopy /backstores/disk create name=db0 file=/srv/db0.img size=10G``), which
exits 0 when it worked and 1 with one line on stderr when it did not (nothing changed).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lio_xcopy.control.shell.lio import Snapshot

#: where the interactive shell keeps its history and preferences (as ~/.targetcli)
HOME_ENV = "LIO_XCOPY_HOME"

#: root commands a bare ``lio-xcopy CMD`` hands to the shell (the subcommands win)
ROOT_COMMANDS = ("ls", "cd", "pwd", "get", "set", "refresh", "bookmarks", "clearconfig")


#: ``password=VALUE`` on a command line, ``'password': 'VALUE'`` in configshell's logs
_SECRET = re.compile(r"""\b((?:mutual_)?password(?:=|'\s*:\s*'))[^\s',}]+""")


def mask_secrets(line: str) -> str:
    """``acls create ... password=s3cret`` -> ``... password=***``"""
    return _SECRET.sub(r"\1***", line)


def forget_secrets(line: str) -> None:
    """The interactive shell's history (``history.txt``) keeps the last line masked."""
    if not _SECRET.search(line):
        return
    import readline

    n = readline.get_current_history_length()
    if n and (readline.get_history_item(n) or "").strip() == line.strip():
        readline.replace_history_item(n - 1, mask_secrets(line))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text


def make_shell(lio: Any = None, home: str | os.PathLike[str] | None = None) -> Any:
    """A configshell with our tree over ``lio`` (default: the real LIO), read from LIO."""
    from configshell_fb import ConfigShell, Console, ExecutionError, Log, Prefs
    from pyparsing import ParseException

    from lio_xcopy.control.shell.lio import Lio
    from lio_xcopy.control.shell.tree import Root

    class Shell(ConfigShell):  # type: ignore[misc]  # configshell ships no types
        default_prefs = {**ConfigShell.default_prefs,
                         "auto_save_on_exit": True,
                         "loglevel_file": "info"}

        def run_cmdline(self, cmdline: str) -> None:
            """As configshell's, but a line its grammar cannot read entirely is refused
            (configshell would drop what follows a quote or a space in a value)."""
            if cmdline:
                try:
                    parsed = self._parser.parse_string(cmdline, parse_all=True)
                except ParseException as e:
                    raise ExecutionError(
                        f"cannot read the command at column {e.col} ({cmdline[e.col - 1:]!r}): "
                        "values are single words without quotes or spaces") from e
                keys = [k.value[0] for k in parsed.kparams or ()]
                for k in keys:
                    if keys.count(k) > 1:
                        raise ExecutionError(f"{k}= is given twice; give it once")
            try:
                super().run_cmdline(cmdline)
            except ExecutionError as e:
                if str(e).startswith("No such path"):
                    raise ExecutionError(f"{e}: `ls` shows the tree") from e
                raise
            finally:
                forget_secrets(cmdline)

    class MaskedLog(Log):  # type: ignore[misc]
        """configshell's log (console and ``log.txt``), CHAP secrets masked: at debug level
        it writes each command's parameters."""

        def _log(self, level: str, msg: object) -> None:
            super()._log(level, mask_secrets(str(msg)))

        def debug(self, msg: object) -> None:
            """As configshell's, which names its caller from ``inspect.stack()`` (every
            frame's source read back: seconds on a slow host) even when no log keeps
            debug messages; here only when one does, from the caller's frame."""
            if "debug" not in (self.prefs["loglevel_file"], self.prefs["loglevel_console"]):
                return
            caller = sys._getframe(1)  # the frame alone: no source read
            self._log("debug", f"{caller.f_code.co_filename}:{caller.f_lineno} "
                               f"{caller.f_code.co_name}() {msg}")

    # configshell's Log, made before the preferences are read, sets the file's level to
    # debug for want of one, so Shell.default_prefs could never apply: seed it first (a
    # preferences file in the home still replaces it)
    # (not saved into the file of an earlier shell of this process: Shell turns autosave
    # back on when it has a home)
    prefs = Prefs()
    prefs.autosave = False
    prefs["loglevel_file"] = Shell.default_prefs["loglevel_file"]
    shell = Shell(str(home) if home is not None else None)
    shell.log = MaskedLog()  # a Borg: the same preferences and log file
    if home is None:  # configshell's preferences are shared state: none kept on disk
        shell.prefs.filename, shell.prefs.autosave = None, False
    # configshell's console is shared state bound to the streams of its first use
    shell.con = Console(stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    shell.log.con = shell.con
    root = Root(shell, lio if lio is not None else Lio())
    root.refresh()
    return shell


def _home() -> Path | None:
    env = os.environ.get(HOME_ENV)
    path = Path(env) if env else Path("~/.lio-xcopy").expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only home: no history, preferences or log
    return path if os.access(path, os.W_OK) else None


def help_line(argv: list[str]) -> list[str]:
    """``[PATH] COMMAND ... -h|--help`` as the shell's ``[PATH] help COMMAND``; other
    command lines as they are."""
    if not any(a in ("-h", "--help") for a in argv):
        return argv
    words = [a for a in argv if a not in ("-h", "--help")]
    path = words[:1] if words and words[0].startswith("/") else []
    command = words[len(path):len(path) + 1]
    return [*path, "help", *command]


class _EmptyLio:
    """A LIO that holds nothing: help on the tree's fixed nodes without LIO loaded."""

    def snapshot(self) -> Snapshot:
        from lio_xcopy.control.shell.lio import Snapshot

        return Snapshot()


def _help_shell(lio: Any, home: str | os.PathLike[str] | None) -> Any:
    """The shell over ``lio``, or over an empty LIO when LIO is not available (help
    needs the commands, not what LIO holds)."""
    from lio_xcopy.errors import LioXcopyError

    try:
        return make_shell(lio, home)
    except LioXcopyError:
        return make_shell(_EmptyLio(), home)


def run(argv: list[str], lio: Any = None, home: str | os.PathLike[str] | None = None) -> int:
    """Run one shell command line (``argv`` joined by spaces); 0 when it worked, 1 when
    it did not, with one line on stderr. ``-h``/``--help`` anywhere shows the shell's
    help for the command instead of running it."""
    from lio_xcopy.control.shell.tree import Reported

    line = help_line(argv)
    try:
        shell = _help_shell(lio, home) if line != argv else make_shell(lio, home)
        shell.run_cmdline(" ".join(line))
    except Reported:
        return 1
    except Exception as e:  # configshell, rtslib and our own errors: one line each
        print(f"lio-xcopy: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


def interactive(lio: Any = None, home: str | os.PathLike[str] | None = None) -> int:
    """The interactive shell; saves the configuration on exit when the global
    preference auto_save_on_exit is true (as targetcli does)."""
    from configshell_fb import ExecutionError

    from lio_xcopy import __version__
    from lio_xcopy.control.shell.tree import Reported
    from lio_xcopy.errors import LioXcopyError

    try:
        shell = make_shell(lio, home if home is not None else _home())
    except Exception as e:
        print(f"lio-xcopy: {_one_line(e)}", file=sys.stderr)
        return 1
    shell.con.display(f"lio-xcopy shell version {__version__}\n"
                      "For help on commands, type 'help'.\n")
    while not shell._exit:
        try:
            shell.run_interactive()
        except Reported:
            pass
        except (ExecutionError, LioXcopyError, OSError) as e:
            shell.log.error(_one_line(e))
        except Exception as e:  # rtslib's RTSLibError and the like: keep the shell
            shell.log.error(_one_line(e))
    if shell.prefs["auto_save_on_exit"]:
        shell.log.info("Global pref auto_save_on_exit=true")
        try:
            shell._root_node.ui_command_saveconfig()
        except Reported:
            return 1
    return 0


def main(argv: list[str]) -> int:
    """``lio-xcopy /PATH CMD ...`` or ``lio-xcopy ls``; no argv: interactive."""
    if not argv:
        return interactive()
    return run(argv, home=_home())
