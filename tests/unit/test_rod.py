"""ROD tokens (SBC-4 5.9/5.46, SPC-4 5.17/6.19/6.20): POPULATE TOKEN and WRITE USING
TOKEN on disk LUNs over temp files, the token's defences, and the wire formats."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plugins.copy_steps import InlineExecutor, StepExecutor

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.scsi import rod, spc, xcopy
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.tpc_vpd import (
    BlockDeviceRodLimits,
    RodTokenFeatures,
    SupportedCommands,
    SupportedRodTypes,
    ThirdPartyCopyPage,
)

BLOCKS = 256


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lab(tmp_path):
    made: list[Disk] = []
    clock = Clock()
    allowed: set[frozenset[str]] = set()

    def policy(receiving, other):
        return frozenset((receiving.name, other.name)) in allowed

    manager = CopyManager(policy=policy, clock=clock, executor=InlineExecutor())

    def disk(name, data=None):
        path = tmp_path / f"{name}.img"
        path.write_bytes(data if data is not None else bytes(BLOCKS * 512))
        d = Disk(LunIdentity(name, hashlib.sha256(name.encode()).hexdigest()[:32]),
                 BackingStore(path), 512)
        manager.register(d)
        made.append(d)
        return d

    class Lab:
        pass

    lab = Lab()
    lab.disk, lab.manager, lab.clock, lab.allowed = disk, manager, clock, allowed
    yield lab
    for d in made:
        d.close()


def send(dev, cdb, data=b"", alloc=0):
    buf = DataBuffer.of(bytearray(data)) if data else DataBuffer.allocate(alloc)
    n = dev.handle(Command(cdb.encode(), buf))
    return buf.tobytes(n) if alloc else n


def populate(dev, ranges, list_id=1, **kw):
    plist = rod.PopulateTokenList(tuple(rod.BlockRange(*r) for r in ranges), **kw).encode()
    send(dev, rod.PopulateToken(list_identifier=list_id, parameter_list_length=len(plist)),
         plist)
    info = rod.RodTokenInformation.parse(send(
        dev, rod.ReceiveRodTokenInformation(list_identifier=list_id,
                                               allocation_length=1024), alloc=1024))
    assert (info.service_action, info.status) == (0x10, rod.COPY_STATUS_COMPLETED)
    assert info.transfer_count == sum(n for _, n in ranges)
    return info.token


def write_using(dev, token, ranges, list_id=2, **kw):
    plist = rod.WriteUsingTokenList(token, tuple(rod.BlockRange(*r) for r in ranges),
                                    **kw).encode()
    send(dev, rod.WriteUsingToken(list_identifier=list_id, parameter_list_length=len(plist)),
         plist)
    return rod.RodTokenInformation.parse(send(
        dev, rod.ReceiveRodTokenInformation(list_identifier=list_id,
                                               allocation_length=1024), alloc=1024))


def refused(dev, token, ranges, asc):
    with pytest.raises(CheckCondition) as e:
        write_using(dev, token, ranges)
    assert e.value.sense.key == SenseKey.ILLEGAL_REQUEST
    assert e.value.sense.asc == asc
    # the field pointer names the ROD TOKEN field of the parameter list (byte 16)
    assert e.value.sense.sense_key_specific == bytes([0x80, 0, 16])
    return e.value


def blocks(dev, lba, n):
    with open(dev.store.path, "rb") as f:
        f.seek(lba * 512)
        return f.read(n * 512)


def test_copy_to_another_lun_byte_exact(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    dst = lab.disk("dst")
    lab.allowed.add(frozenset(("src", "dst")))
    token = populate(src, [(10, 20), (100, 12)])
    assert len(token) == 512 and token[:8] == bytes.fromhex("00800001000001f8")
    # the creator logical unit descriptor is the source's identification CSCD (E4h)
    assert token[16] == 0xE4 and src.designators()[0].value in token[16:48]
    assert int.from_bytes(token[48:64], "big") == 32 * 512
    info = write_using(dst, token, [(0, 8), (50, 24)])
    assert (info.service_action, info.status, info.transfer_count) == (0x11, 1, 32)
    want = blocks(src, 10, 20) + blocks(src, 100, 12)
    assert blocks(dst, 0, 8) + blocks(dst, 50, 24) == want
    assert blocks(dst, 8, 42) == bytes(42 * 512)


def test_copy_on_the_same_lun_with_offset_into_rod(lab):
    data = os.urandom(BLOCKS * 512)
    src = lab.disk("one", data)
    token = populate(src, [(0, 64)])
    info = write_using(src, token, [(128, 16)], offset_into_rod=40)
    assert info.transfer_count == 16
    assert blocks(src, 128, 16) == data[40 * 512 : 56 * 512]
    # a ROD shorter than the ranges: what it holds is written, TRANSFER COUNT says so
    info = write_using(src, token, [(200, 50)], list_id=3, offset_into_rod=60)
    assert info.transfer_count == 4
    assert blocks(src, 200, 4) == data[60 * 512 : 64 * 512]


def test_zero_token_zeroes(lab):
    dst = lab.disk("z", b"\xa5" * (BLOCKS * 512))
    info = write_using(dst, rod.block_device_zero_token(), [(3, 7), (90, 10)])
    assert (info.status, info.transfer_count) == (1, 17)
    assert blocks(dst, 3, 7) == bytes(7 * 512) and blocks(dst, 90, 10) == bytes(10 * 512)
    assert blocks(dst, 2, 1) == b"\xa5" * 512 and blocks(dst, 10, 1) == b"\xa5" * 512


def test_forged_token_refused(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    token = bytearray(populate(src, [(0, 8)]))
    before = blocks(src, 100, 8)
    for byte in (8, 20, 100, 300, 511):  # identifier, creator, nonce, vendor, MAC
        forged = bytearray(token)
        forged[byte] ^= 0x01
        refused(src, bytes(forged), [(100, 8)], Asc.INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN)
    assert blocks(src, 100, 8) == before
    # held as failed for RECEIVE ROD TOKEN INFORMATION, with the sense
    info = rod.RodTokenInformation.parse(send(src, rod.ReceiveRodTokenInformation(
        list_identifier=2, allocation_length=1024), alloc=1024))
    assert info.status == rod.COPY_STATUS_COMPLETED_WITH_ERRORS
    assert (info.sense[2], info.sense[12], info.sense[13]) == (5, 0x23, 0x04)


def test_wrong_type_and_length_refused(lab):
    src = lab.disk("src")
    token = bytearray(populate(src, [(0, 8)]))
    token[3] = 0x02  # 00800002h: a persistent token, which we never make
    refused(src, bytes(token), [(100, 8)], Asc.INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE)
    zero = bytearray(rod.block_device_zero_token())
    zero[7] = 0xF0
    refused(src, bytes(zero), [(100, 8)], Asc.INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH)


def test_expired_token_refused(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    token = populate(src, [(0, 8)], inactivity_timeout=30)
    lab.clock.now += 29
    write_using(src, token, [(100, 8)])  # a use restarts the inactivity timer
    lab.clock.now += 29
    write_using(src, token, [(110, 8)])
    lab.clock.now += 31
    before = blocks(src, 120, 8)
    refused(src, token, [(120, 8)], Asc.INVALID_TOKEN_OPERATION_TOKEN_EXPIRED)
    assert blocks(src, 120, 8) == before


def test_inactivity_timeout_beyond_maximum_refused(lab):
    src = lab.disk("src")
    plist = rod.PopulateTokenList((rod.BlockRange(0, 8),), inactivity_timeout=3601).encode()
    with pytest.raises(CheckCondition) as e:
        send(src, rod.PopulateToken(list_identifier=1, parameter_list_length=len(plist)),
             plist)
    assert e.value.sense.asc == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert e.value.sense.sense_key_specific == bytes([0x80, 0, 4])


def test_written_source_cancels_token(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    token = populate(src, [(10, 10)])
    other = populate(src, [(40, 10)], list_id=5)
    # a write beside the range leaves the token valid
    send(src, spc_write(30, 2), b"\x11" * 1024)
    write_using(src, token, [(100, 10)])
    send(src, spc_write(19, 2), b"\x22" * 1024)  # the last block of the range, and one past
    refused(src, token, [(100, 10)], Asc.INVALID_TOKEN_OPERATION_TOKEN_CANCELLED)
    write_using(src, other, [(150, 10)])  # the other range was not written


def spc_write(lba, n):
    from lio_xcopy.scsi import sbc
    return sbc.Write10(lba=lba, transfer_length=n)


def test_del_tkn_deletes(lab):
    src = lab.disk("src")
    token = populate(src, [(0, 4)])
    write_using(src, token, [(100, 4)], del_tkn=True)
    refused(src, token, [(100, 4)], Asc.INVALID_TOKEN_OPERATION_TOKEN_DELETED)


def test_policy_forbidden_lun_refused(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    dst = lab.disk("dst")
    token = populate(src, [(0, 8)])
    e = refused(dst, token, [(0, 8)],
                Asc.INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED)
    assert "may not copy together" in str(e)
    assert blocks(dst, 0, 8) == bytes(8 * 512)


def test_range_checks(lab):
    src = lab.disk("src")
    plist = rod.PopulateTokenList((rod.BlockRange(BLOCKS - 4, 8),)).encode()
    with pytest.raises(CheckCondition) as e:
        send(src, rod.PopulateToken(list_identifier=1, parameter_list_length=len(plist)),
             plist)
    assert e.value.sense.asc == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    with pytest.raises(CheckCondition) as e:
        send(src, rod.ReceiveRodTokenInformation(list_identifier=77, allocation_length=64),
             alloc=64)
    assert e.value.sense.asc == Asc.INVALID_FIELD_IN_CDB
    assert e.value.sense.sense_key_specific == bytes([0xC0, 0, 2])


def test_report_all_rod_tokens_lists_none(lab):
    src = lab.disk("src")
    populate(src, [(0, 4)])
    assert send(src, rod.ReportAllRodTokens(allocation_length=64), alloc=64) == \
        bytes.fromhex("00000004 00000000")


def test_commands_reported_and_vpd(lab):
    src = lab.disk("src")
    data = send(src, spc.ReportSupportedOperationCodes(allocation_length=4096),
                alloc=4096)
    listed, pos = set(), 4
    while pos < len(data):
        listed.add((data[pos], struct.unpack_from(">H", data, pos + 2)[0]))
        pos += 20 if data[pos + 5] & 0x02 else 8
    assert {(0x83, 0x10), (0x83, 0x11), (0x84, 0x07), (0x84, 0x08)} <= listed
    page = ThirdPartyCopyPage.parse(send(src, spc.Inquiry(evpd=1, page_code=0x8F,
                                                          allocation_length=4096), alloc=4096))
    assert isinstance(page.descriptors[0], BlockDeviceRodLimits)
    assert page.descriptors[0] == BlockDeviceRodLimits(64, 3600, 60, 1 << 24, 0)
    cmds = dict(page.find(SupportedCommands).commands)
    assert {0x10, 0x11} <= set(cmds[0x83]) and {0x07, 0x08} <= set(cmds[0x84])
    assert page.find(RodTokenFeatures).max_token_inactivity_timeout == 3600
    assert page.find(SupportedRodTypes).types == ((0x00800001, 0x03, 0), (0xFFFF0001, 0x02, 0))


# --- wire formats ----------------------------------------------------------------------------
def test_golden_cdbs():
    assert rod.PopulateToken(list_identifier=0x01020304, parameter_list_length=32).encode() \
        == bytes.fromhex("8310 00000000 01020304 00000020 0000")
    assert rod.WriteUsingToken(list_identifier=7, parameter_list_length=552).encode() \
        == bytes.fromhex("8311 00000000 00000007 00000228 0000")
    assert rod.ReceiveRodTokenInformation(list_identifier=9, allocation_length=1024)\
        .encode() == bytes.fromhex("8407 00000009 00000000 00000400 0000")
    assert rod.ReportAllRodTokens(allocation_length=16).encode() == \
        bytes.fromhex("8408 00000000 00000000 00000010 0000")


def test_golden_parameter_lists():
    # as ddpt's do_pop_tok builds it: one range, inactivity timeout 30, no RTV
    pt = rod.PopulateTokenList((rod.BlockRange(0x10, 0x20),), inactivity_timeout=30)
    assert pt.encode() == bytes.fromhex(
        "001e 0000 0000001e 00000000 0000 0010"
        "0000000000000010 00000020 00000000")
    assert rod.PopulateTokenList.parse(pt.encode()) == pt
    tok = rod.block_device_zero_token()
    assert tok[:8] == bytes.fromhex("ffff0001000001f8") and not any(tok[8:])
    wut = rod.WriteUsingTokenList(tok, (rod.BlockRange(5, 6),), offset_into_rod=3,
                                  del_tkn=True)
    raw = wut.encode()
    assert len(raw) == 552 and raw[:16] == bytes.fromhex("0226 0200 00000000 0000000000000003")
    assert raw[16:528] == tok and raw[528:536] == bytes.fromhex("0000000000000010")
    assert raw[536:] == bytes.fromhex("0000000000000005 00000006 00000000")
    assert rod.WriteUsingTokenList.parse(raw) == wut


def test_golden_rrti():
    info = rod.RodTokenInformation(0x10, 1, 32, token=b"\x01" * 512)
    raw = info.encode()
    # an ended operation's ESTIMATED STATUS UPDATE DELAY is FFFF FFFEh (SPC-4 6.24)
    assert raw[:32] == bytes.fromhex(
        "00000222 1001 0000 fffffffe 00 00 00 f1 0000000000000020 0000 000000000000")
    assert raw[32:38] == bytes.fromhex("00000202 0000") and raw[38:] == b"\x01" * 512
    assert rod.RodTokenInformation.parse(raw) == info
    # 18 bytes of sense: LENGTH OF THE SENSE DATA FIELD a multiple of four (20), SENSE
    # DATA LENGTH 18, CHECK CONDITION; the ROD TOKEN DESCRIPTORS LENGTH after the pad
    failed = rod.RodTokenInformation(0x11, 2, 7, sense=b"\x70" + bytes(17),
                                     operation_counter=3, completion_status=0x02)
    raw = failed.encode()
    assert raw[:32] == bytes.fromhex(
        "00000034 1102 0003 fffffffe 02 14 12 f1 0000000000000007 0000 000000000000")
    assert raw[32:50] == failed.sense and raw[50:52] == bytes(2)
    assert raw[52:] == bytes(4) and len(raw) == 56
    assert rod.RodTokenInformation.parse(raw) == failed


def test_malformed_lists_refused():
    with pytest.raises(CheckCondition) as e:
        rod.PopulateTokenList.parse(bytes.fromhex("001e 0000 00000000 00000000 0000 0011")
                                    + bytes(16))
    assert e.value.sense.asc == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert e.value.sense.sense_key_specific == bytes([0x80, 0, 14])
    with pytest.raises(CheckCondition) as e:
        rod.WriteUsingTokenList.parse(bytes(100))
    assert e.value.sense.asc == Asc.PARAMETER_LIST_LENGTH_ERROR


ranges = st.lists(st.builds(rod.BlockRange, st.integers(0, 2**64 - 1),
                            st.integers(0, 2**32 - 1)), max_size=5).map(tuple)


@given(ranges, st.integers(0, 2**32 - 1), st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       st.booleans())
def test_populate_round_trip(rs, timeout, rod_type, immed):
    pt = rod.PopulateTokenList(rs, timeout, rod_type, immed)
    assert rod.PopulateTokenList.parse(pt.encode()) == pt


@given(st.binary(min_size=512, max_size=512), ranges, st.integers(0, 2**64 - 1),
       st.booleans(), st.booleans())
def test_write_using_token_round_trip(token, rs, offset, del_tkn, immed):
    wut = rod.WriteUsingTokenList(token, rs, offset, del_tkn, immed)
    assert rod.WriteUsingTokenList.parse(wut.encode()) == wut


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32),
       st.integers(0, 2**128 - 1), st.binary(min_size=448, max_size=448))
def test_token_round_trip(rod_type, ident, creator, nbytes, rest):
    t = rod.RodToken(rod_type, ident, creator, nbytes, rest)
    assert rod.RodToken.parse(t.encode()) == t


@given(st.builds(BlockDeviceRodLimits, st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
                 st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
                 st.integers(0, 2**64 - 1)),
       st.builds(RodTokenFeatures, st.integers(0, 255), st.integers(0, 2**32 - 1),
                 st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                 st.integers(0, 0xFFFF), st.integers(0, 2**64 - 1)),
       st.builds(SupportedRodTypes, st.lists(st.tuples(
           st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 0xFFFF)),
           max_size=3).map(tuple)))
def test_rod_descriptors_round_trip(limits, features, types):
    page = ThirdPartyCopyPage(0, (limits, features, types))
    assert ThirdPartyCopyPage.parse(page.encode()) == page


def test_golden_rod_descriptors():
    raw = ThirdPartyCopyPage(0, (BlockDeviceRodLimits(64, 3600, 60, 1 << 24, 0),)).encode()
    assert raw[4:] == bytes.fromhex("0000 0020 000000000000 0040 00000e10 0000003c"
                                    "0000000001000000 0000000000000000")
    raw = ThirdPartyCopyPage(0, (SupportedRodTypes(((0xFFFF0001, 0x02, 0),)),)).encode()
    assert raw[4:20] == bytes.fromhex("0108 0044 0000 0040 ffff0001 0200 0000")
    raw = ThirdPartyCopyPage(0, (RodTokenFeatures(0, 0, 3600, 3600),)).encode()
    assert raw[4:8] == bytes.fromhex("0106 005c") and raw[50:52] == bytes.fromhex("0030")
    assert raw[52:56] == bytes.fromhex("0000 002c")


# --- IMMED: WRITE USING TOKEN in the background (SBC-4 5.46.2), polled by list identifier --
@pytest.fixture
def bg(lab):
    """Background work (the ROD store's and EXTENDED COPY's) is handed to the test;
    8 blocks a chunk."""
    lab.steps = lab.manager.executor = lab.manager.rod.executor = StepExecutor()
    lab.manager.rod.chunk = 8 * 512
    lab.src = lab.disk("src", os.urandom(BLOCKS * 512))
    lab.dst = lab.disk("dst")
    lab.allowed.add(frozenset(("src", "dst")))
    lab.token = populate(lab.src, [(0, 32)])
    return lab


def rrti(dev, list_id):
    return rod.RodTokenInformation.parse(send(
        dev, rod.ReceiveRodTokenInformation(list_identifier=list_id,
                                               allocation_length=1024), alloc=1024))


def send_wut(dev, token, ranges, list_id, **kw):
    plist = rod.WriteUsingTokenList(token, tuple(rod.BlockRange(*r) for r in ranges),
                                    **kw).encode()
    return send(dev, rod.WriteUsingToken(list_identifier=list_id,
                                           parameter_list_length=len(plist)), plist)


def test_write_using_token_immed_answers_good_and_is_polled(bg):
    assert send_wut(bg.dst, bg.token, [(64, 32)], 9, immed=True) == 0
    assert len(bg.steps) == 1 and blocks(bg.dst, 64, 32) == bytes(32 * 512)  # nothing yet
    info = rrti(bg.dst, 9)
    assert (info.service_action, info.status, info.transfer_count) == (0x11, 0x12, 0)
    assert (info.status_update_delay, info.completion_status) == (100, 0)
    polls = []
    real_write = bg.dst.write_blocks

    def write_then_poll(lba, n, buf):
        real_write(lba, n, buf)
        polls.append(rrti(bg.dst, 9))

    bg.dst.write_blocks = write_then_poll
    bg.steps.run_next()
    # each poll runs inside the WRITE, before the store counts it
    assert [p.status for p in polls] == [0x12] * 4
    assert [p.transfer_count for p in polls] == [0, 8, 16, 24]
    assert [p.operation_counter for p in polls] == [1, 3, 5, 7]  # READ, WRITE, READ, ...
    done = rrti(bg.dst, 9)
    assert (done.status, done.transfer_count, done.operation_counter) == (0x01, 32, 8)
    assert (done.status_update_delay, done.completion_status) == (0xFFFFFFFE, 0)
    assert blocks(bg.dst, 64, 32) == blocks(bg.src, 0, 32)
    # RECEIVE COPY STATUS (LID4) reports the same operation by its list identifier,
    # TRANSFER COUNT in blocks (SPC-4 6.24)
    raw = send(bg.dst, xcopy.ReceiveCopyStatusLid4(list_identifier=9,
                                                      allocation_length=64), alloc=64)
    st = xcopy.CopyStatusLid4.parse(raw)
    assert (st.response_to_service_action, st.status, st.transfer_count,
            st.transfer_count_units, st.operation_counter) == (0x11, 0x01, 32, 0xF1, 8)


def test_copy_operation_abort_stops_a_background_write_using_token(bg):
    send_wut(bg.dst, bg.token, [(64, 32)], 10, immed=True)
    real_write, aborts = bg.dst.write_blocks, []

    def write_then_abort(lba, n, buf):
        real_write(lba, n, buf)
        if lba == 72:  # the second chunk has landed
            aborts.append(bg.dst.handle(Command(
                xcopy.CopyOperationAbort(list_identifier=10).encode())))

    bg.dst.write_blocks = write_then_abort
    bg.steps.run_next()
    (answer,) = aborts
    assert answer.done() and answer.result(0) == 0  # completes once the writing stopped
    info = rrti(bg.dst, 10)
    assert (info.status, info.completion_status, info.transfer_count, info.sense) == (
        0x60, 0x40, 16, b"")  # TERMINATED, TASK ABORTED, the exact count
    assert blocks(bg.dst, 64, 16) == blocks(bg.src, 0, 16)
    assert blocks(bg.dst, 80, 16) == bytes(16 * 512)
    # ended: SPC-4 6.3 refuses an abort of an operation not being processed
    with pytest.raises(CheckCondition) as e:
        bg.dst.handle(Command(xcopy.CopyOperationAbort(list_identifier=10).encode()))
    assert (e.value.sense.asc, e.value.sense.sense_key_specific) == (
        Asc.INVALID_FIELD_IN_CDB, bytes.fromhex("c00002"))


def test_a_list_identifier_in_use_by_a_background_write(bg):
    send_wut(bg.dst, bg.token, [(64, 32)], 11, immed=True)
    for call in (lambda: send_wut(bg.dst, bg.token, [(128, 8)], 11),
                 lambda: populate(bg.dst, [(0, 8)], list_id=11)):
        with pytest.raises(CheckCondition) as e:
            call()
        assert (e.value.sense.key, e.value.sense.asc, e.value.sense.sense_key_specific) == (
            SenseKey.ILLEGAL_REQUEST, Asc.OPERATION_IN_PROGRESS, bytes.fromhex("c00006"))
    assert rrti(bg.dst, 11).status == 0x12  # the running one is untouched
    bg.steps.run_next()
    assert rrti(bg.dst, 11).status == 0x01


def test_a_background_write_that_fails_keeps_its_sense(bg):
    send_wut(bg.dst, bg.token, [(64, 32)], 12, immed=True, del_tkn=True)
    real_write = bg.dst.write_blocks

    def fail_third(lba, n, buf):
        if lba == 80:
            raise CheckCondition(SenseData(SenseKey.MEDIUM_ERROR, 0x0C00))
        real_write(lba, n, buf)

    bg.dst.write_blocks = fail_third
    bg.steps.run_next()
    info = rrti(bg.dst, 12)
    assert (info.status, info.completion_status, info.transfer_count) == (0x02, 0x02, 16)
    assert (info.sense[2] & 0x0F, info.sense[12]) == (SenseKey.MEDIUM_ERROR, 0x0C)
    assert info.token == b""
    # DEL_TKN takes effect only for a write that completed: the token still works
    bg.dst.write_blocks = real_write
    assert write_using(bg.dst, bg.token, [(200, 8)], list_id=13).status == 0x01


def test_checks_before_good_still_fail_an_immed_write_at_once(bg):
    forged = bytearray(bg.token)
    forged[100] ^= 1
    with pytest.raises(CheckCondition) as e:
        send_wut(bg.dst, bytes(forged), [(64, 8)], 14, immed=True)
    assert e.value.sense.asc == Asc.INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN
    assert len(bg.steps) == 0 and rrti(bg.dst, 14).status == 0x02


def test_populate_token_with_immed_holds_its_token(bg):
    token = populate(bg.src, [(0, 8)], list_id=15, immed=True)
    assert rod.RodToken.parse(token).bytes_represented == 8 * 512


def test_a_daemon_stop_ends_a_background_write(bg):
    send_wut(bg.dst, bg.token, [(64, 32)], 16, immed=True)
    bg.manager.stop()
    bg.steps.run_next()
    info = rrti(bg.dst, 16)
    assert (info.status, info.transfer_count) == (0x60, 0)
    assert blocks(bg.dst, 64, 32) == bytes(32 * 512)


# --- ROD CSCD descriptors: a ROD token as an EXTENDED COPY's source (SPC-4 6.4.5.9) --------
def test_rod_cscd_golden_and_round_trip():
    d = xcopy.RodCscd(rod_token_offset=0x10, del_tkn=True)
    assert d.encode() == bytes.fromhex(
        "fe 00 0000 ffff 0000 00000000 00000000 00000000 0000 00 01 00000010 00000000")
    plist = xcopy.build_extended_copy_lid4(
        [d, xcopy.IdentificationCscd(bytes(16), 0, block_length=512)],
        [xcopy.BlockToBlock(0, 1, 8, 0, 0)], list_identifier=1, inline_data=bytes(528))
    p = xcopy.parse_extended_copy_lid4(plist)
    assert p.cscds[0] == d and p.encode() == plist
    assert "FEh ROD" in p.describe()
    assert 0xFE in xcopy.Limits().implemented_descriptor_types


@pytest.mark.parametrize(("byte", "value", "pointer"), [
    (8, 0x80, 48 + 8),  # ROD TYPE: a ROD to populate
    (22, 0x01, None),  # R_TOKEN
    (15, 0x05, 48 + 12),  # REQUESTED ROD TOKEN LIFETIME without R_TOKEN
    (19, 0x05, 48 + 16),  # REQUESTED ROD TOKEN INACTIVITY TIMEOUT without R_TOKEN
    (27, 0x11, 48 + 24),  # the token would run past the inline data
])
def test_rod_cscd_refusals_point_at_the_field(byte, value, pointer):
    plist = bytearray(xcopy.build_extended_copy_lid4(
        [xcopy.RodCscd(), xcopy.IdentificationCscd(bytes(16), 0)],
        [xcopy.BlockToBlock(0, 1, 8, 0, 0)], list_identifier=1, inline_data=bytes(512)))
    plist[48 + byte] = value
    with pytest.raises(CheckCondition) as e:
        xcopy.parse_extended_copy_lid4(bytes(plist))
    assert e.value.sense.asc == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    want = bytes([0x88, 0, 48 + 22]) if pointer is None else bytes([0x80, 0, pointer])
    assert e.value.sense.sense_key_specific == want


def _dst_cscd(dev):
    naa = next(d for d in dev.designators() if d.designator_type == 3)
    return xcopy.IdentificationCscd.from_designator(naa, 0, 512)


def _xcopy_from_token(dev, token, segments, *, del_tkn=False, list_id=0x77, pad=b""):
    """EXTENDED COPY (LID4) received by ``dev``: CSCD 0 the ROD of ``token`` (in the
    inline data after ``pad``), CSCD 1 ``dev`` itself."""
    plist = xcopy.build_extended_copy_lid4(
        [xcopy.RodCscd(rod_token_offset=len(pad), del_tkn=del_tkn), _dst_cscd(dev)],
        segments, list_identifier=list_id, inline_data=pad + token)
    result = dev.handle(Command(xcopy.ExtendedCopyLid4(parameter_list_length=len(plist))
                                .encode(), DataBuffer.of(bytearray(plist))))
    return result.result(10) if not isinstance(result, int) else result


def test_extended_copy_reads_a_rod_token_byte_exact(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    dst = lab.disk("dst")
    lab.allowed.add(frozenset(("src", "dst")))
    token = populate(src, [(10, 20), (100, 12)])
    # ROD blocks 4-27 (the first range from block 14, then 8 of the second) to LBA 50
    assert _xcopy_from_token(dst, token, [xcopy.BlockToBlock(0, 1, 24, 4, 50)],
                             pad=b"label") == 0
    assert blocks(dst, 50, 24) == blocks(src, 14, 16) + blocks(src, 100, 8)
    assert blocks(dst, 49, 1) == bytes(512) and blocks(dst, 74, 1) == bytes(512)
    raw = send(dst, xcopy.ReceiveCopyStatusLid4(list_identifier=0x77,
                                                   allocation_length=64), alloc=64)
    st = xcopy.CopyStatusLid4.parse(raw)
    assert (st.status, st.transfer_count, st.operation_counter) == (0x01, 24 * 512, 2)
    # the token stays usable; with DEL_TKN the copy that completes deletes it
    assert _xcopy_from_token(dst, token, [xcopy.BlockToBlock(0, 1, 8, 0, 0)],
                             del_tkn=True) == 0
    assert blocks(dst, 0, 8) == blocks(src, 10, 8)
    refused(dst, token, [(200, 8)], Asc.INVALID_TOKEN_OPERATION_TOKEN_DELETED)


def test_extended_copy_refuses_a_bad_rod_token_before_any_block_moves(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    dst = lab.disk("dst")
    token = populate(src, [(0, 16)])
    forged = bytearray(token)
    forged[300] ^= 1
    for tok, asc in ((bytes(forged), Asc.INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN),
                     (token, Asc.INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED)):
        with pytest.raises(CheckCondition) as e:  # src and dst not in a copy group
            _xcopy_from_token(dst, tok, [xcopy.BlockToBlock(0, 1, 8, 0, 0)], pad=bytes(4))
        assert (e.value.sense.key, e.value.sense.asc) == (SenseKey.ILLEGAL_REQUEST, asc)
        # the field pointer names the token in the inline data: 48 + 64 + 28 + 4
        assert e.value.sense.sense_key_specific == bytes([0x80, 0, 144])
    assert blocks(dst, 0, 8) == bytes(8 * 512)
    lab.allowed.add(frozenset(("src", "dst")))
    with pytest.raises(CheckCondition) as e:  # past the ROD's 16 blocks
        _xcopy_from_token(dst, token, [xcopy.BlockToBlock(0, 1, 8, 10, 0)])
    assert (e.value.sense.key, e.value.sense.asc) == (SenseKey.COPY_ABORTED,
                                                      Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE)
    with pytest.raises(CheckCondition) as e:  # the ROD as the destination
        _xcopy_from_token(dst, token, [xcopy.BlockToBlock(1, 0, 8, 0, 0)])
    assert (e.value.sense.key, e.value.sense.asc) == (SenseKey.COPY_ABORTED,
                                                      Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    assert blocks(dst, 0, 16) == bytes(16 * 512)


def test_extended_copy_from_the_zero_token_zeroes(lab):
    dst = lab.disk("z", b"\xa5" * (BLOCKS * 512))
    assert _xcopy_from_token(dst, rod.block_device_zero_token(),
                             [xcopy.BlockToBlock(0, 1, 12, 0, 30)]) == 0
    assert blocks(dst, 30, 12) == bytes(12 * 512)
    assert blocks(dst, 29, 1) == b"\xa5" * 512 and blocks(dst, 42, 1) == b"\xa5" * 512


def test_a_source_written_during_the_copy_fails_it(lab):
    src = lab.disk("src", os.urandom(BLOCKS * 512))
    dst = lab.disk("dst")
    lab.allowed.add(frozenset(("src", "dst")))
    token = populate(src, [(0, 32)])
    real_write = dst.write_blocks

    def write_then_overwrite_source(lba, n, buf):
        real_write(lba, n, buf)
        if lba == 0:  # segment 0 landed; an initiator writes one of the ROD's blocks
            src.write_blocks(20, 1, DataBuffer.of(bytearray(512)))

    dst.write_blocks = write_then_overwrite_source
    with pytest.raises(CheckCondition) as e:
        _xcopy_from_token(dst, token, [xcopy.BlockToBlock(0, 1, 8, 0, 0),
                                       xcopy.BlockToBlock(0, 1, 8, 16, 8)])
    # the point in time is gone (SPC-4 5.17.4.3): segment 1 fails, nothing of it written
    assert (e.value.sense.key, e.value.sense.command_specific) == (SenseKey.COPY_ABORTED, 1)
    assert e.value.sense.asc == Asc.INVALID_TOKEN_OPERATION_TOKEN_CANCELLED
    assert blocks(dst, 0, 8) == blocks(src, 0, 8) and blocks(dst, 8, 8) == bytes(8 * 512)


def test_a_background_write_that_meets_a_bug_still_ends(bg, caplog):
    send_wut(bg.dst, bg.token, [(64, 32)], 17, immed=True)

    def broken(lba, n, buf):
        raise RuntimeError("a bug")

    bg.dst.write_blocks = broken
    bg.steps.run_next()
    info = rrti(bg.dst, 17)
    assert (info.status, info.completion_status) == (0x02, 0x02)
    assert (info.sense[2] & 0x0F, info.sense[12], info.sense[13]) == (
        SenseKey.HARDWARE_ERROR, 0x0D, 0x01)
    assert "WRITE USING TOKEN list 17 failed" in caplog.text


def test_one_list_identifier_space_with_extended_copy(bg):
    """SPC-4 5.17.4.2: a list identifier a running WRITE USING TOKEN holds is OPERATION
    IN PROGRESS for an EXTENDED COPY (LID4) (its byte 20), and the other way round (the
    CDB's LIST IDENTIFIER, byte 6)."""
    send_wut(bg.dst, bg.token, [(64, 32)], 21, immed=True)
    with pytest.raises(CheckCondition) as e:
        _xcopy_from_token(bg.dst, rod.block_device_zero_token(),
                          [xcopy.BlockToBlock(0, 1, 8, 0, 0)], list_id=21)
    assert (e.value.sense.asc, e.value.sense.sense_key_specific) == (
        Asc.OPERATION_IN_PROGRESS, bytes.fromhex("800014"))
    bg.steps.run_next()
    plist = xcopy.build_extended_copy_lid4(
        [xcopy.RodCscd(), _dst_cscd(bg.dst)], [xcopy.BlockToBlock(0, 1, 8, 0, 0)],
        list_identifier=22, immed=True, inline_data=rod.block_device_zero_token())
    bg.dst.handle(Command(xcopy.ExtendedCopyLid4(parameter_list_length=len(plist))
                          .encode(), DataBuffer.of(bytearray(plist))))
    with pytest.raises(CheckCondition) as e:
        send_wut(bg.dst, bg.token, [(100, 8)], 22)
    assert (e.value.sense.asc, e.value.sense.sense_key_specific) == (
        Asc.OPERATION_IN_PROGRESS, bytes.fromhex("c00006"))
    bg.steps.run_next()  # the copy ends: 22 is free again
    assert send_wut(bg.dst, bg.token, [(100, 8)], 22) == 0
