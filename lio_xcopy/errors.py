"""The one exception root of lio-xcopy and its non-SCSI branches.

SCSI errors (CHECK CONDITION with sense data) live in :mod:`lio_xcopy.scsi.errors`
and derive from :class:`LioXcopyError` too.
"""


class LioXcopyError(Exception):
    """Root of every error lio-xcopy raises on purpose."""


class ConfigError(LioXcopyError):
    """An operator's configuration or argument is wrong; the message says what to do."""


class BackingStoreError(LioXcopyError):
    """A backing file or block device cannot be opened or used."""


class TcmuError(LioXcopyError):
    """The TCMU transport (uio device, command ring) misbehaved."""
