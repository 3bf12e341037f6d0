"""What the daemon owes systemd: readiness and status over $NOTIFY_SOCKET (sd_notify).

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named in
``NOTIFY_SOCKET`` (an ``@`` prefix means the abstract namespace); without the variable
this does nothing, so the daemon runs the same by hand.
"""

from __future__ import annotations

import os
import socket


def sd_notify(*fields: str, env: dict[str, str] | None = None) -> bool:
    """Send ``READY=1``, ``STATUS=...``, ``RELOADING=1``, ``STOPPING=1``; True if sent.

    Never waits: a receiver that does not read (its queue full) costs this message,
    not the daemon's loop, which would otherwise stop answering every LUN's commands."""
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, address)
        except OSError:
            return False
    return True
