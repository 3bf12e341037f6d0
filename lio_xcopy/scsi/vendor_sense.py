"""lio-xcopy's vendor-specific additional sense bytes: why the copy manager refused a
copy, in terms a backup server's tool can print.

SPC-4 4.5.3 leaves fixed-format sense bytes 18 and on to the vendor (descriptor format:
a vendor-specific descriptor, 80h). The standard ASC/ASCQ stays what SPC-4 says
(e.g. COPY TARGET DEVICE NOT REACHABLE); these bytes only add the reason, behind the
marker ``LIOX`` so that no other device's bytes are taken for ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from lio_xcopy.scsi.sense import VENDOR_MAX

MARKER = b"LIOX"
#: reason codes (the byte after the marker)
POLICY_APART = 0x01
#: a LUN name's bytes kept (two of them fit in the sense buffer's vendor part)
NAME_MAX = (VENDOR_MAX - len(MARKER) - 1) // 2 - 1


def _name(text: str) -> bytes:
    raw = text.encode("utf-8")[:NAME_MAX]
    return bytes([len(raw)]) + raw


@dataclass(frozen=True, slots=True)
class PolicyApart:
    """The copy access policy keeps the LUN that received the copy and another LUN it
    names apart: they are not exported to the same initiators and share no copy group."""

    receiving: str
    other: str

    def encode(self) -> bytes:
        return MARKER + bytes([POLICY_APART]) + _name(self.receiving) + _name(self.other)

    @classmethod
    def decode(cls, data: bytes) -> PolicyApart | None:
        """The reason in ``data`` (a sense's vendor bytes); None when they hold none."""
        if not data.startswith(MARKER) or len(data) < len(MARKER) + 3 \
                or data[len(MARKER)] != POLICY_APART:
            return None
        names: list[str] = []
        pos = len(MARKER) + 1
        for _ in range(2):
            if pos >= len(data) or pos + 1 + data[pos] > len(data):
                return None
            names.append(data[pos + 1:pos + 1 + data[pos]].decode("utf-8", "replace"))
            pos += 1 + data[pos]
        return cls(names[0], names[1])

    def advice(self) -> str:
        """What the backup server's operator reads, and what to do on the target."""
        return (f"the target's copy access policy keeps {self.receiving} and {self.other} "
                "apart: export them to the same initiators, or on the target run "
                f"`lio-xcopy /copy_groups create name=GROUP members={self.receiving},"
                f"{self.other}`")
