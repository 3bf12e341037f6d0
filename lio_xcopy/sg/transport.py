"""An initiator's path to one logical unit, as the initiator tools see it.

:class:`ScsiTransport` is the narrow seam (SAM-5 5.1, the Execute Command procedure):
:meth:`~ScsiTransport.execute` sends one CDB with a Data-Out buffer or a Data-In
length and a timeout, and returns a :class:`Result` (status, sense, data, residual),
or raises a :class:`SgIoError`. The SPC commands every tool sends (TEST UNIT READY,
INQUIRY, VPD pages, READ CAPACITY (16)) are built on it here, once. The SG_IO device
(:class:`lio_xcopy.sg.sgio.SgIoDevice`) implements it; so do the tests' scripted fakes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import sbc, spc
from lio_xcopy.scsi.explain import command_name, explain_status
from lio_xcopy.scsi.sense import (
    CHECK_CONDITION,
    SUCCESS_STATUSES,
    SenseData,
    SenseKey,
    status_name,
)
from lio_xcopy.scsi.spc import Designator
from lio_xcopy.sg._sg_h import transport_failed


# --- errors --------------------------------------------------------------------------------
class SgIoError(LioXcopyError):
    """Root of the errors of an initiator's path to a device; :attr:`path` names it."""

    def __init__(self, message: str, path: str = ""):
        self.path = path
        super().__init__(message)


class NotScsiDevice(SgIoError):
    """The path is not a SCSI device node (a regular file, another driver's device)."""


class DeviceUnavailable(SgIoError):
    """The node exists but cannot be opened or used now (busy, gone, no permission)."""

    def __init__(self, message: str, path: str = "", errno_: int | None = None):
        self.errno = errno_
        super().__init__(message, path)


class SgIoUsageError(SgIoError, ValueError):
    """The caller asked for something SG_IO cannot do (bad CDB length, both directions)."""


class TransportFailure(SgIoError):
    """The command did not complete at the SCSI level: the host adapter or the kernel
    reported an error (timeout, reset, device gone) or the ioctl itself failed, so
    there is no SCSI status to trust. :attr:`result` is None when the ioctl failed."""

    def __init__(self, message: str, path: str = "", result: Result | None = None,
                 errno_: int | None = None):
        self.result = result
        self.errno = errno_
        super().__init__(message, path)


class ScsiCommandError(SgIoError):
    """The device completed the command with a status other than GOOD — normally CHECK
    CONDITION, with :attr:`sense` decoded. The message says what it means in words."""

    def __init__(self, message: str, path: str, result: Result):
        self.result = result
        super().__init__(message, path)

    @property
    def status(self) -> int:
        return self.result.status

    @property
    def sense(self) -> SenseData | None:
        return self.result.sense

    @property
    def key(self) -> SenseKey | None:
        return self.result.sense.key if self.result.sense else None

    @property
    def asc(self) -> int | None:
        """ASC << 8 | ASCQ, as :class:`~lio_xcopy.scsi.sense.Asc` values are."""
        return self.result.sense.asc if self.result.sense else None



# --- results --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Result:
    """What one command returned.

    ``data`` is the Data-In buffer trimmed by ``resid`` (empty for Data-Out and no-data
    commands); ``duration`` is in seconds as the kernel measured it (ms resolution);
    ``host_status``/``driver_status`` are the Linux host and driver bytes."""

    cdb: bytes
    status: int
    sense: SenseData | None
    data: bytes
    resid: int
    duration: float
    host_status: int = 0
    driver_status: int = 0
    requested: int = 0
    sense_bytes: bytes = b""
    info: int = 0

    @property
    def transferred(self) -> int:
        """Bytes that actually moved (dxfer_len minus resid)."""
        return self.requested - self.resid

    @property
    def good(self) -> bool:
        return self.status in SUCCESS_STATUSES and not self.transport_failed

    @property
    def transport_failed(self) -> bool:
        return transport_failed(self.host_status, self.driver_status)

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    def explain(self) -> str:
        """The SCSI outcome in words (status, then the sense explained)."""
        return explain_status(self.status, self.sense, self.sense_bytes)


def checked(result: Result, path: str) -> Result:
    """``result`` when it reports success, else :class:`ScsiCommandError` in words. A
    CHECK CONDITION with RECOVERED ERROR is a success (SPC-4 4.5.6: the command
    completed); its sense stays in the Result."""
    if result.good or (result.status == CHECK_CONDITION and result.sense is not None
                       and result.sense.key == SenseKey.RECOVERED_ERROR):
        return result
    raise ScsiCommandError(f"{command_name(result.cdb)} on {path} failed: {result.explain()} "
                           f"[CDB {result.cdb.hex(' ')}]", path, result)


# --- the protocol -----------------------------------------------------------------------------
class ScsiTransport(abc.ABC):
    """One logical unit as an application client reaches it: :meth:`execute` runs a
    command; the standard commands below are built on it.

    :attr:`path` names the device in messages; :attr:`bytes_in`, :attr:`bytes_out` and
    :attr:`commands` count what :meth:`execute` moved."""

    path: str
    bytes_in: int
    bytes_out: int
    commands: int

    @abc.abstractmethod
    def execute(self, cdb: bytes | bytearray | memoryview, data_in: int = 0,
                data_out: bytes | bytearray | memoryview | None = None,
                timeout: float = 60, *, check: bool = True) -> Result:
        """Send ``cdb``; receive up to ``data_in`` bytes or send ``data_out`` (one
        direction per command); ``timeout`` in seconds.

        Raises :class:`TransportFailure` when the command did not complete (no SCSI
        status to trust), and, when ``check``, a :class:`ScsiCommandError` for any
        status but GOOD / CONDITION MET (a CHECK CONDITION with RECOVERED ERROR counts
        as success: :func:`checked`). With ``check=False`` the Result comes back
        whatever the status."""

    def close(self) -> None:  # noqa: B027 (a transport without resources has nothing to close)
        """Release the path to the device."""

    def __enter__(self) -> ScsiTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- convenience ---
    def test_unit_ready(self, timeout: float = 30) -> None:
        """TEST UNIT READY; raises :class:`ScsiCommandError` (NOT READY, UNIT ATTENTION)."""
        self.execute(spc.TestUnitReady().encode(), timeout=timeout)

    def take_unit_attentions(self, limit: int = 5) -> list[SenseData]:
        """TEST UNIT READY until it reports no UNIT ATTENTION (SPC-4 5.9: LUNs added,
        power on, a new cartridge), at most ``limit`` times; the unit attentions taken.
        Other errors (NOT READY) are left for the next command to meet."""
        seen: list[SenseData] = []
        for _ in range(limit):
            try:
                self.test_unit_ready()
            except ScsiCommandError as e:
                if e.key != SenseKey.UNIT_ATTENTION or e.sense is None:
                    break
                seen.append(e.sense)
                continue
            break
        return seen

    def inquiry(self) -> spc.StandardInquiry:
        """Standard INQUIRY data."""
        data = self.execute(spc.Inquiry(allocation_length=0xFF).encode(), data_in=0xFF).data
        if len(data) >= 5:
            data = data[: 5 + data[4]]
        try:
            return spc.StandardInquiry.parse(data)
        except spc.InquiryFormatError as e:
            raise SgIoError(str(e)) from None

    def peripheral_device_type(self) -> int:
        """0 disk, 1 tape, 8 medium changer, ... (SPC-4 Table 142)."""
        return self.inquiry().device_type

    def vpd(self, page: int) -> bytes:
        """A VPD page with its 4-byte header (SPC-4 7.8); re-read when longer than 255."""
        if not 0 <= page <= 0xFF:
            raise SgIoUsageError(f"VPD page {page:#x}: page codes are 00h-FFh", self.path)
        alloc = 0xFF
        while True:
            data = self.execute(spc.Inquiry(evpd=1, page_code=page,
                                            allocation_length=alloc).encode(),
                                data_in=alloc).data
            if len(data) < 4 or data[1] != page:
                raise SgIoError(f"{self.path} returned {len(data)} bytes for VPD page "
                                f"{page:02X}h, not that page (does it ignore EVPD?)", self.path)
            full = 4 + int.from_bytes(data[2:4], "big")
            if full <= alloc or alloc == 0xFFFF:
                return data[:full]
            alloc = min(full, 0xFFFF)

    def unit_serial_number(self) -> str:
        """Unit Serial Number VPD page (80h)."""
        return spc.parse_vpd_unit_serial(self.vpd(0x80))

    def device_identification(self) -> list[Designator]:
        """Every designator of the Device Identification VPD page (83h)."""
        return Designator.parse_all(self.vpd(0x83))

    def naa(self) -> bytes | None:
        """The NAA designator of the logical unit (association 0), or None."""
        for d in self.device_identification():
            if d.designator_type == 3 and d.association == 0:
                return d.value
        return None

    def read_capacity16(self) -> sbc.Capacity16:
        """READ CAPACITY (16) (SBC-4 5.18), for disks."""
        cdb = sbc.ReadCapacity16(allocation_length=sbc.READ_CAPACITY_16_LENGTH).encode()
        data = self.execute(cdb, data_in=sbc.READ_CAPACITY_16_LENGTH).data
        try:
            return sbc.Capacity16.parse(data)
        except sbc.CapacityFormatError as e:
            raise SgIoError(str(e)) from None

