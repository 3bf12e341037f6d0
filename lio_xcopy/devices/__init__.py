"""SCSI devices: SBC-4 disk, SSC-4 tape, SMC-3 changer, pass-through to real devices.

A device takes a :class:`~lio_xcopy.devices.base.Command` (the CDB and its data buffer)
and returns the Data-In byte count, or raises a
:class:`~lio_xcopy.scsi.errors.CheckCondition`. Devices know nothing of rings.
"""
