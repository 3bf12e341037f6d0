"""SG_IO: sending CDBs to SCSI devices the kernel knows (sg, sd and st nodes); used by the
backup server's tools and by the copy manager's ends on devices this daemon does not serve."""
