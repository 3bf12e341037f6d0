"""The Vagrant lab: ``vagrant validate`` accepts the Vagrantfile, and what it runs exists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VAGRANTFILE = REPO / "Vagrantfile"


def _vagrant_env(tmp_path: Path, cwd: Path = REPO, **extra: str) -> dict[str, str]:
    """Validate the file in ``cwd`` in place; Vagrant's state goes to tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAGRANT_")}
    env.update(VAGRANT_CWD=str(cwd), VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"),
               VAGRANT_HOME=str(tmp_path / "home"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_NO_COLOR="1", HOME=str(tmp_path), **extra)
    return env


def _has_libvirt_plugin() -> bool:
    return any(Path("/usr/share/rubygems-integration/all/specifications").glob(
        "vagrant-libvirt-*.gemspec"))


@pytest.mark.skipif(shutil.which("vagrant") is None,
                    reason="vagrant is not installed (scripts/setup-host installs it)")
def test_vagrant_validate(tmp_path):
    """With the vagrant-libvirt plugin the libvirt provider's settings are checked too;
    without it (or VirtualBox), only the provider-independent configuration."""
    if _has_libvirt_plugin():
        cmd, env = ["vagrant", "validate"], _vagrant_env(tmp_path,
                                                         VAGRANT_DEFAULT_PROVIDER="libvirt")
    else:
        cmd, env = ["vagrant", "validate", "--ignore-provider"], _vagrant_env(tmp_path)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "validated successfully" in p.stdout


@pytest.mark.skipif(shutil.which("vagrant") is None,
                    reason="vagrant is not installed (scripts/setup-host installs it)")
def test_vagrant_validate_refuses_a_misspelt_setting(tmp_path):
    """The check above can fail: a wrong provisioner option is reported."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Vagrantfile").write_text(VAGRANTFILE.read_text().replace("env: LAB_ENV",
                                                                     "envv: LAB_ENV", 1))
    env = _vagrant_env(tmp_path, bad)
    p = subprocess.run(["vagrant", "validate", "--ignore-provider"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode != 0
    assert "envv" in p.stdout + p.stderr


def test_vms_are_provisioned_by_the_scripts_the_vm_tests_run():
    text = VAGRANTFILE.read_text()
    run = re.findall(r"#\{SRC\}/(scripts/[\w.-]+)", text)
    assert sorted(set(run)) == ["scripts/lab-initiator", "scripts/lab-target"]
    vm_test = (REPO / "tests" / "vm" / "test_lab.py").read_text()
    for s in run:
        assert os.access(REPO / s, os.X_OK), s
        assert f'REPO / "scripts" / "{Path(s).name}"' in vm_test, s
    # the VM harness and the lab's target prepare LIO with one script
    assert "scripts/target-modules" in (REPO / "scripts" / "_guest-init").read_text()
    assert "scripts/target-modules\" --iscsi" in (REPO / "scripts" / "lab-target").read_text()


def test_addresses_and_box():
    text = VAGRANTFILE.read_text()
    assert 'config.vm.box = "debian/bookworm64"' in text
    assert re.search(r'TARGET_IP = "192\.168\.56\.10"', text)
    assert re.search(r'INITIATOR_IP = "192\.168\.56\.20"', text)
    assert "lab-initiator #{TARGET_IP}" in text
    assert "--portal #{TARGET_IP}" in text
    for provider in ("libvirt", "virtualbox"):
        assert f"config.vm.provider :{provider}" in text


@pytest.mark.parametrize("name", ["lab-target", "lab-initiator", "target-modules"])
def test_scripts_parse_and_print_usage(name):
    path = REPO / "scripts" / name
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    p = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True)
    if name == "target-modules":  # no --help: it refuses unknown options with its usage
        assert p.returncode == 2 and "usage:" in p.stderr
    else:
        assert p.returncode == 0 and "usage" not in p.stderr
        assert p.stdout.startswith("The Vagrant lab's")


def test_lab_secrets_agree_and_differ():
    """Both sides source one file; one-way and mutual CHAP secrets must differ (RFC 7143)."""
    env = subprocess.run(["bash", "-c", f". {REPO}/scripts/lab.env; env"], capture_output=True,
                         text=True, env={"PATH": os.environ["PATH"]}).stdout
    values = dict(line.split("=", 1) for line in env.splitlines() if line.startswith("LAB_"))
    assert values["LAB_CHAP_SECRET"] != values["LAB_MUTUAL_SECRET"]
    assert values["LAB_TARGET_IQN"].startswith("iqn.")
    for s in ("lab-target", "lab-initiator"):
        assert 'scripts/lab.env"' in (REPO / "scripts" / s).read_text()
