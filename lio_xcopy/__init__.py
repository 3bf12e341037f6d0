"""lio-xcopy: serverless backup on a Linux SCSI target.

Layers, lowest first; a layer imports only those below it:

``scsi``       wire formats (CDBs, sense, pages): pure functions and dataclasses
``devices``    SBC disk, SSC tape over backing stores
``copy``       the EXTENDED COPY manager
``tcmu``       the TCMU transport: uio discovery, the mmap'd command ring, the daemon loop
``control``    provisioning through rtslib-fb, the CLI, service glue
``initiator``  the backup server's side (SG_IO)
"""

__version__ = "0.1.0"
