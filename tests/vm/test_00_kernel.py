"""The guest kernel offers what lio_xcopy needs: configfs, TCMU and tcm_loop."""

import os
from pathlib import Path

import pytest

if os.environ.get("LIO_XCOPY_IN_VM") != "1":
    pytest.skip("needs the VM guest (run via scripts/vm)", allow_module_level=True)

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
    loopback = TARGET / "loopback"
    created = not loopback.exists()
    if created:
        loopback.mkdir()
    try:
        assert loopback.is_dir()
        assert (loopback / "discovery_auth").exists() or any(loopback.iterdir())
    finally:
        if created:
            loopback.rmdir()
    if created:
        assert not loopback.exists()
