"""The guest kernel offers what lio_xcopy needs: configfs, TCMU and tcm_loop."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

TARGET = Path("/sys/kernel/config/target")


def _modules() -> set[str]:
    return {line.split()[0] for line in Path("/proc/modules").read_text().splitlines()}


def test_configfs_target_mounted():
    assert TARGET.is_dir()
    assert (TARGET / "core").is_dir()


def test_modules_loaded():
    assert {"target_core_user", "tcm_loop"} <= _modules()


def test_loopback_fabric_can_be_created():
    """A tcm_loop target made by hand through configfs: the fabric directory (its
    ``version`` names the loopback module), a target and a TPG, all removed again."""
    loopback = TARGET / "loopback"
    created = not loopback.exists()
    if created:
        loopback.mkdir()
    wwn = loopback / "naa.5001405000000e01"
    try:
        wwn.mkdir()
        (wwn / "tpgt_1").mkdir()
        assert (wwn / "tpgt_1" / "lun").is_dir()
        assert "TCM Loopback Fabric module" in (loopback / "version").read_text()
    finally:
        if (wwn / "tpgt_1").exists():
            (wwn / "tpgt_1").rmdir()
        if wwn.exists():
            wwn.rmdir()
        if created:
            loopback.rmdir()
    assert not wwn.exists()
    if created:
        assert not loopback.exists()
