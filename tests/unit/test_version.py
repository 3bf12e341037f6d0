"""The version has one source, ``lio_xcopy.__version__``: the package metadata, the
command and the man pages all say the same."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools.config.pyprojecttoml import read_configuration

from lio_xcopy import __version__

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.filterwarnings("ignore::UserWarning")  # setuptools: [tool.setuptools] is "beta"
def test_package_metadata_takes_the_version_from_the_package() -> None:
    raw = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in raw and "version" in raw["dynamic"]
    assert read_configuration(REPO / "pyproject.toml")["project"]["version"] == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_the_command_prints_it_from_the_source_tree() -> None:
    out = subprocess.run([sys.executable, "-m", "lio_xcopy", "--version"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert out == f"{__version__}\n"


def test_man_pages_carry_it() -> None:
    for page in ("lio-xcopy.8", "lio-xcopy.json.5"):
        th = (REPO / "man" / page).read_text().splitlines()[0]
        assert f'"lio\\-xcopy {__version__}"' in th, (page, th)
