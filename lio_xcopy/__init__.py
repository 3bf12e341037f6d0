"""lio-xcopy: serverless backup on a Linux SCSI target.

Layers, lowest first; a layer imports only those below it (``tests/unit/test_layers.py``
checks the import graph):

``errors``, ``files``, ``handler_config``
               the exception root, atomic file writes, a storage object's config string
``scsi``       wire formats (CDBs, sense, pages): pure functions and dataclasses
``sg``         SG_IO and the stable names of SCSI devices
``devices``    SBC disk, SSC tape, SMC changer, pass-through over backing stores
``copy``       the EXTENDED COPY manager
``tcmu``       the TCMU transport: uio discovery, the mmap'd command ring, the daemon loop
``control``    provisioning through rtslib-fb, the saved configuration, the shell
``initiator``  the backup server's side (on ``sg``, beside the target's layers)
``cli``        the ``lio-xcopy`` command, above ``control`` and ``initiator``
"""

#: the one place the version is set: pyproject.toml reads it (dynamic version), the command
#: prints it, and a unit test checks that the man pages' headers carry it
__version__ = "0.1.0"
