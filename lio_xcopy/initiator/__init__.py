"""The backup server's side: the `copy` command, backup jobs, their catalog and progress."""
