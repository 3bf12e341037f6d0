"""Bacula's tape-drive self-test through a pass-through drive: ``btape test`` on the
/dev/nstN the backup server sees for the drive of the "physical" library on the target
host (tests/plugins/vm_bridge.py), which the daemon under test forwards command by
command (SSC-4 READ (6), WRITE (6), SPACE (6), WRITE FILEMARKS (6), READ POSITION,
REWIND) to the real drive with SG_IO.

``btape test`` writes two files of 10,000 blocks (btape.c ``num_recs``), one WRITE (6)
and later one READ (6) each, whatever the block size; the library's 64 MiB cartridges
hold that at 2 KiB blocks (2 x 10,000 x 2,054 bytes with the AWSTAPE headers, about
39 MiB, below early warning at 60 MiB), so the test takes a blank cartridge of the
library as it is and moves as little data as btape allows. The block size does not
shorten it: each of those 40,000 commands crosses both daemons (15-30 ms under TCG), and
the test took 10 minutes in the guest. It runs only when asked for:
``LIO_XCOPY_VM_LONG=1 scripts/test --vm tests/vm/test_btape_passthrough.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import clear_unit_attention, run
from plugins.vm_bridge import BARCODES
from test_btape import DEVICE, SD_CONF, btape, check_last_part_on, check_test_passed

from lio_xcopy.devices.library import Library

pytestmark = [
    pytest.mark.skipif(shutil.which("btape") is None,
                       reason="btape missing: scripts/setup-host installs bacula-sd"),
    pytest.mark.skipif(os.environ.get("LIO_XCOPY_VM_LONG") != "1",
                       reason="10 minutes under TCG: run it with LIO_XCOPY_VM_LONG=1"),
]

BLOCK = 2048  # Bacula's Maximum Block Size: a multiple of btape's 1,024-byte granularity
SLOT = 1  # a blank cartridge (BARCODES[0]) the other pass-through tests leave alone


def test_btape_test_through_the_pass_through_drive(lab, bridge):
    mtx = ("mtx", "-f", bridge.changer.sg)
    clear_unit_attention(bridge.changer.sg, bridge.drive.sg)
    run(*mtx, "load", str(SLOT), "0")
    clear_unit_attention(bridge.drive.sg)  # NOT READY TO READY CHANGE, once
    work = Path(tempfile.mkdtemp(prefix="btape-pt-", dir=lab.work))
    conf = work / "bacula-sd.conf"
    conf.write_text(SD_CONF.format(work=work, device=DEVICE, nst=bridge.drive.nst,
                                   block=BLOCK))
    try:
        out = btape(conf, "test\nquit\n", timeout=1800)
        assert lab.daemon.alive()
        check_test_passed(out, BLOCK)
        # the blocks are on the real drive's cartridge, as the last part left them
        check_last_part_on(Library(lab.work / "physlib").cartridge_path(BARCODES[SLOT - 1]))
        assert "Traceback" not in lab.daemon.text()
    finally:
        run(*mtx, "unload", str(SLOT), "0", check=False)
        shutil.rmtree(work, ignore_errors=True)
