"""The Third-party Copy VPD page (8Fh, SPC-4 7.8.17) as stock sg_vpd reads it through
the kernel: listed in page 00h, decoded without complaint, and agreeing with the
OPERATING PARAMETERS the same LUN returns."""

from __future__ import annotations

import re

import pytest
from conftest import clear_unit_attention, run

from lio_xcopy.scsi import xcopy
from lio_xcopy.sg import sgio

pytestmark = pytest.mark.vm


def _number(text: str, label: str) -> int:
    m = re.search(rf"^\s*{re.escape(label)}: (\d+)", text, re.MULTILINE)
    assert m, f"sg_vpd printed no {label!r}:\n{text}"
    return int(m.group(1))


def test_sg_vpd_decodes_the_page_of_disk_and_tape(lab):
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    for sg, pdt in ((lab.disk_sg, 0x00), (lab.tape_sg, 0x01)):
        listed = run("sg_vpd", "-p", "sv", sg).stdout
        assert "Third party copy [tpc]" in listed, listed
        p = run("sg_vpd", "-p", "tpc", sg)
        out = p.stdout + p.stderr
        assert not re.search(r"error|short|truncat|unexpected", out, re.IGNORECASE), out
        raw = run("sg_vpd", "-p", "tpc", "--hex", "--hex", "--hex", sg).stdout.split()
        assert int(raw[0], 16) == pdt  # PERIPHERAL QUALIFIER 000b and the LUN's type
        with sgio.SgIoDevice(sg) as dev:
            cdb = xcopy.ReceiveCopyResultsOperatingParameters(allocation_length=1024)
            op = xcopy.OperatingParameters.parse(
                dev.execute(cdb.encode(), data_in=1024).data)
        assert _number(out, "Maximum CSCD descriptor count") == op.max_cscd_count
        assert _number(out, "Maximum segment descriptor count") == op.max_segment_count
        assert _number(out, "Maximum descriptor list length") == op.max_descriptor_list_length
        assert _number(out, "Maximum inline data length") == op.max_inline_data_length
        assert _number(out, "Total concurrent copies") == op.total_concurrent_copies
        assert _number(out, "Maximum segment length") == op.max_segment_length
        assert (_number(out, "Maximum stream device transfer size")
                == op.max_stream_device_transfer_size)
        assert _number(out, "Held data limit") == op.held_data_limit
        block = out.split("Supported descriptors:")[1].split("Supported CSCD IDs")[0]
        codes = tuple(int(c, 16) for c in re.findall(r"\[0x([0-9a-f]+)\]", block))
        assert codes == op.implemented_descriptor_types, out
        assert "Extended copy(LID1)" in out and "Copy operation abort" in out, out
        assert "Receive copy operating parameters" in out, out
        assert "copy src or dst is copy manager LU [0xffff]" in out, out
