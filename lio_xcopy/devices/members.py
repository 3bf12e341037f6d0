"""Copy group members that name foreign devices: ``foreign:`` and a designator's text
form (:func:`lio_xcopy.scsi.spc.designator_text`, e.g. ``foreign:naa.6001405...``).

A copy group lists the LUNs it joins by name; a foreign device (one this daemon does not
serve) joins by the designator of its Device Identification VPD page (SPC-4 7.8.6),
never by its ``/dev/sgN``, which may name another device after a reboot.
"""

from __future__ import annotations

import re

from lio_xcopy.errors import ConfigError

FOREIGN = "foreign:"
_TEXT = re.compile(r"(naa|eui|t10|name)\.((?:[0-9a-f]{2}){1,255})")
_PREFIX = re.compile(r"(naa|eui|t10|name)\.")


def check_designator_text(text: str) -> str:
    """``text`` as a designator's text form in lower case; ConfigError when it is not
    one (``naa.<hex>``, ``eui.<hex>``, ``t10.<hex>`` or ``name.<hex>``)."""
    t = text.strip().lower()
    if not _TEXT.fullmatch(t):
        raise ConfigError(f"{text!r} is not a designator: use naa.<hex>, eui.<hex>, "
                          "t10.<hex> or name.<hex> (`sg_vpd -p di /dev/sgN` lists a device's), "
                          "or a /dev/disk/by-id or /dev/tape/by-id path")
    return t


def is_designator_text(text: str) -> bool:
    """Whether ``text`` is meant as a designator: it starts with a type's prefix."""
    return bool(_PREFIX.match(text.strip().lower()))


def foreign_member(designator_text: str) -> str:
    """The copy group member admitting the device with this designator."""
    return FOREIGN + check_designator_text(designator_text)


def foreign_designator(member: str) -> str | None:
    """The designator text a member admits, None for a LUN name; ConfigError when a
    ``foreign:`` member holds no designator."""
    if not member.startswith(FOREIGN):
        return None
    return check_designator_text(member[len(FOREIGN):])
