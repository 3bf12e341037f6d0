def serve(ring_map: memoryview, cmdr_off: int, cmdr_size: int, cursor: int,
          outstanding: int, fd: int, uio_fd: int, block_size: int, blocks: int,
          max_blocks: int, flags: int, answers: bytes = ..., /) -> tuple[int, int, bool]: ...
def serve_wait(ring_map: memoryview, cmdr_off: int, cmdr_size: int, cursor: int,
               outstanding: int, fd: int, uio_fd: int, block_size: int, blocks: int,
               max_blocks: int, flags: int, wake_fd: int, timeout_ms: int,
               answers: bytes = ..., kick_fd: int = ..., /) -> tuple[int, int, bool, int]: ...

REAP_STOP: int

def reap(kick_fd: int, uio_fd: int, /) -> int: ...
