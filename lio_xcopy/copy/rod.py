"""ROD tokens: POPULATE TOKEN and WRITE USING TOKEN on our disk LUNs (SBC-4 4.32, 5.9,
5.46; SPC-4 5.17), the pair Windows ODX offloads a copy with.

POPULATE TOKEN makes a point in time, change vulnerable ROD token (SPC-4 5.17.4.3) for
block ranges of the LUN; WRITE USING TOKEN writes what a token represents to block
ranges of a LUN. The token is unforgeable: bytes 96-127 are random and bytes 480-511
an HMAC-SHA256 of bytes 0-479 under a key drawn when the daemon starts, so only this
daemon's tokens verify. The token itself is a handle: the ranges it represents stay
here, with the source LUN and when it was last used. A token is refused (ILLEGAL
REQUEST, INVALID TOKEN OPERATION and the reason, SPC-4 Annex D 23h/xxh) once its
inactivity timeout passed, once any of its blocks was written (the disk reports every
write through ``write_watch``), when WRITE USING TOKEN deleted it, and where the copy
access policy would keep the source and destination LUNs apart for an EXTENDED COPY.

POPULATE TOKEN completes before it returns (it moves no data, so IMMED changes
nothing). WRITE USING TOKEN with IMMED (SBC-4 5.46.2) returns GOOD once its CDB,
parameter list and token have been checked, and writes in the background; without
IMMED it writes before it returns. RECEIVE ROD TOKEN INFORMATION (SPC-4 6.26) and
RECEIVE COPY STATUS (LID4) (SPC-4 6.24) report each operation by its list identifier,
in progress (11h foreground, 12h background, with the blocks written so far) or ended,
with the token after POPULATE TOKEN; COPY OPERATION ABORT (SPC-4 6.3) stops a
background WRITE USING TOKEN at its next chunk (60h, TASK ABORTED, the exact count).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from lio_xcopy.copy.executor import DaemonThreads, Executor, named
from lio_xcopy.copy.ports import BlockPort
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi import rod, tpc_vpd
from lio_xcopy.scsi.errors import (
    CheckCondition,
    IllegalRequest,
    InvalidFieldInParameterList,
    LbaOutOfRange,
    ParameterListLengthError,
)
from lio_xcopy.scsi.layout import Layout, bitfield
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD, TASK_ABORTED, Asc, SenseData, SenseKey
from lio_xcopy.scsi.xcopy import (
    STATUS_UPDATE_DELAY_ENDED,
    CopyOperationAbort,
    CopyStatusLid4,
    IdentificationCscd,
)

log = logging.getLogger(__name__)

#: seconds a token lives unused when POPULATE TOKEN asks for the default (INACTIVITY
#: TIMEOUT 0), and the most it may ask for
DEFAULT_INACTIVITY_TIMEOUT = 60
MAX_INACTIVITY_TIMEOUT = 3600
MAX_RANGE_DESCRIPTORS = 64
MAX_TOKENS = 1024  # live tokens per daemon: POPULATE TOKEN beyond is INSUFFICIENT RESOURCES
HELD_RESULTS = 64  # RECEIVE ROD TOKEN INFORMATION results kept per LUN
#: seconds an expired token is remembered, so a late use hears TOKEN EXPIRED
EXPIRED_KEPT = 300
#: blocks one token may represent (MAXIMUM TOKEN TRANSFER SIZE); 0 would mean no limit
MAX_TOKEN_TRANSFER_SIZE = 1 << 24
CHUNK = 1 << 20  # bytes moved per read/write
#: Bytes 64-511 of the tokens made here (SPC-4 5.17.6.1: the ROD type's and the copy
#: manager's own): a random nonce, and an HMAC-SHA256 of every byte before the MAC
TOKEN_LAYOUT = rod.ROD_TOKEN_LAYOUT.extend(
    "lio-xcopy ROD token", rod.TOKEN_LENGTH, nonce=bitfield(96, 256), mac=bitfield(480, 256))
_MAC, _NONCE = (slice(f.byte, f.byte + f.nbytes) for f in map(TOKEN_LAYOUT.field, ("mac", "nonce")))
#: ESTIMATED STATUS UPDATE DELAY (ms) of an operation in progress (SPC-4 6.24)
STATUS_POLL_MS = 100
#: where a WRITE USING TOKEN parameter list holds the ROD token (SBC-4 5.46.2)
_TOKEN_AT = rod.WRITE_USING_TOKEN_LAYOUT.offset("rod_token")

class RodDisk(BlockPort, Protocol):
    """What a LUN that serves ROD tokens offers: a block port, its identity, and the
    hook through which it reports each write (first LBA, block count)."""

    write_watch: Callable[[int, int], None] | None

    def designators(self) -> Sequence[Any]: ...


@dataclass(slots=True)
class _Token:
    """What a token represents, kept here; the token carries only its handle."""

    identifier: int
    source: RodDisk
    ranges: tuple[rod.BlockRange, ...]
    timeout: float
    last_used: float
    #: the Asc that makes it unusable (written, deleted), or None while valid
    revoked: Asc | None = None

    @property
    def blocks(self) -> int:
        return sum(r.count for r in self.ranges)


@dataclass(slots=True)
class _Operation:
    """A POPULATE TOKEN or WRITE USING TOKEN by its list identifier: what RECEIVE ROD
    TOKEN INFORMATION and RECEIVE COPY STATUS (LID4) report (SPC-4 6.24, 6.26)."""

    service_action: int  # RESPONSE TO SERVICE ACTION: 10h or 11h
    immed: bool = False
    status: int = rod.COPY_STATUS_IN_PROGRESS_FOREGROUND
    transferred: int = 0  # blocks written to the destination, in order
    operations: int = 0  # READs and WRITEs that completed GOOD (OPERATION COUNTER)
    sense: bytes = b""
    completion_status: int = GOOD
    token: bytes = b""  # the token POPULATE TOKEN made
    cancel: threading.Event = field(default_factory=threading.Event)
    stopped: Future[None] = field(default_factory=Future)  # set when it has ended

    @property
    def running(self) -> bool:
        return self.status in (rod.COPY_STATUS_IN_PROGRESS_FOREGROUND,
                               rod.COPY_STATUS_IN_PROGRESS_BACKGROUND)

    def end(self, status: int, completion: int, sense: bytes = b"") -> None:
        self.status, self.completion_status, self.sense = status, completion, sense
        if not self.stopped.done():
            self.stopped.set_result(None)

    def information(self) -> rod.RodTokenInformation:
        return rod.RodTokenInformation(
            self.service_action, self.status, self.transferred,
            token=self.token if self.status == rod.COPY_STATUS_COMPLETED else b"",
            sense=self.sense, operation_counter=self.operations & 0xFFFF,
            status_update_delay=STATUS_POLL_MS if self.running
            else STATUS_UPDATE_DELAY_ENDED,
            completion_status=0 if self.running else self.completion_status)


class _Stopped(Exception):
    """COPY OPERATION ABORT (or the daemon stopping) ended a background operation."""


class RodTokens:
    """The daemon's ROD token store and the copies made with its tokens."""

    def __init__(self, policy: Callable[[Any, Any], bool], *,
                 clock: Callable[[], float] = time.monotonic, key: bytes | None = None,
                 chunk: int = CHUNK, executor: Executor | None = None,
                 busy: Callable[[str, int], bool] = lambda _lun, _list_id: False):
        self.policy = policy  # may a copy received by the first LUN name the second?
        #: is an EXTENDED COPY the LUN received with this list identifier running? (one
        #: list identifier space for every third-party copy command, SPC-4 5.17.4.2)
        self.busy = busy
        self.clock = clock
        self.chunk = chunk
        #: runs a WRITE USING TOKEN with IMMED in the background (SBC-4 5.46.2): a
        #: daemon thread per operation by default
        self.executor: Executor = executor if executor is not None else DaemonThreads("wut")
        self._key = key or os.urandom(32)
        self._ids = itertools.count(int.from_bytes(os.urandom(4), "big") << 16)
        self._tokens: dict[int, _Token] = {}
        self._held: dict[str, OrderedDict[int, _Operation]] = {}
        self._lock = threading.Lock()

    # --- the Third-party Copy VPD page -------------------------------------------------------
    @staticmethod
    def descriptors() -> tuple[tpc_vpd.Descriptor, ...]:
        """Block Device ROD Token Limits (SBC-4 6.6.3), ROD Token Features and Supported
        ROD Types (SPC-4 7.8.17.7/8): what POPULATE TOKEN and WRITE USING TOKEN accept."""
        return (
            tpc_vpd.BlockDeviceRodLimits(MAX_RANGE_DESCRIPTORS, MAX_INACTIVITY_TIMEOUT,
                                         DEFAULT_INACTIVITY_TIMEOUT, MAX_TOKEN_TRANSFER_SIZE,
                                         0),
            tpc_vpd.RodTokenFeatures(0, 1, 0xFFFFFFFF, MAX_INACTIVITY_TIMEOUT,
                                     max_bytes_in_block_rod=0,
                                     optimal_bytes_from_token_per_segment=CHUNK),
            tpc_vpd.SupportedRodTypes((
                (rod.ROD_TYPE_PIT_CHANGE_VULNERABLE,
                 tpc_vpd.ROD_TOKEN_IN | tpc_vpd.ROD_TOKEN_OUT, 0),
                (rod.ROD_TYPE_BLOCK_DEVICE_ZERO, tpc_vpd.ROD_TOKEN_IN, 0),
            )),
        )

    # --- POPULATE TOKEN, SBC-4 5.9 -----------------------------------------------------------
    def populate_token(self, lun: RodDisk, list_id: int, data: bytes) -> None:
        """Make a token for the ranges of the parameter list and hold it for RECEIVE ROD
        TOKEN INFORMATION under ``list_id``."""
        plist = rod.PopulateTokenList.parse(data)
        log.debug("%s: POPULATE TOKEN list %d: %s", lun.name, list_id, _describe(plist.ranges))
        if plist.rod_type not in (None, rod.ROD_TYPE_PIT_DEFAULT,
                                  rod.ROD_TYPE_PIT_CHANGE_VULNERABLE, rod.ROD_TYPE_PIT_ANY):
            raise InvalidFieldInParameterList(*plist.LAYOUT.pointer("rod_type"),
                                              f"ROD type {plist.rod_type:#010x}")
        timeout = plist.inactivity_timeout or DEFAULT_INACTIVITY_TIMEOUT
        if timeout > MAX_INACTIVITY_TIMEOUT:
            raise InvalidFieldInParameterList(
                *plist.LAYOUT.pointer("inactivity_timeout"),
                f"inactivity timeout {timeout} s exceeds {MAX_INACTIVITY_TIMEOUT}")
        self._check_ranges(lun, plist.ranges, plist.LAYOUT)
        blocks = sum(r.count for r in plist.ranges)
        now = self.clock()
        with self._lock:
            self._expire(now)
            if len(self._tokens) >= MAX_TOKENS:
                raise IllegalRequest(Asc.INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN,
                                     message=f"{MAX_TOKENS} ROD tokens live")
            ident = next(self._ids)
            naa = next(d for d in lun.designators() if d.designator_type == 3)
            creator = IdentificationCscd.from_designator(
                naa, lun.peripheral_device_type, lun.block_size).encode()
            body = bytearray(rod.RodToken(rod.ROD_TYPE_PIT_CHANGE_VULNERABLE, ident, creator,
                                          blocks * lun.block_size).encode())
            body[_NONCE] = os.urandom(_NONCE.stop - _NONCE.start)
            body[_MAC] = self._mac(bytes(body))
            self._begin(lun, list_id, rod.PopulateToken)
            self._tokens[ident] = _Token(ident, lun, plist.ranges, timeout, now)
            lun.write_watch = functools.partial(self._watch, lun)
            op = _Operation(rod.PopulateToken.SERVICE_ACTION, plist.immed,
                            transferred=blocks, token=bytes(body))
            op.end(rod.COPY_STATUS_COMPLETED, GOOD)
            self._hold(lun, list_id, op)
        log.info("%s: ROD token %#x for %d blocks in %d ranges, %d s inactivity timeout",
                 lun.name, ident, blocks, len(plist.ranges), timeout)

    def _mac(self, token: bytes) -> bytes:
        return hmac.new(self._key, token[: _MAC.start], hashlib.sha256).digest()

    def _watch(self, lun: RodDisk, lba: int, count: int) -> None:
        """A write reached ``count`` blocks at ``lba`` of ``lun``: every token of it
        whose ranges overlap them is cancelled (a change vulnerable token, SPC-4
        5.17.4.3)."""
        with self._lock:
            for tok in self._tokens.values():
                if tok.source is lun and tok.revoked is None and any(
                        r.lba < lba + count and lba < r.lba + r.count for r in tok.ranges):
                    tok.revoked = Asc.INVALID_TOKEN_OPERATION_TOKEN_CANCELLED
                    log.info("%s: ROD token %#x cancelled: LBA %d (%d blocks) written",
                             lun.name, tok.identifier, lba, count)

    # --- WRITE USING TOKEN, SBC-4 5.46 -------------------------------------------------------
    def write_using_token(self, lun: RodDisk, list_id: int, data: bytes) -> None:
        """Write what the token represents, from OFFSET INTO ROD on, to the ranges of
        the parameter list; a ROD shorter than the ranges leaves the rest unwritten,
        which TRANSFER COUNT shows. Every check is made before any block moves; with
        IMMED the writing then runs in the background and this returns (SBC-4
        5.46.2), else it returns when the writing has ended, raising its error."""
        plist = rod.WriteUsingTokenList.parse(data)
        log.debug("%s: WRITE USING TOKEN list %d: %s from ROD block %d%s", lun.name, list_id,
                  _describe(plist.ranges), plist.offset_into_rod,
                  " (IMMED)" if plist.immed else "")
        op = _Operation(rod.WriteUsingToken.SERVICE_ACTION, plist.immed)
        tok: _Token | None = None
        source: RodDisk | None = None
        pieces: list[tuple[int | None, int, int]]
        with self._lock:
            self._begin(lun, list_id, rod.WriteUsingToken)
        try:
            self._check_ranges(lun, plist.ranges, plist.LAYOUT)
            rod_type, length = rod.token_type(plist.token)
            if length != rod.ROD_TOKEN_LENGTH:
                raise _invalid(Asc.INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH,
                               f"ROD TOKEN LENGTH {length:#x}")
            if rod_type == rod.ROD_TYPE_BLOCK_DEVICE_ZERO:
                pieces = [(None, r.lba, r.count) for r in plist.ranges]
            else:
                tok = self._use(lun, rod_type, plist.token)
                source = tok.source
                pieces = self._pieces(lun, tok, plist.offset_into_rod, plist.ranges)
        except CheckCondition as e:  # held as failed, with its sense, for RRTI
            op.end(rod.COPY_STATUS_COMPLETED_WITH_ERRORS, CHECK_CONDITION, e.sense.fixed())
            with self._lock:
                self._hold(lun, list_id, op)
            raise
        with self._lock:
            self._begin(lun, list_id, rod.WriteUsingToken)
            self._hold(lun, list_id, op)

        def work() -> None:
            try:
                self._write(lun, source, pieces, op)
            except _Stopped:
                op.end(rod.COPY_STATUS_TERMINATED, TASK_ABORTED)
                log.warning("%s: WRITE USING TOKEN list %d stopped after %d blocks",
                            lun.name, list_id, op.transferred)
                return
            except CheckCondition as e:
                op.end(rod.COPY_STATUS_COMPLETED_WITH_ERRORS, CHECK_CONDITION, e.sense.fixed())
                if not op.immed:
                    raise
                log.error("%s: WRITE USING TOKEN list %d failed after %d blocks: %s",
                          lun.name, list_id, op.transferred, e)
                return
            except Exception:  # a bug: the operation still ends, and says so when polled
                op.end(rod.COPY_STATUS_COMPLETED_WITH_ERRORS, CHECK_CONDITION,
                       SenseData(SenseKey.HARDWARE_ERROR, Asc.THIRD_PARTY_DEVICE_FAILURE)
                       .fixed())
                if not op.immed:
                    raise
                log.exception("%s: WRITE USING TOKEN list %d failed", lun.name, list_id)
                return
            if tok is not None and plist.del_tkn:
                with self._lock:
                    tok.revoked = Asc.INVALID_TOKEN_OPERATION_TOKEN_DELETED
            op.end(rod.COPY_STATUS_COMPLETED, GOOD)

        if plist.immed:
            op.status = rod.COPY_STATUS_IN_PROGRESS_BACKGROUND
            self.executor.submit(named(f"wut-{lun.name}-{list_id}", work))
        else:
            work()

    def _begin(self, lun: RodDisk, list_id: int, layout: Any) -> None:
        """A list identifier still in use by a running operation of the LUN, this
        store's or an EXTENDED COPY's, is OPERATION IN PROGRESS at the CDB's LIST
        IDENTIFIER (SPC-4 5.17.4.2); called with the lock held."""
        held = self._held.get(lun.name)
        old = held.get(list_id) if held is not None else None
        if (old is not None and old.running) or self.busy(lun.name, list_id):
            raise IllegalRequest(Asc.OPERATION_IN_PROGRESS, layout.field("list_identifier").byte,
                                 message=f"list identifier {list_id} in use")

    def running(self, lun_name: str, list_id: int) -> bool:
        """Whether a POPULATE TOKEN or WRITE USING TOKEN the LUN received with
        ``list_id`` is still running."""
        with self._lock:
            held = self._held.get(lun_name)
            op = held.get(list_id) if held is not None else None
            return op is not None and op.running

    def _use(self, lun: RodDisk, rod_type: int, token: bytes, byte: int = _TOKEN_AT) -> _Token:
        """The token's record, if it is one of ours, alive, unwritten, and its source
        may be copied to ``lun``; else the INVALID TOKEN OPERATION that says why."""
        if rod_type != rod.ROD_TYPE_PIT_CHANGE_VULNERABLE:
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE,
                           f"ROD type {rod_type:#010x}", byte)
        if not hmac.compare_digest(self._mac(token), token[_MAC]):
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN,
                           "the token's authentication code does not verify", byte)
        ident = rod.RodToken.parse(token).identifier
        now = self.clock()
        with self._lock:
            tok = self._tokens.get(ident)
            if tok is None:
                raise _invalid(Asc.INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN,
                               f"token {ident:#x} is no longer held", byte)
            if tok.revoked is None and now - tok.last_used > tok.timeout:
                tok.revoked = Asc.INVALID_TOKEN_OPERATION_TOKEN_EXPIRED
            if tok.revoked is not None:
                raise _invalid(tok.revoked, f"token {ident:#x}: {tok.revoked.name}", byte)
            source = tok.source
        if source is not lun and not self.policy(lun, source):
            log.warning("WRITE USING TOKEN at %s with a token of %s, which the copy access "
                        "policy keeps apart from it: refused", lun.name, source.name)
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED,
                           f"{source.name} and {lun.name} may not copy together", byte)
        with self._lock:
            tok.last_used = now
        return tok

    @staticmethod
    def _pieces(lun: RodDisk, tok: _Token, offset: int,
                ranges: Sequence[rod.BlockRange]) -> list[tuple[int | None, int, int]]:
        """(source LBA, destination LBA, blocks) runs of the ROD from OFFSET INTO ROD
        (blocks of ``lun``) onto the ranges; a mismatch refused before any block moves."""
        src = tok.source
        if src.block_size != lun.block_size:
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE,
                           f"{src.name} has {src.block_size}-byte blocks, {lun.name} "
                           f"{lun.block_size}")
        if offset >= tok.blocks:
            raise InvalidFieldInParameterList(
                *rod.WRITE_USING_TOKEN_LAYOUT.pointer("offset_into_rod"),
                f"OFFSET INTO ROD {offset} beyond {tok.blocks}")
        return list(_pieces(tok.ranges, offset, ranges))

    def _write(self, lun: RodDisk, source: RodDisk | None,
               pieces: Sequence[tuple[int | None, int, int]], op: _Operation) -> None:
        """Move the runs a chunk at a time: read from ``source`` (None: the block device
        zero ROD, zeros), write to ``lun``, counting blocks and commands in ``op``."""
        step = max(1, self.chunk // lun.block_size)
        most = max((n for _, _, n in pieces), default=1)
        buf = DataBuffer.allocate(min(step, most) * lun.block_size)
        for s_lba, d_lba, n in pieces:
            done = 0
            while done < n:
                if op.cancel.is_set():
                    raise _Stopped
                k = min(step, n - done)
                if source is not None and s_lba is not None:
                    source.read_blocks(s_lba + done, k, buf)
                    op.operations += 1
                lun.write_blocks(d_lba + done, k, buf)
                op.operations += 1
                done += k
                op.transferred += k

    @staticmethod
    def _check_ranges(lun: RodDisk, ranges: Sequence[rod.BlockRange], header: Layout) -> None:
        """SBC-4 5.9.2/5.46.2: at least one and at most MAXIMUM RANGE DESCRIPTORS
        descriptors, each on the LUN, no more blocks than MAXIMUM TOKEN TRANSFER SIZE;
        ``header`` is the parameter list's table, the descriptors follow it."""
        if not ranges:
            raise ParameterListLengthError(message="no block device range descriptor")
        if len(ranges) > MAX_RANGE_DESCRIPTORS:
            raise InvalidFieldInParameterList(
                *header.pointer("block_device_range_descriptor_length"),
                f"{len(ranges)} range descriptors exceed {MAX_RANGE_DESCRIPTORS}")
        total, desc = 0, rod.BLOCK_RANGE_LAYOUT
        for i, r in enumerate(ranges):
            if r.lba + r.count > lun.blocks:
                raise LbaOutOfRange(r.lba)
            total += r.count
            if total > MAX_TOKEN_TRANSFER_SIZE:
                raise InvalidFieldInParameterList(
                    header.length + desc.length * i + desc.offset("number_of_logical_blocks"),
                    message=f"{total} blocks exceed {MAX_TOKEN_TRANSFER_SIZE}")

    # --- a ROD token named by an EXTENDED COPY (ROD CSCD descriptor, SPC-4 6.4.5.9) -------------
    def rod_source(self, receiving: Any, token: bytes, byte: int,
                   *, del_tkn: bool = False) -> RodSource | ZeroRod:
        """The copy source a ROD CSCD descriptor names with ROD TYPE zero: the ROD the
        token (at parameter list byte ``byte``) represents, read-only. The token is
        checked as WRITE USING TOKEN checks it (ours, alive, unwritten, its source a LUN
        the copy access policy lets ``receiving`` copy from), refusals pointing at it."""
        rod_type, length = rod.token_type(token)
        if length != rod.ROD_TOKEN_LENGTH:
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH,
                           f"ROD TOKEN LENGTH {length:#x}", byte)
        if rod_type == rod.ROD_TYPE_BLOCK_DEVICE_ZERO:
            return ZeroRod(receiving.block_size if hasattr(receiving, "block_size") else 512)
        tok = self._use(receiving, rod_type, token, byte)
        log.info("EXTENDED COPY at %s reads ROD token %#x of %s (%d blocks)", receiving.name,
                 tok.identifier, tok.source.name, tok.blocks)
        return RodSource(self, tok, del_tkn=del_tkn)

    # --- RECEIVE ROD TOKEN INFORMATION, REPORT ALL ROD TOKENS (SPC-4 6.19, 6.20) -------------
    def _hold(self, lun: RodDisk, list_id: int, op: _Operation) -> None:
        """Keep ``op`` for its list identifier; the oldest ended ones make room."""
        table = self._held.setdefault(lun.name, OrderedDict())
        table.pop(list_id, None)
        table[list_id] = op
        for old in [k for k, o in table.items() if not o.running][
                : max(len(table) - HELD_RESULTS, 0)]:
            del table[old]

    def _operation(self, lun: Any, list_id: int) -> _Operation | None:
        with self._lock:
            held = self._held.get(lun.name)
            return held.get(list_id) if held is not None else None

    def token_information(self, lun: RodDisk, list_id: int) -> bytes:
        """RECEIVE ROD TOKEN INFORMATION data for the POPULATE TOKEN or WRITE USING
        TOKEN ``lun`` received with ``list_id``; none held is INVALID FIELD IN CDB at
        the LIST IDENTIFIER (SPC-4 6.26)."""
        op = self._operation(lun, list_id)
        if op is None:
            raise rod.ReceiveRodTokenInformation.invalid(
                "list_identifier", f"no POPULATE TOKEN or WRITE USING TOKEN with list "
                                   f"identifier {list_id}")
        return op.information().encode()

    def copy_status(self, lun: Any, list_id: int) -> CopyStatusLid4 | None:
        """RECEIVE COPY STATUS (LID4) of the POPULATE TOKEN or WRITE USING TOKEN the LUN
        received with ``list_id`` (SPC-4 6.24, TRANSFER COUNT in blocks), or None."""
        op = self._operation(lun, list_id)
        return op.information().copy_status() if op is not None else None

    def abort(self, lun: Any, list_id: int) -> Future[int]:
        """COPY OPERATION ABORT (SPC-4 6.3) of a WRITE USING TOKEN running in the
        background: it stops at its next chunk, and the returned Future completes
        (GOOD) once it has (5.17.4.7 a)). One not being processed is ILLEGAL REQUEST,
        INVALID FIELD IN CDB at the LIST IDENTIFIER (byte 2)."""
        op = self._operation(lun, list_id)
        if op is None or not op.running:
            raise CopyOperationAbort.invalid(
                "list_identifier",
                f"no copy operation with list identifier {list_id} is being processed")
        log.warning("%s: COPY OPERATION ABORT of WRITE USING TOKEN list %d after %d "
                    "blocks", lun.name, list_id, op.transferred)
        op.cancel.set()
        done: Future[int] = Future()
        done.set_running_or_notify_cancel()
        op.stopped.add_done_callback(lambda _: done.set_result(0))
        return done

    def stop(self, lun_name: str | None = None, wait: float = 0.0) -> int:
        """End the running background operations (of ``lun_name``, or all) at their
        next chunk, TERMINATED: the LUN is going away or was reset, or the daemon is
        stopping; ``wait`` seconds at most are given to them to end. The number
        stopped."""
        with self._lock:
            ops = [op for name, table in self._held.items()
                   if lun_name is None or name == lun_name
                   for op in table.values() if op.running]
        for op in ops:
            op.cancel.set()
        deadline = time.monotonic() + wait
        for op in ops:
            if op.immed and wait > 0:
                with contextlib.suppress(TimeoutError):
                    op.stopped.result(timeout=max(deadline - time.monotonic(), 0))
        return len(ops)

    @staticmethod
    def report_all() -> bytes:
        """REPORT ALL ROD TOKENS: no ROD management tokens. Listing the tokens
        themselves would hand every initiator the others' tokens."""
        return rod.report_all_rod_tokens_data()

    def _expire(self, now: float) -> None:
        """Drop tokens unused for their inactivity timeout and :data:`EXPIRED_KEPT` more
        (until then a late use hears TOKEN EXPIRED rather than TOKEN UNKNOWN)."""
        for ident in [i for i, t in self._tokens.items()
                      if now - t.last_used > t.timeout + EXPIRED_KEPT]:
            del self._tokens[ident]

    def forget(self, lun: object, name: str) -> None:
        """The LUN ``name`` goes away: its tokens and held results with it, and its
        background operations stop."""
        self.stop(name, wait=10.0)  # before its store closes
        with self._lock:
            for ident in [i for i, t in self._tokens.items() if t.source is lun]:
                del self._tokens[ident]
            self._held.pop(name, None)


class RodSource:
    """A ROD token's ROD as an EXTENDED COPY's copy source (SPC-4 6.4.5.9, ROD TYPE
    zero): a read-only block device whose block n is block n of the ROD, in the order
    of the token's ranges, with the block size of the LUN the token was made on."""

    peripheral_device_type = 0x00

    def __init__(self, store: RodTokens, tok: _Token, *, del_tkn: bool):
        self._store, self._tok, self._del_tkn = store, tok, del_tkn
        self.name = f"ROD token {tok.identifier:#x} of {tok.source.name}"
        self.block_size = tok.source.block_size
        self.blocks = tok.blocks

    def designators(self) -> Sequence[Any]:
        return ()

    def read_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:
        """Blocks ``lba`` on of the ROD; a token that became invalid meanwhile (its
        source written, SPC-4 5.17.4.3) fails the read with its INVALID TOKEN OPERATION."""
        tok, bs = self._tok, self.block_size
        if lba + count > tok.blocks:
            raise LbaOutOfRange(lba)
        with self._store._lock:
            if tok.revoked is not None:
                raise IllegalRequest(tok.revoked, message=f"{self.name}: {tok.revoked.name}")
            tok.last_used = self._store.clock()
        for s_lba, d_off, n in _pieces(tok.ranges, lba, (rod.BlockRange(0, count),)):
            tok.source.read_blocks(s_lba, n, buf.sub(d_off * bs, n * bs))
        return count * bs

    def write_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:  # noqa: ARG002
        raise IllegalRequest(Asc.INVALID_FIELD_IN_PARAMETER_LIST,
                             message=f"{self.name} is read-only")

    def copy_completed(self) -> None:
        """The EXTENDED COPY completed: DEL_TKN deletes the token (SPC-4 table 145)."""
        if self._del_tkn:
            with self._store._lock:
                self._tok.revoked = Asc.INVALID_TOKEN_OPERATION_TOKEN_DELETED
            log.info("%s deleted (DEL_TKN)", self.name)


class ZeroRod:
    """The block device zero ROD token's ROD as a copy source (SBC-4 4.32): blocks of
    zeros, as many as a segment asks for."""

    peripheral_device_type = 0x00
    name = "the block device zero ROD"
    blocks = 1 << 64

    def __init__(self, block_size: int):
        self.block_size = block_size

    def designators(self) -> Sequence[Any]:
        return ()

    def read_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:  # noqa: ARG002
        buf.zero(0, count * self.block_size)
        return count * self.block_size

    def write_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:  # noqa: ARG002
        raise IllegalRequest(Asc.INVALID_FIELD_IN_PARAMETER_LIST,
                             message=f"{self.name} is read-only")


def _pieces(src: Sequence[rod.BlockRange], offset: int,
            dst: Sequence[rod.BlockRange]) -> list[tuple[int, int, int]]:
    """(source LBA, destination LBA, blocks) runs mapping the ROD, from ``offset``
    blocks in, onto the destination ranges, until either runs out."""
    flat: list[tuple[int, int]] = []
    skip = offset
    for r in src:
        if skip >= r.count:
            skip -= r.count
            continue
        flat.append((r.lba + skip, r.count - skip))
        skip = 0
    out: list[tuple[int, int, int]] = []
    si = 0
    s_lba, s_left = flat[0] if flat else (0, 0)
    for d in dst:
        d_lba, d_left = d.lba, d.count
        while d_left and s_left:
            n = min(d_left, s_left)
            out.append((s_lba, d_lba, n))
            s_lba, s_left, d_lba, d_left = s_lba + n, s_left - n, d_lba + n, d_left - n
            if not s_left:
                si += 1
                if si < len(flat):
                    s_lba, s_left = flat[si]
        if not s_left:
            break
    return out


def _describe(ranges: Sequence[rod.BlockRange]) -> str:
    return ", ".join(f"LBA {r.lba} + {r.count} blocks" for r in ranges) or "no ranges"


def _invalid(asc: Asc, message: str, byte: int = _TOKEN_AT) -> IllegalRequest:
    """ILLEGAL REQUEST, INVALID TOKEN OPERATION (SPC-4 Annex D 23h), pointing at the ROD
    token in the parameter list: byte 16 of WRITE USING TOKEN's, or where an EXTENDED
    COPY's inline data holds it."""
    return IllegalRequest(asc, min(byte, 0xFFFF), in_cdb=False, message=message)
