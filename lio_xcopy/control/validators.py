"""The rules for an operator's names and values, defined once: the saved file's reader
(:mod:`lio_xcopy.control.config`), the shell (:mod:`lio_xcopy.control.shell.values`) and
the iSCSI exports (:mod:`lio_xcopy.control.iscsi`) check with these, so whatever the
shell creates, ``saveconfig`` saves and ``restoreconfig`` restores.
"""

from __future__ import annotations

import ipaddress
import re

from lio_xcopy.errors import ConfigError

#: a backstore's or copy group's name
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: a unit serial (LIO's wwn of a storage object)
UUID = re.compile(r"[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
#: iSCSI names as rtslib accepts them (utils.normalize_wwn), in their lower-case form
#: (RFC 7143 4.2.7.1 iqn., eui. and naa. formats)
IQN = re.compile(r"iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[^\s_]*\.[^\s_]*")
EUI = re.compile(r"eui\.[0-9a-f]{16}")
NAA = re.compile(r"naa\.[125c-f][0-9a-f]{15}")
#: a pass-through device's designator (SPC-4 7.8.6: NAA or EUI-64), lower case
DESIGNATOR = re.compile(r"(naa|eui)\.([0-9a-f]{16}|[0-9a-f]{32})")
#: a TPG attribute's name
ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]*")
#: characters a storage object's config string cannot carry to the kernel
#: (:meth:`lio_xcopy.handler_config.HandlerConfig.format` refuses them in a path)
KERNEL_UNSAFE = ",:;\n\0"
#: LIO keeps CHAP user names and secrets in 255-byte buffers
CHAP_MAX = 255


def is_iscsi_name(name: str, *, initiator: bool = False) -> bool:
    """An iqn. name (lower case); an initiator's may also be an eui. or naa. name."""
    return bool(IQN.fullmatch(name)
                or (initiator and (EUI.fullmatch(name) or NAA.fullmatch(name))))


def is_chap_text(text: str) -> bool:
    """A CHAP user name or secret LIO can hold: 1 to :data:`CHAP_MAX` printable
    characters without spaces (RFC 7143 12.1.3)."""
    return 0 < len(text) <= CHAP_MAX and not any(
        c.isspace() or not c.isprintable() for c in text)


def portal_ip(ip: str) -> str:
    """An IPv4 or IPv6 address (brackets allowed) in its canonical text form."""
    try:
        return str(ipaddress.ip_address(ip.strip("[]")))
    except ValueError as e:
        raise ConfigError(f"portal address {ip!r} is not an IP address: give the "
                          "target host's IPv4 or IPv6 address (0.0.0.0 for all)") from e
