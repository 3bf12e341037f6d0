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

Both commands complete before they return (IMMED is honoured trivially); RECEIVE ROD
TOKEN INFORMATION then reports each by its list identifier, with the token after
POPULATE TOKEN.
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from typing import Any, Protocol

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
from lio_xcopy.scsi.sense import Asc
from lio_xcopy.scsi.xcopy import IdentificationCscd

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
_MAC = slice(480, 512)
_NONCE = slice(96, 128)


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
class _Held:
    """The result RECEIVE ROD TOKEN INFORMATION reports for a list identifier."""

    info: rod.RodTokenInformation
    tokens: list[int] = field(default_factory=list)


class RodTokens:
    """The daemon's ROD token store and the copies made with its tokens."""

    def __init__(self, policy: Callable[[Any, Any], bool], *,
                 clock: Callable[[], float] = time.monotonic, key: bytes | None = None,
                 chunk: int = CHUNK):
        self.policy = policy  # may a copy received by the first LUN name the second?
        self.clock = clock
        self.chunk = chunk
        self._key = key or os.urandom(32)
        self._ids = itertools.count(int.from_bytes(os.urandom(4), "big") << 16)
        self._tokens: dict[int, _Token] = {}
        self._held: dict[str, OrderedDict[int, rod.RodTokenInformation]] = {}
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
            raise InvalidFieldInParameterList(8, message=f"ROD type {plist.rod_type:#010x}")
        timeout = plist.inactivity_timeout or DEFAULT_INACTIVITY_TIMEOUT
        if timeout > MAX_INACTIVITY_TIMEOUT:
            raise InvalidFieldInParameterList(
                4, message=f"inactivity timeout {timeout} s exceeds {MAX_INACTIVITY_TIMEOUT}")
        self._check_ranges(lun, plist.ranges, rod.POPULATE_TOKEN_HEADER)
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
            body[_NONCE] = os.urandom(32)
            body[_MAC] = self._mac(bytes(body))
            self._tokens[ident] = _Token(ident, lun, plist.ranges, timeout, now)
            lun.write_watch = functools.partial(self._watch, lun)
            self._hold(lun, list_id, rod.RodTokenInformation(
                rod.PopulateToken.SERVICE_ACTION, rod.COPY_STATUS_COMPLETED, blocks,
                token=bytes(body)))
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
        which TRANSFER COUNT shows."""
        plist = rod.WriteUsingTokenList.parse(data)
        log.debug("%s: WRITE USING TOKEN list %d: %s from ROD block %d", lun.name, list_id,
                  _describe(plist.ranges), plist.offset_into_rod)
        self._check_ranges(lun, plist.ranges, rod.WRITE_USING_TOKEN_HEADER)
        rod_type, length = rod.token_type(plist.token)
        if length != rod.ROD_TOKEN_LENGTH:
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH,
                           f"ROD TOKEN LENGTH {length:#x}")
        written = 0
        try:
            if rod_type == rod.ROD_TYPE_BLOCK_DEVICE_ZERO:
                written = self._zero(lun, plist)
            else:
                tok = self._use(lun, rod_type, plist.token)
                written = self._copy(lun, tok, plist)
                if plist.del_tkn:
                    with self._lock:
                        tok.revoked = Asc.INVALID_TOKEN_OPERATION_TOKEN_DELETED
        except CheckCondition as e:
            with self._lock:
                self._hold(lun, list_id, rod.RodTokenInformation(
                    rod.WriteUsingToken.SERVICE_ACTION, rod.COPY_STATUS_COMPLETED_WITH_ERRORS,
                    written, sense=e.sense.fixed()))
            raise
        with self._lock:
            self._hold(lun, list_id, rod.RodTokenInformation(
                rod.WriteUsingToken.SERVICE_ACTION, rod.COPY_STATUS_COMPLETED, written))

    def _use(self, lun: RodDisk, rod_type: int, token: bytes) -> _Token:
        """The token's record, if it is one of ours, alive, unwritten, and its source
        may be copied to ``lun``; else the INVALID TOKEN OPERATION that says why."""
        if rod_type != rod.ROD_TYPE_PIT_CHANGE_VULNERABLE:
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE,
                           f"ROD type {rod_type:#010x}")
        if not hmac.compare_digest(self._mac(token), token[_MAC]):
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN,
                           "the token's authentication code does not verify")
        ident = rod.RodToken.parse(token).identifier
        now = self.clock()
        with self._lock:
            tok = self._tokens.get(ident)
            if tok is None:
                raise _invalid(Asc.INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN,
                               f"token {ident:#x} is no longer held")
            if tok.revoked is None and now - tok.last_used > tok.timeout:
                tok.revoked = Asc.INVALID_TOKEN_OPERATION_TOKEN_EXPIRED
            if tok.revoked is not None:
                raise _invalid(tok.revoked, f"token {ident:#x}: {tok.revoked.name}")
            source = tok.source
        if source is not lun and not self.policy(lun, source):
            log.warning("WRITE USING TOKEN at %s with a token of %s, which the copy access "
                        "policy keeps apart from it: refused", lun.name, source.name)
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED,
                           f"{source.name} and {lun.name} may not copy together")
        with self._lock:
            tok.last_used = now
        return tok

    def _copy(self, lun: RodDisk, tok: _Token, plist: rod.WriteUsingTokenList) -> int:
        """Copy the ROD from OFFSET INTO ROD (blocks of ``lun``) into the ranges; the
        blocks written."""
        src = tok.source
        if src.block_size != lun.block_size:
            raise _invalid(Asc.INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE,
                           f"{src.name} has {src.block_size}-byte blocks, {lun.name} "
                           f"{lun.block_size}")
        if plist.offset_into_rod >= tok.blocks:
            raise InvalidFieldInParameterList(
                8, message=f"OFFSET INTO ROD {plist.offset_into_rod} beyond {tok.blocks}")
        pieces = _pieces(tok.ranges, plist.offset_into_rod, plist.ranges)
        step = max(1, self.chunk // lun.block_size)
        buf = DataBuffer.allocate(min(step, max((n for _, _, n in pieces), default=1))
                                  * lun.block_size)
        written = 0
        for s_lba, d_lba, n in pieces:
            done = 0
            while done < n:
                k = min(step, n - done)
                src.read_blocks(s_lba + done, k, buf)
                lun.write_blocks(d_lba + done, k, buf)
                done += k
                written += k
        return written

    def _zero(self, lun: RodDisk, plist: rod.WriteUsingTokenList) -> int:
        """The block device zero ROD token: zeros to every range (SBC-4 4.32)."""
        total = sum(r.count for r in plist.ranges)
        step = max(1, self.chunk // lun.block_size)
        buf = DataBuffer.allocate(min(step, total or 1) * lun.block_size)
        written = 0
        for r in plist.ranges:
            done = 0
            while done < r.count:
                k = min(step, r.count - done)
                lun.write_blocks(r.lba + done, k, buf)
                done += k
                written += k
        return written

    @staticmethod
    def _check_ranges(lun: RodDisk, ranges: Sequence[rod.BlockRange], start: int) -> None:
        """SBC-4 5.9.2/5.46.2: at least one and at most MAXIMUM RANGE DESCRIPTORS
        descriptors, each on the LUN, no more blocks than MAXIMUM TOKEN TRANSFER SIZE."""
        if not ranges:
            raise ParameterListLengthError(message="no block device range descriptor")
        if len(ranges) > MAX_RANGE_DESCRIPTORS:
            raise InvalidFieldInParameterList(
                start - 2, message=f"{len(ranges)} range descriptors exceed "
                                   f"{MAX_RANGE_DESCRIPTORS}")
        total = 0
        for i, r in enumerate(ranges):
            if r.lba + r.count > lun.blocks:
                raise LbaOutOfRange(r.lba)
            total += r.count
            if total > MAX_TOKEN_TRANSFER_SIZE:
                raise InvalidFieldInParameterList(
                    start + 16 * i + 8,
                    message=f"{total} blocks exceed {MAX_TOKEN_TRANSFER_SIZE}")

    # --- RECEIVE ROD TOKEN INFORMATION, REPORT ALL ROD TOKENS (SPC-4 6.19, 6.20) -------------
    def _hold(self, lun: RodDisk, list_id: int, info: rod.RodTokenInformation) -> None:
        table = self._held.setdefault(lun.name, OrderedDict())
        table.pop(list_id, None)
        table[list_id] = info
        while len(table) > HELD_RESULTS:
            table.popitem(last=False)

    def token_information(self, lun: RodDisk, list_id: int) -> bytes:
        """RECEIVE ROD TOKEN INFORMATION data for the POPULATE TOKEN or WRITE USING
        TOKEN ``lun`` received with ``list_id``; none held is INVALID FIELD IN CDB at
        the LIST IDENTIFIER (as FreeBSD CTL)."""
        with self._lock:
            held = self._held.get(lun.name)
            info = held.get(list_id) if held is not None else None
        if info is None:
            raise rod.ReceiveRodTokenInformation.invalid(
                "list_identifier", f"no POPULATE TOKEN or WRITE USING TOKEN with list "
                                   f"identifier {list_id}")
        return info.encode()

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
        """The LUN ``name`` goes away: its tokens and held results with it."""
        with self._lock:
            for ident in [i for i, t in self._tokens.items() if t.source is lun]:
                del self._tokens[ident]
            self._held.pop(name, None)


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


def _invalid(asc: Asc, message: str) -> IllegalRequest:
    """ILLEGAL REQUEST, INVALID TOKEN OPERATION (SPC-4 Annex D 23h), pointing at the ROD
    TOKEN field of the WRITE USING TOKEN parameter list (byte 16)."""
    return IllegalRequest(asc, 16, in_cdb=False, message=message)
