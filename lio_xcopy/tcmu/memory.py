"""How the daemon asks the C allocator to give freed command buffers back.

glibc's malloc raises its mmap threshold each time a large block is freed (up to
32 MiB, mallopt(3) M_MMAP_THRESHOLD), so after a few large transient buffers every
later one of 64 KiB-1 MiB comes from a heap, where fragmentation keeps it: under
mixed initiators the daemon's RSS climbed for as long as it ran, with no Python object
leaked. A fixed threshold keeps large blocks in mmap (returned at free), and two
arenas bound what the LUNs' worker threads hold.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # <malloc.h>
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold and arena count for this process; False where the C
    library has no ``mallopt`` (not glibc) or refuses it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this C library: allocator left as it is")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_ARENA_MAX, ARENA_MAX))
