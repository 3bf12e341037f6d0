"""SharedExclusive: writes share it, COMPARE AND WRITE holds it alone."""

from __future__ import annotations

import threading
import time

from lio_xcopy.devices.locks import SharedExclusive


def test_shared_holders_hold_it_at_once():
    lock = SharedExclusive()
    lock.acquire_shared()
    t = threading.Thread(target=lock.acquire_shared)
    t.start()
    t.join(2)
    assert not t.is_alive() and lock.holders == 2
    lock.release_shared()
    lock.release_shared()
    assert lock.holders == 0


def test_alone_waits_for_shared_holders_and_keeps_new_ones_out():
    lock = SharedExclusive()
    lock.acquire_shared()
    order: list[str] = []

    def alone():
        with lock.exclusive():
            order.append("alone")
            time.sleep(0.05)
            order.append("alone done")

    def share():
        lock.acquire_shared()
        order.append("shared")
        lock.release_shared()

    a = threading.Thread(target=alone)
    a.start()
    time.sleep(0.05)
    assert order == []  # the first shared holder is still in
    s = threading.Thread(target=share)
    s.start()  # comes after the one waiting to hold it alone: waits too
    time.sleep(0.05)
    assert order == []
    lock.release_shared()
    a.join(2)
    s.join(2)
    assert order == ["alone", "alone done", "shared"]
    assert lock.holders == 0 and not lock.held_alone
