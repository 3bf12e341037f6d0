"""A hostile initiator through the real kernel: a few thousand random and mutated CDBs
and parameter lists over SG_IO to LUNs of this module's own, with a seeded RNG
(``LIO_XCOPY_HOSTILE_SEED`` replays a run; the seed is printed).

Which LUN gets what:

- **checked** disk ``hcheck`` and tape ``htape`` (their backing bytes must not change):
  random opcodes, valid opcodes with random fields, RECEIVE COPY RESULTS with random
  allocation lengths, mutated MODE SELECT pages; never an opcode that writes the medium
  (:data:`DESTRUCTIVE`: WRITE*, WRITE SAME, UNMAP, FORMAT, ERASE, WRITE FILEMARKS,
  EXTENDED COPY, whose CSCD ID FFFFh names the LUN that receives it, ...), nor a MODE
  SELECT that partitions it (the Medium Partition page with FDP, SDP or IDP set);
- **scratch** disk ``hscratch`` and tape ``hstape`` (data not checked): all of that
  plus the destructive opcodes and mutated EXTENDED COPY lists naming only the two
  scratch LUNs, and (to the disk) mutated POPULATE TOKEN and WRITE USING TOKEN lists
  with RECEIVE ROD TOKEN INFORMATION;
- the **changer** ``hchanger`` of a library with three cartridges: everything,
  MOVE MEDIUM included; its cartridges' bytes must not change (no command goes to its
  drive) and no cartridge may be lost or duplicated.

Never sent: opcodes LIO's core answers itself and that change the LUN's state for every
later command (PERSISTENT RESERVE OUT 5Fh, RESERVE/RELEASE 16h/17h/56h/57h,
MAINTENANCE OUT A4h: SET TARGET PORT GROUPS). The LUNs are on a loopback target of
their own, so the copy access policy keeps the session's LUNs out of every copy.

Afterwards: the daemon lives and serves (sg_inq, a read of known data), no command
reached the daemon's catch-all, the checked bytes are unchanged, every command got a
SCSI status (GOOD, CHECK CONDITION with fixed-format sense 70h/71h, or BUSY, RESERVATION
CONFLICT, TASK SET FULL, TASK ABORTED), and dmesg has no TCMU ring error, WARNING or BUG.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
import random
import re
import struct
import time
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, run

from lio_xcopy.control import library as ops
from lio_xcopy.control import provision
from lio_xcopy.devices.base import LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.changer import MediumChanger
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import rod, spc, ssc, xcopy
from lio_xcopy.sg import sgio

pytestmark = pytest.mark.vm

COMMANDS_PER_LUN = int(os.environ.get("LIO_XCOPY_HOSTILE_COMMANDS", "500"))
TARGET_WWN = "naa.5001405" + "badc0de01"
DISK_BLOCKS = 2048  # 1 MiB of 512-byte blocks
#: Opcodes that write a medium (SBC-4, SSC-4, SPC-4): never sent to a checked LUN.
DESTRUCTIVE = frozenset({
    0x04, 0x0A, 0x0B, 0x10, 0x19, 0x2A, 0x2E, 0x3B, 0x3F, 0x41, 0x42, 0x48, 0x50, 0x51,
    0x52, 0x53, 0x7F, 0x80, 0x83, 0x89, 0x8A, 0x8B, 0x8D, 0x8E, 0x93, 0x9A, 0x9C, 0x9F,
    0xAA, 0xAE,
})
#: Answered by LIO's core, and they change reservations or ALUA state for what follows.
CORE_STATE = frozenset({0x16, 0x17, 0x56, 0x57, 0x5F, 0xA4})
#: The statuses a command may end in (SAM-5 5.3): GOOD, CHECK CONDITION, CONDITION MET,
#: BUSY, RESERVATION CONFLICT, TASK SET FULL, TASK ABORTED.
STATUSES = {0x00: "GOOD", 0x02: "CHECK CONDITION", 0x04: "CONDITION MET", 0x08: "BUSY",
            0x18: "RESERVATION CONFLICT", 0x28: "TASK SET FULL", 0x40: "TASK ABORTED"}
#: Kernel log lines that mean the ring or the kernel went wrong.
KERNEL_TROUBLE = re.compile(r"ring broken|tcmu|cmd_id|\bBad |WARNING|BUG|Call Trace|Oops",
                            re.IGNORECASE)
DATA_OUT = frozenset({0x0A, 0x2A, 0x8A, 0xAA, 0x2E, 0x8E, 0xAE, 0x15, 0x55, 0x4C, 0x83,
                      0x1D, 0x3B, 0x41, 0x93, 0x42, 0x89})
_KERNEL_CDB_SIZE = (6, 10, 10, 12, 16, 12, 10, 10)  # Linux scsi_command_size, by group
#: Commands that return medium data: READ (6/10/12/16), READ REVERSE, RECOVER BUFFERED
#: DATA, READ BUFFER. No other command's Data-In may hold a byte of the media.
MEDIUM_READS = frozenset({0x08, 0x28, 0xA8, 0x88, 0x0F, 0x14, 0x3C})
CHUNK = 32


def chunks(data: bytes) -> set[bytes]:
    """The ``CHUNK``-byte pieces of ``data`` at ``CHUNK``-aligned offsets."""
    return {data[i : i + CHUNK] for i in range(0, len(data) - CHUNK + 1, CHUNK)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dmesg() -> list[str]:
    return run("dmesg", check=False).stdout.splitlines()


class Storm:
    """The commands sent and what came back, per LUN."""

    def __init__(self, seed: int | str):
        self.rng = random.Random(seed)
        self.sent: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[tuple[str, str]] = collections.Counter()
        self.sense_keys: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []
        self.media: set[bytes] = set()  # chunks of the checked media (see :func:`chunks`)

    def send(self, name: str, dev: sgio.SgIoDevice, cdb: bytes, data_in: int = 0,
             data_out: bytes | None = None) -> sgio.Result | None:
        self.sent[name] += 1
        try:
            res = dev.execute(cdb, data_in=data_in, data_out=data_out or None, timeout=60,
                              check=False)
        except sgio.SgIoError as e:
            self.problems.append(f"{name}: {cdb.hex(' ')}: no SCSI status: {e}")
            return None
        status = STATUSES.get(res.status)
        self.statuses[(name, status or f"{res.status:#04x}")] += 1
        if status is None:
            self.problems.append(f"{name}: {cdb.hex(' ')}: status {res.status:#04x}")
        elif res.status == 0x02:
            sb = res.sense_bytes
            if len(sb) < 18 or sb[0] & 0x7F not in (0x70, 0x71) or res.sense is None:
                self.problems.append(f"{name}: {cdb.hex(' ')}: CHECK CONDITION with sense "
                                     f"{sb.hex(' ')}")
            else:
                self.sense_keys[res.sense.key.name] += 1
        if res.data and cdb[0] not in MEDIUM_READS:  # a data area block an earlier READ left
            leaked = [i for i in range(0, len(res.data) - CHUNK + 1, CHUNK)
                      if res.data[i : i + CHUNK] in self.media]
            if leaked:
                self.problems.append(f"{name}: {cdb.hex(' ')}: medium data at byte "
                                     f"{leaked[0]} of its {len(res.data)}-byte Data-In")
        return res

    # --- what to send -----------------------------------------------------------------
    def cdb(self, opcode: int) -> bytearray:
        if opcode == 0x7F:  # VARIABLE LENGTH CDB: ADDITIONAL CDB LENGTH says 16 bytes
            cdb = bytearray(self.rng.randbytes(16))
            cdb[0], cdb[7] = 0x7F, 8
            return cdb
        cdb = bytearray(self.rng.randbytes(_KERNEL_CDB_SIZE[opcode >> 5]))
        cdb[0] = opcode
        return cdb

    def buffers(self, opcode: int) -> tuple[int, bytes | None]:
        size = self.rng.choice([0, 0, self.rng.randint(1, 64), self.rng.randint(1, 600),
                                512, 4096, self.rng.randint(1, 65536)])
        if opcode in DATA_OUT or self.rng.random() < 0.1:
            return 0, self.rng.randbytes(size) if size else None
        return size, None

    def structured(self, layouts: list) -> bytes:
        """A valid opcode of the LUN with random fields (edge values often)."""
        layout = self.rng.choice(layouts)
        values = {}
        for f in layout.FIELDS:
            if f.name == "service_action" and layout.SERVICE_ACTION is not None:
                continue
            values[f.name] = self.rng.choice([0, f.mask, self.rng.randint(0, f.mask),
                                              self.rng.randint(0, min(16, f.mask))])
        return layout(**values).encode()

    def mutate(self, data: bytes, n: int | None = None) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 4) if n is None else n):
            if out:
                out[self.rng.randrange(len(out))] = self.rng.randrange(256)
        if self.rng.random() < 0.2:
            out = out[: self.rng.randint(0, len(out))]
        return bytes(out)


@pytest.fixture(scope="module")
def hostile(lab):
    """The module's own LUNs on a loopback target of their own; deleted afterwards."""
    work = lab.work / "hostile"
    work.mkdir()
    rng = random.Random(1)
    check_disk = work / "hcheck.img"
    check_disk.write_bytes(rng.randbytes(DISK_BLOCKS * 512))
    (work / "hscratch.img").write_bytes(bytes(DISK_BLOCKS * 512))
    records = [rng.randbytes(n) for n in (512, 10000, 65536, 3)]
    for name in ("htape", "hstape"):
        t = Tape(LunIdentity(name, "0"), work / f"{name}.aws", 8 * MiB)
        for rec in records:
            t.write_record(DataBuffer.of(rec), len(rec))
        t.write_filemarks(1)
        t.close()
    library = work / "library"
    ops.create_library(library, slots=4, ie_slots=1, drives=1, capacity=2 * MiB,
                       barcodes=ops.lto_barcodes(3), drive_luns=["hlibtape0"])
    luns = {
        "hcheck": provision.create_disk("hcheck", check_disk, DISK_BLOCKS * 512),
        "hscratch": provision.create_disk("hscratch", work / "hscratch.img",
                                          DISK_BLOCKS * 512),
        "htape": provision.create_tape("htape", work / "htape.aws", 8 * MiB),
        "hstape": provision.create_tape("hstape", work / "hstape.aws", 8 * MiB),
        "hchanger": provision.create_changer("hchanger", library),
        "hlibtape0": provision.create_library_drive("hlibtape0", library, 0),
    }
    for lun in luns.values():
        provision.export_loopback(lun, target_wwn=TARGET_WWN)
    devs = {name: provision.find_kernel_device(lun) for name, lun in luns.items()}
    clear_unit_attention(lab.disk_sg, lab.tape_sg, *(str(d.sg) for d in devs.values()))
    yield work, luns, devs, records, library
    for name in luns:
        provision.delete(name)
    import rtslib_fb

    for target in list(rtslib_fb.FabricModule("loopback").targets):
        if target.wwn == TARGET_WWN:
            target.delete()
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def _copy_lists(naa: dict[str, bytes]) -> list[bytes]:
    """Valid EXTENDED COPY lists between the scratch disk and tape, to be mutated."""
    d = xcopy.IdentificationCscd(naa["hscratch"], 0, block_length=512)
    t = xcopy.IdentificationCscd(naa["hstape"], 1)
    tf = xcopy.IdentificationCscd(naa["hstape"], 1, block_length=512, fixed=True, pad=True)
    return [
        xcopy.build_extended_copy([d, t], [xcopy.BlockToStream(0, 1, 64, 0, 4096)],
                                  list_identifier=1, list_id_usage=0),
        xcopy.build_extended_copy([t, d], [xcopy.StreamToBlock(0, 1, 1, 100, 512)],
                                  list_identifier=2, list_id_usage=0),
        xcopy.build_extended_copy([d, d], [xcopy.BlockToBlock(0, 1, 16, 0, 1000)],
                                  list_identifier=3, list_id_usage=2),
        xcopy.build_extended_copy([d, tf], [xcopy.BlockToStream(0, 1, 8, 8, 2)]),
        xcopy.build_extended_copy([t, t], [xcopy.StreamToStream(0, 1, 512, 512, 512)],
                                  list_identifier=4, list_id_usage=0),
        xcopy.build_extended_copy([d], [xcopy.BlockToBlock(0xFFFF, 0, 4, 0, 200)]),
        # 07h-0Fh and 13h (SPC-4 6.4.6): verify, byte offsets, held data, tape image copy
        xcopy.build_extended_copy([d, t], [xcopy.VerifyCscd(0), xcopy.VerifyCscd(1, tur=True),
                                           xcopy.BlockToStreamHeld(0, 1, 4, 0, 1024)],
                                  list_identifier=5, list_id_usage=0),
        xcopy.build_extended_copy([d, t], [xcopy.BlockToStreamOffset(0, 1, 1000, 2, 7, 500),
                                           xcopy.StreamToBlockOffset(1, 0, 10, 9, 3, 10)],
                                  list_identifier=6, list_id_usage=0),
        xcopy.build_extended_copy([d, d], [xcopy.BlockToBlockOffset(0, 1, 3000, 1, 500, 9,
                                                                    511),
                                           xcopy.BlockToBlockHeld(0, 1, 2, 0, 600)],
                                  list_identifier=7, list_id_usage=0),
        xcopy.build_extended_copy([t, t], [xcopy.StreamToDiscardHeld(0, 512, 512),
                                           xcopy.TapeImageCopy(0, 1, 1)],
                                  list_identifier=8, list_id_usage=0),
    ]


def _rod_lists() -> list[tuple[object, bytes]]:
    """Valid POPULATE TOKEN and WRITE USING TOKEN lists for the scratch disk (SBC-4
    5.9.2/5.46.2), to be mutated: block ranges, the zero token, a token we never made."""
    r = rod.BlockRange
    forged = rod.RodToken(rod.ROD_TYPE_PIT_CHANGE_VULNERABLE, 7, bytes(32), 4096,
                          random.Random(2).randbytes(448)).encode()
    return [
        (rod.PopulateToken, rod.PopulateTokenList((r(0, 8),)).encode()),
        (rod.PopulateToken, rod.PopulateTokenList((r(0, 4), r(100, 16)),
                                                   inactivity_timeout=5).encode()),
        (rod.WriteUsingToken, rod.WriteUsingTokenList(
            rod.block_device_zero_token(), (r(16, 8),)).encode()),
        (rod.WriteUsingToken, rod.WriteUsingTokenList(
            rod.block_device_zero_token(), (r(32, 8), r(64, 4)), immed=True).encode()),
        (rod.WriteUsingToken, rod.WriteUsingTokenList(forged, (r(0, 8),),
                                                        offset_into_rod=1).encode()),
    ]


def _mode_select_lists(storm: Storm, dev: sgio.SgIoDevice, name: str) -> list[bytes]:
    """The LUN's current mode pages as a MODE SELECT (6) list (header, block
    descriptor, pages), to be mutated."""
    res = storm.send(name, dev, spc.ModeSense6(page_code=0x3F, allocation_length=255)
                     .encode(), data_in=255)
    if res is None or res.status != 0 or len(res.data) < 4:
        return [bytes(4)]
    data = bytearray(res.data)
    data[0] = 0  # MODE DATA LENGTH is reserved in MODE SELECT
    return [bytes(data)]


def _partitions_the_medium(cdb: bytes, data_out: bytes | None) -> bool:
    """Whether a MODE SELECT would partition a tape's medium, which loses what it holds:
    the Medium Partition mode page with FDP, SDP or IDP set partitions the medium at
    MODE SELECT when POFM is zero (SSC-4). A list the device cannot parse changes
    nothing."""
    if not data_out or cdb[0] not in (0x15, 0x55):
        return False
    try:
        params = spc.parse_mode_parameters(data_out, ten=cdb[0] == 0x55)
    except LioXcopyError:
        return False
    layout = ssc.MEDIUM_PARTITION_LAYOUT
    return any(page == ssc.MEDIUM_PARTITION_PAGE and len(raw) > layout.offset("fdp")
               and any(layout.get(f, raw) for f in ("fdp", "sdp", "idp"))
               for page, _, _, raw in params.pages)


def _storm(storm: Storm, name: str, dev: sgio.SgIoDevice, layouts: list, *, checked: bool,
           lists: list[bytes] = (), rcr: bool = True,
           rod_lists: list[tuple[object, bytes]] = ()) -> None:
    rng = storm.rng
    allowed = [op for op in range(256) if op not in CORE_STATE
               and not (checked and op in DESTRUCTIVE)]
    mine = [la for la in layouts if not (checked and la.OPCODE in DESTRUCTIVE)
            and la.OPCODE not in CORE_STATE]
    selects = _mode_select_lists(storm, dev, name)
    for _ in range(COMMANDS_PER_LUN):
        kind = rng.random()
        if kind < 0.3:  # any opcode, random bytes
            op = rng.choice(allowed)
            data_in, data_out = storm.buffers(op)
            cdb = bytes(storm.cdb(op))
            if checked and _partitions_the_medium(cdb, data_out):
                continue
            storm.send(name, dev, cdb, data_in, data_out)
        elif kind < 0.65:  # one of the LUN's opcodes, random fields
            cdb = storm.structured(mine)
            data_in, data_out = storm.buffers(cdb[0])
            if checked and _partitions_the_medium(cdb, data_out):
                continue
            storm.send(name, dev, cdb, data_in, data_out)
        elif kind < 0.75 and rcr:  # RECEIVE COPY RESULTS / COPY DIGEST, any allocation
            layout = rng.choice([*xcopy.RECEIVE_COPY_RESULTS, xcopy.ReceiveCopyDigest])
            fields = {"allocation_length": rng.choice(
                [0, 1, 4, 11, 12, 47, 48, 60, 0xFFFFFFFF, rng.randint(0, 70000)])}
            if any(f.name == "list_identifier" for f in layout.FIELDS):
                fields["list_identifier"] = rng.choice([0, 1, 2, 3, 4, rng.randrange(256)])
            size = rng.choice([0, 1, 12, 48, 512, 4096, rng.randint(1, 65536)])
            storm.send(name, dev, layout(**fields).encode(), data_in=size)
        elif kind < 0.85:  # MODE SELECT of the current pages, mutated
            plist = storm.mutate(rng.choice(selects), rng.randint(0, 3))
            pf = rng.choice([1, 1, 0])
            if rng.random() < 0.5:
                cdb = spc.ModeSelect6(pf=pf, parameter_list_length=min(len(plist), 255))
            else:  # the same list with the MODE SELECT (10) header
                h = plist[:4].ljust(4, b"\0")
                plist = bytes([0, 0, h[1], h[2], 0, 0, 0, h[3]]) + plist[4:]
                cdb = spc.ModeSelect10(pf=pf, parameter_list_length=len(plist))
            if checked and _partitions_the_medium(cdb.encode(), plist):
                continue  # a checked tape's records must stay
            storm.send(name, dev, cdb.encode(), data_out=plist)
        elif rod_lists and kind < 0.9:  # POPULATE TOKEN / WRITE USING TOKEN, mutated
            layout, valid = rng.choice(rod_lists)
            plist = storm.mutate(valid, rng.randint(0, 4))
            length = rng.choice([len(plist)] * 4 + [0, max(len(plist) - 1, 0), len(plist) + 8])
            cdb = layout(list_identifier=rng.randrange(4),  # type: ignore[operator]
                         parameter_list_length=length).encode()
            storm.send(name, dev, cdb, data_out=plist)
            if rng.random() < 0.5:
                info = rod.ReceiveRodTokenInformation(
                    list_identifier=rng.randrange(4),
                    allocation_length=rng.choice([0, 4, 31, 32, 36, 550, 1024]))
                storm.send(name, dev, info.encode(), data_in=rng.choice([0, 36, 1024]))
        elif lists:  # EXTENDED COPY: a valid list mutated (scratch LUNs only)
            plist = storm.mutate(rng.choice(lists), rng.randint(0, 4))
            length = rng.choice([len(plist)] * 4 + [0, max(len(plist) - 1, 0), len(plist) + 8])
            cdb = xcopy.ExtendedCopyLid1(parameter_list_length=length).encode()
            storm.send(name, dev, cdb, data_out=plist)
        else:
            storm.send(name, dev, spc.TestUnitReady().encode())


def _state_of_library(path: Path) -> list[str]:
    from lio_xcopy.devices.library import Library

    s = Library.open(path).state()
    return sorted(p.barcode for p in (*s.slots, *s.ie, *s.drives) if p is not None)


def test_hostile_initiator(lab, hostile):
    work, luns, devs, records, library = hostile
    seed = int(os.environ.get("LIO_XCOPY_HOSTILE_SEED", str(random.randrange(1 << 32))))
    print(f"\nhostile: seed {seed} (LIO_XCOPY_HOSTILE_SEED={seed} replays), "
          f"{COMMANDS_PER_LUN} commands per LUN")
    checked = [work / "hcheck.img", work / "htape.aws",
               *(library / f"{b}.aws" for b in ops.lto_barcodes(3))]
    before = {p: _sha(p) for p in checked}
    barcodes = _state_of_library(library)
    dmesg_before = len(_dmesg())
    log_before = len(lab.daemon.text())
    naa = {n: bytes.fromhex(lun.naa) for n, lun in luns.items()}
    lists = _copy_lists(naa)
    plan = [("hcheck", Disk.layouts(), {"checked": True}),
            ("htape", Tape.layouts(), {"checked": True}),
            ("hscratch", Disk.layouts(), {"checked": False, "lists": lists,
                                          "rod_lists": _rod_lists()}),
            ("hstape", Tape.layouts(), {"checked": False, "lists": lists}),
            ("hchanger", MediumChanger.layouts(), {"checked": False, "rcr": False})]
    storms = {name: Storm(f"{seed}-{name}") for name, _, _ in plan}
    media = chunks((work / "hcheck.img").read_bytes())
    for rec in records:
        media |= chunks(rec)
    for one in storms.values():
        one.media = media
    t0 = time.monotonic()
    opened = {n: sgio.SgIoDevice(str(d.sg)) for n, d in devs.items() if n != "hlibtape0"}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(plan)) as pool:  # all LUNs at once
            for f in [pool.submit(_storm, storms[n], n, opened[n], layouts, **kw)
                      for n, layouts, kw in plan]:
                f.result()
        elapsed = time.monotonic() - t0

        # the daemon lives and serves
        assert lab.daemon.alive(), lab.daemon.text()[-3000:]
        for n, d in devs.items():
            assert run("sg_inq", str(d.sg)).returncode == 0, n
        disk = opened["hcheck"]
        clear_unit_attention(str(devs["hcheck"].sg))
        got = disk.execute(struct.pack(">BBIBHB", 0x28, 0, 0, 0, 16, 0), data_in=16 * 512).data
        assert got == (work / "hcheck.img").read_bytes()[: 16 * 512]
        tape = opened["htape"]
        clear_unit_attention(str(devs["htape"].sg))
        tape.execute(ssc.PreventAllowMediumRemoval(prevent=0).encode(), check=False)
        tape.execute(ssc.LoadUnload(load=1).encode(), check=False)
        clear_unit_attention(str(devs["htape"].sg))
        bd = ssc.block_descriptor(0, 0)
        tape.execute(spc.ModeSelect6(pf=1, parameter_list_length=12).encode(),
                     data_out=bytes([0, 0, 0x10, 8]) + bd)
        tape.execute(ssc.Rewind().encode())
        got = tape.execute(ssc.Read6(transfer_length=len(records[0])).encode(),
                           data_in=len(records[0]))
        assert got.data == records[0]
    finally:
        for d in opened.values():
            d.close()

    storm = Storm(seed)
    for one in storms.values():
        storm.sent.update(one.sent)
        storm.statuses.update(one.statuses)
        storm.sense_keys.update(one.sense_keys)
        storm.problems += one.problems
    new_log = lab.daemon.text()[log_before:]
    dmesg = _dmesg()[dmesg_before:]
    trouble = [line for line in dmesg if KERNEL_TROUBLE.search(line)]
    summary = [
        f"hostile: seed {seed}: {sum(storm.sent.values())} commands in {elapsed:.0f} s "
        f"({sum(storm.sent.values()) / elapsed:.0f}/s)",
        *(f"hostile:   {n}: {storm.sent[n]} commands; " + ", ".join(
            f"{s} {c}" for (n2, s), c in sorted(storm.statuses.items()) if n2 == n)
          for n in storm.sent),
        "hostile:   sense keys: " + ", ".join(f"{k} {c}" for k, c in
                                             storm.sense_keys.most_common()),
        f"hostile:   new kernel log lines {len(dmesg)}, of them trouble {len(trouble)}",
    ]
    print("\n".join(summary))
    if os.environ.get("LIO_XCOPY_WORK"):
        Path(os.environ["LIO_XCOPY_WORK"], "hostile-summary.txt").write_text(
            "\n".join(summary + dmesg[-50:]) + "\n")

    assert not storm.problems, "\n".join(storm.problems[:20])
    assert "failed unexpectedly" not in new_log and "Traceback" not in new_log, new_log[-4000:]
    assert {p: _sha(p) for p in checked} == before, "a checked LUN's backing bytes changed"
    assert _state_of_library(library) == barcodes, "the library lost or duplicated a cartridge"
    assert not trouble, "\n".join(trouble[:20])
