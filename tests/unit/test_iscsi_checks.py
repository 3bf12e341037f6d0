"""iSCSI provisioning refuses bad operator input before touching LIO."""

from __future__ import annotations

import pytest

from lio_xcopy.control import iscsi, validators
from lio_xcopy.errors import ConfigError


@pytest.mark.parametrize("name", ["iqn.2026-11.org.example:backup", "IQN.2026-11.org.example:x"])
def test_iqn_accepted_and_lowered(name):
    assert iscsi._iqn(name, "target") == name.lower()


@pytest.mark.parametrize("name", ["iqn.2026-11.test:x", "backup-server", "iqn.2026-13.org.e:x",
                                  "iqn.2026-11.org.example:has space"])
def test_iqn_refused_with_the_form_to_use(name):
    with pytest.raises(ConfigError, match=r"iqn\.YYYY-MM\.reversed\.domain"):
        iscsi._iqn(name, "target")


def test_portal_address():
    assert validators.portal_ip("[::1]") == "::1"
    with pytest.raises(ConfigError, match="not an IP address"):
        validators.portal_ip("target.example.org")


@pytest.mark.parametrize("pair", [("user", ""), ("", "secret"), ("u", "has space"),
                                  ("u", "NULL"), ("u", "x" * 256), "justone"])
def test_chap_refused(pair):
    with pytest.raises(ConfigError, match=r"^CHAP .*must be"):
        iscsi._check_chap(pair, "CHAP")


def test_chap_accepted():
    assert iscsi._check_chap(("backup", "s3cret-pass"), "CHAP") == ("backup", "s3cret-pass")
    assert iscsi._check_chap(None, "CHAP") is None
