"""The backup server's side: SG_IO, the ``copy`` command, progress (issue 3)."""
