"""The saved configuration of a lio-xcopy target: one JSON file, versioned.

It holds the backstores (disks, tapes), their loopback exports, the iSCSI targets and
the copy groups of the copy access policy. :func:`load` checks all of it and refuses a
bad file with one line naming the file, the JSON path of the field and what to do;
:func:`save` writes it atomically, mode 0600, keeping rotated backups; :func:`diff`
lists what a restore would create, change or remove, so restoring twice is harmless.

:mod:`.model` holds the dataclasses, :mod:`.reader` the checks, :mod:`.store` the file
and :mod:`.diff` the comparison; this package re-exports what callers use.
"""

from lio_xcopy.control.config import model
from lio_xcopy.control.config.diff import Change, Entry, diff, entries
from lio_xcopy.control.config.model import *  # noqa: F403 (the model's __all__)
from lio_xcopy.control.config.reader import load, loads
from lio_xcopy.control.config.store import dump, save, to_json

__all__ = [*model.__all__, "Change", "Entry", "diff", "dump", "entries", "load", "loads",
           "save", "to_json"]
