"""No byte of an earlier command's data reaches an initiator through the real kernel:
commands that produce less than the initiator's buffer report how much they produced
(TCMU read_len), and those that produce nothing hand back zeros (the kernel copies a
whole buffer when read_len is 0)."""

from __future__ import annotations

from conftest import MiB, check_no_stale_data, clear_unit_attention, extra_lun

from lio_xcopy.control import provision


def test_no_stale_data_over_tcm_loop(lab):
    lun = provision.create_disk("vmstale", lab.work / "stale.img", 4 * MiB)
    try:
        dev = extra_lun(lab, lun)
        resids = check_no_stale_data(str(dev.sg), lba=16)
        print("\nresid per probe:", resids)
        assert resids["INQUIRY, allocation length 36"] == 4096 - 36
    finally:
        provision.delete(lun.name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
