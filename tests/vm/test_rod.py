"""ROD tokens (ODX: POPULATE TOKEN / WRITE USING TOKEN, SBC-4 5.9/5.46) through the real
kernel: a whole-disk ODX copy and zeroing with the block device zero ROD token, sent with
sg_raw, byte-exact, also with IMMED (polled) and through EXTENDED COPY (LID4) naming the
token in a ROD CSCD descriptor; stock sg_vpd's decode of the ROD descriptors; stock ddpt's ODX lists
(misframed by one byte) refused without a block written; and a forged or expired token
refused with the SPC-4 sense."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, extra_lun, run, sense_of

from lio_xcopy.scsi import rod, xcopy
from lio_xcopy.scsi.xcopy import CopyStatusLid4

pytestmark = pytest.mark.vm

SIZE = 8 * MiB
BLOCKS = SIZE // 512


@pytest.fixture(scope="module")
def pair(lab):
    from lio_xcopy.control import provision

    luns = [provision.create_disk("rodsrc", lab.work / "rodsrc.img", SIZE),
            provision.create_disk("roddst", lab.work / "roddst.img", SIZE)]
    src, dst = (extra_lun(lab, lun) for lun in luns)
    clear_unit_attention(str(src.sg), str(dst.sg))
    run("dd", "if=/dev/urandom", f"of={src.block}", "bs=1M", f"count={SIZE // MiB}",
        "oflag=direct")
    yield src, dst
    for lun in luns:
        provision.delete(lun.name)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def lun_bytes(block) -> bytes:
    """The LUN's bytes as the kernel reads them now (O_DIRECT: no stale page cache)."""
    return subprocess.run(["dd", f"if={block}", "bs=1M", f"count={SIZE // MiB}",
                           "iflag=direct", "status=none"], capture_output=True,
                          check=True).stdout


def test_sg_vpd_decodes_rod_descriptors(pair):
    src, _ = pair
    p = run("sg_vpd", "-p", "tpc", str(src.sg))
    out = p.stdout + p.stderr
    assert "Block Device ROD Token Limits" in out, out
    assert "Default inactivity timeout: 60 seconds" in out, out
    assert "Populate token" in out and "Write using token" in out, out
    assert "Receive ROD token information" in out and "Report all ROD tokens" in out, out
    assert "point in time copy - change vulnerable" in out, out
    assert "block device zero" in out, out


def _out(sg: str, tmp: Path, cdb, data: bytes, check: bool = True):
    f = tmp / "plist.bin"
    f.write_bytes(data)
    return run("sg_raw", "-s", str(len(data)), "-i", str(f), sg, *_hex(cdb.encode()),
               check=check)


def _rrti(sg: str, tmp: Path, list_id: int) -> rod.RodTokenInformation:
    out = tmp / "rrti.bin"
    cdb = rod.ReceiveRodTokenInformation(list_identifier=list_id, allocation_length=1024)
    run("sg_raw", "-r", "1024", "-o", str(out), sg, *_hex(cdb.encode()))
    return rod.RodTokenInformation.parse(out.read_bytes())


def test_odx_full_copy_with_sg_raw_byte_exact(pair, tmp_path):
    """POPULATE TOKEN of the whole source, RECEIVE ROD TOKEN INFORMATION for the token,
    WRITE USING TOKEN of the whole destination, as an ODX client sends them."""
    src, dst = pair
    whole = (rod.BlockRange(0, BLOCKS),)
    plist = rod.PopulateTokenList(whole).encode()
    _out(str(src.sg), tmp_path, rod.PopulateToken(list_identifier=0x101,
                                                   parameter_list_length=len(plist)), plist)
    info = _rrti(str(src.sg), tmp_path, 0x101)
    assert (info.service_action, info.status, info.transfer_count) == (0x10, 1, BLOCKS)
    assert len(info.token) == 512 and info.token[:4] == bytes.fromhex("00800001")
    plist = rod.WriteUsingTokenList(info.token, whole, del_tkn=True).encode()
    _out(str(dst.sg), tmp_path, rod.WriteUsingToken(list_identifier=0x101,
                                                      parameter_list_length=len(plist)), plist)
    info = _rrti(str(dst.sg), tmp_path, 0x101)
    assert (info.service_action, info.status, info.transfer_count) == (0x11, 1, BLOCKS)
    want = lun_bytes(src.block)
    assert any(want)
    assert lun_bytes(dst.block) == want


def test_stock_ddpt_odx_lists_refused_not_misread(pair, lab):
    """ddpt 0.97 (Debian bookworm's, and upstream's ddpt_xcopy.c since its scatter
    gather lists) writes each block device range descriptor one byte early: do_pop_tok
    starts it at byte 15 and do_wut at byte 535, where SBC-4 5.9.2/5.46.2 put byte 16
    and 536. Read where SBC-4 puts it, its LBA 0 + 16384 blocks is LBA 0 + 4194304
    blocks, past the LUN: both commands are refused (LOGICAL BLOCK ADDRESS OUT OF RANGE)
    and no block is written, rather than a wrong range copied or zeroed."""
    src, dst = pair
    before = lun_bytes(dst.block)
    sgl = f"0,{BLOCKS}"
    p = run("ddpt", "--odx", f"if={src.sg}", "bs=512", f"of={dst.sg}", f"skip={sgl}",
            f"seek={sgl}", check=False, timeout=120)
    print(p.returncode, p.stdout, p.stderr)
    assert p.returncode != 0
    p = run("ddpt", "if=/dev/null", "rtype=zero", "bs=512", f"of={dst.sg}", f"seek={sgl}",
            check=False, timeout=120)
    print(p.returncode, p.stdout, p.stderr)
    assert p.returncode != 0
    assert lun_bytes(dst.block) == before
    log = lab.daemon.text()
    assert f"rodsrc: POPULATE TOKEN list 257: LBA 0 + {BLOCKS * 256} blocks" in log
    assert f"roddst: WRITE USING TOKEN list 257: LBA 0 + {BLOCKS * 256} blocks" in log
    assert re.search(r"rodsrc: cmd \d+ POPULATE TOKEN, 32 byte\(s\) buffer, 0 in: "
                     r"CHECK CONDITION ILLEGAL_REQUEST 21h/00h", log)
    assert re.search(r"roddst: cmd \d+ WRITE USING TOKEN, 552 byte\(s\) buffer, 0 in: "
                     r"CHECK CONDITION ILLEGAL_REQUEST 21h/00h", log)


def test_zero_token_with_sg_raw(pair, tmp_path):
    _, dst = pair
    assert any(lun_bytes(dst.block))
    plist = rod.WriteUsingTokenList(rod.block_device_zero_token(),
                                    (rod.BlockRange(0, BLOCKS),)).encode()
    _out(str(dst.sg), tmp_path, rod.WriteUsingToken(list_identifier=0x102,
                                                      parameter_list_length=len(plist)), plist)
    info = _rrti(str(dst.sg), tmp_path, 0x102)
    assert (info.service_action, info.status, info.transfer_count) == (0x11, 1, BLOCKS)
    assert lun_bytes(dst.block) == bytes(SIZE)


def _populate(sg: str, tmp: Path, list_id: int, timeout: int = 0) -> bytes:
    """POPULATE TOKEN for blocks 0-15 and RECEIVE ROD TOKEN INFORMATION, with sg_raw."""
    plist = rod.PopulateTokenList((rod.BlockRange(0, 16),), inactivity_timeout=timeout).encode()
    f = tmp / "pt.bin"
    f.write_bytes(plist)
    cdb = rod.PopulateToken(list_identifier=list_id, parameter_list_length=len(plist))
    run("sg_raw", "-s", str(len(plist)), "-i", str(f), sg, *_hex(cdb.encode()))
    out = tmp / "rrti.bin"
    cdb = rod.ReceiveRodTokenInformation(list_identifier=list_id, allocation_length=1024)
    run("sg_raw", "-r", "1024", "-o", str(out), sg, *_hex(cdb.encode()))
    info = rod.RodTokenInformation.parse(out.read_bytes())
    assert (info.service_action, info.status, info.transfer_count) == (0x10, 1, 16)
    return info.token


def _write_using(sg: str, tmp: Path, token: bytes, list_id: int):
    plist = rod.WriteUsingTokenList(token, (rod.BlockRange(1024, 16),)).encode()
    f = tmp / "wut.bin"
    f.write_bytes(plist)
    cdb = rod.WriteUsingToken(list_identifier=list_id, parameter_list_length=len(plist))
    return run("sg_raw", "-s", str(len(plist)), "-i", str(f), sg, *_hex(cdb.encode()),
               check=False)


def _hex(b: bytes) -> list[str]:
    return [f"{x:02x}" for x in b]


def test_forged_and_expired_tokens_refused_with_sg_raw(pair, tmp_path):
    src, dst = pair
    sg = str(src.sg)
    token = bytearray(_populate(sg, tmp_path, 0x501))
    before = lun_bytes(dst.block)[1024 * 512 : 1040 * 512]
    forged = bytearray(token)
    forged[200] ^= 0x04
    p = _write_using(str(dst.sg), tmp_path, bytes(forged), 0x502)
    assert p.returncode != 0
    key, add = sense_of(p.stdout + p.stderr)
    assert key == "Illegal Request", p.stderr
    assert add.lower() == "invalid token operation, token unknown", p.stderr
    assert lun_bytes(dst.block)[1024 * 512 : 1040 * 512] == before
    # the genuine token still works, through the other LUN
    p = _write_using(str(dst.sg), tmp_path, bytes(token), 0x503)
    assert p.returncode == 0, p.stderr
    assert lun_bytes(dst.block)[1024 * 512 : 1040 * 512] == lun_bytes(src.block)[: 16 * 512]
    # a token with a 1 s inactivity timeout, unused for 3 s
    short = _populate(sg, tmp_path, 0x504, timeout=1)
    time.sleep(3)
    p = _write_using(str(dst.sg), tmp_path, short, 0x505)
    key, add = sense_of(p.stdout + p.stderr)
    assert (key, add.lower()) == ("Illegal Request", "invalid token operation, token expired"), \
        p.stderr


def _poll(sg: str, tmp: Path, list_id: int) -> list[rod.RodTokenInformation]:
    """RECEIVE ROD TOKEN INFORMATION until the operation has ended (30 s at most)."""
    seen = [_rrti(sg, tmp, list_id)]
    deadline = time.monotonic() + 30
    while seen[-1].status in (0x11, 0x12):
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(seen[-1].status_update_delay / 1000)
        seen.append(_rrti(sg, tmp, list_id))
    return seen


def test_write_using_token_with_immed_polled_to_completion(pair, tmp_path):
    """WRITE USING TOKEN with IMMED (SBC-4 5.46.2): GOOD at once, then polled with
    RECEIVE ROD TOKEN INFORMATION until done, for the zero token and for a whole-disk
    copy; RECEIVE COPY STATUS (LID4) reports the same operation, counting its READs and
    WRITEs in the OPERATION COUNTER (SPC-4 6.24)."""
    src, dst = pair
    whole = (rod.BlockRange(0, BLOCKS),)
    plist = rod.WriteUsingTokenList(rod.block_device_zero_token(), whole, immed=True).encode()
    _out(str(dst.sg), tmp_path, rod.WriteUsingToken(list_identifier=0x601,
                                                      parameter_list_length=len(plist)), plist)
    polls = _poll(str(dst.sg), tmp_path, 0x601)
    assert all(p.status == 0x12 for p in polls[:-1]), polls  # in progress in background
    assert (polls[-1].status, polls[-1].transfer_count) == (0x01, BLOCKS)
    assert lun_bytes(dst.block) == bytes(SIZE)
    plist = rod.PopulateTokenList(whole).encode()
    _out(str(src.sg), tmp_path, rod.PopulateToken(list_identifier=0x602,
                                                   parameter_list_length=len(plist)), plist)
    token = _rrti(str(src.sg), tmp_path, 0x602).token
    plist = rod.WriteUsingTokenList(token, whole, immed=True).encode()
    _out(str(dst.sg), tmp_path, rod.WriteUsingToken(list_identifier=0x603,
                                                      parameter_list_length=len(plist)), plist)
    polls = _poll(str(dst.sg), tmp_path, 0x603)
    assert all(p.status == 0x12 for p in polls[:-1]), polls
    done = polls[-1]
    assert (done.service_action, done.status, done.transfer_count) == (0x11, 0x01, BLOCKS)
    assert done.status_update_delay == 0xFFFFFFFE
    assert lun_bytes(dst.block) == lun_bytes(src.block)
    st = CopyStatusLid4.parse(_raw_status(str(dst.sg), tmp_path, 0x603))
    assert (st.response_to_service_action, st.status, st.transfer_count,
            st.transfer_count_units) == (0x11, 0x01, BLOCKS, 0xF1)
    assert st.operation_counter == done.operation_counter >= 2 * SIZE // MiB


def test_extended_copy_lid4_with_a_rod_cscd_descriptor(pair, tmp_path):
    """EXTENDED COPY (LID4) naming a ROD token as its source (ROD CSCD descriptor FEh,
    SPC-4 6.4.5.9): the token in the inline data, CSCD ID FFFFh the receiving LUN; the
    ROD's two ranges land one after the other, byte-exact. A forged token is refused
    with INVALID TOKEN OPERATION, TOKEN UNKNOWN and writes nothing."""
    src, dst = pair
    half = BLOCKS // 4
    plist = rod.PopulateTokenList((rod.BlockRange(0, half),
                                   rod.BlockRange(2 * half, half))).encode()
    _out(str(src.sg), tmp_path, rod.PopulateToken(list_identifier=0x701,
                                                   parameter_list_length=len(plist)), plist)
    token = _rrti(str(src.sg), tmp_path, 0x701).token
    forged = bytearray(token)
    forged[99] ^= 0x10
    before = lun_bytes(dst.block)
    for tok, list_id in ((bytes(forged), 0x702), (token, 0x703)):
        plist = xcopy.build_extended_copy_lid4(
            [xcopy.RodCscd()], [xcopy.BlockToBlock(0, xcopy.CSCD_ID_LOCAL, 2 * half, 0,
                                                   2 * half)],
            list_identifier=list_id, inline_data=tok)
        p = _out(str(dst.sg), tmp_path, xcopy.ExtendedCopyLid4(
            parameter_list_length=len(plist)), plist, check=False)
        if tok != token:
            key, add = sense_of(p.stdout + p.stderr)
            assert (key, add.lower()) == ("Illegal Request",
                                          "invalid token operation, token unknown"), p.stderr
            assert lun_bytes(dst.block) == before
    assert p.returncode == 0, p.stderr
    data, want = lun_bytes(dst.block), lun_bytes(src.block)
    assert data[2 * half * 512 :] == want[: half * 512] + want[2 * half * 512 : 3 * half * 512]
    assert data[: 2 * half * 512] == before[: 2 * half * 512]
    st = CopyStatusLid4.parse(_raw_status(str(dst.sg), tmp_path, 0x703))
    assert (st.status, st.transfer_count) == (0x01, 2 * half * 512)


def _raw_status(sg: str, tmp: Path, list_id: int) -> bytes:
    out = tmp / "rcs.bin"
    run("sg_raw", "-r", "64", "-o", str(out), sg, "84", "05",
        *_hex(list_id.to_bytes(4, "big")), *["00"] * 4, "00", "00", "00", "40", "00", "00")
    return out.read_bytes()
