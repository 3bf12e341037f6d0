"""SCSI devices over backing stores: SBC disk, SSC tape (and later SMC changer).

A device takes a :class:`~lio_xcopy.devices.base.Command` (the CDB and its data buffer)
and returns the Data-In byte count, or raises a
:class:`~lio_xcopy.scsi.errors.CheckCondition`. Devices know nothing of rings.
"""
