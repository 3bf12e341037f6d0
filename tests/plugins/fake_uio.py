"""A fake uio device in a temporary sysfs tree, for the daemon's discovery without a
kernel."""

from __future__ import annotations

from pathlib import Path


def fake_uio(root: Path, n: int, name: str, size: int = 0x40800000) -> Path:
    """``root/uio<n>`` as sysfs shows a uio device: its name and its map's size."""
    d = root / f"uio{n}"
    (d / "maps" / "map0").mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "maps" / "map0" / "size").write_text(f"{size:#x}\n")
    return d
