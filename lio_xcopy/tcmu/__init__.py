"""The TCMU transport: uio discovery, the mmap'd command ring, the daemon loop.

The ring layout is the one ``include/uapi/linux/target_core_user.h`` defines
(mailbox version 2, Linux 6.1); ``tests/plugins/tcmu_ring.py`` builds the same bytes for tests.
"""
