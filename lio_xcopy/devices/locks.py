"""A lock held shared or alone: the writes of a disk run at once, while a command that
must see no other write between its steps runs alone (SBC-4 5.3 COMPARE AND WRITE)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class SharedExclusive:
    """Many holders share it, or one holds it alone. A holder waiting to hold it alone
    goes before holders that come to share it after it, so it is not starved."""

    __slots__ = ("_cv", "_exclusive", "_shared", "_waiting")

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False
        self._waiting = 0  # holders waiting to hold it alone

    @property
    def held_alone(self) -> bool:
        """Whether a holder holds it alone now."""
        return self._exclusive

    @property
    def holders(self) -> int:
        """How many hold it now, shared or alone."""
        return self._shared + self._exclusive

    def acquire_shared(self) -> None:
        with self._cv:
            while self._exclusive or self._waiting:
                self._cv.wait()
            self._shared += 1

    def try_acquire_shared(self) -> bool:
        """Share it if that needs no wait: whether it is now held."""
        with self._cv:
            if self._exclusive or self._waiting:
                return False
            self._shared += 1
            return True

    def release_shared(self) -> None:
        with self._cv:
            self._shared -= 1
            if not self._shared and self._waiting:
                self._cv.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cv:
            self._waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cv.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cv:
                self._exclusive = False
                self._cv.notify_all()
