"""The Python floor is the one the suite runs on (what CI runs).

README, the Makefile's check and every package's requires-python say the same version.

3.11, not 3.10: Python 3.10's ``csv`` refuses a NUL byte ("line contains NUL"), and Salesforce
text may hold one (airbytehq/airbyte#8300); from 3.11 the Bulk CSV reader takes it as data.
"""

from __future__ import annotations

import re
import sys

import tomllib

from emulators.pipeline import PROJECT_ROOT

PACKAGES = ("pyproject.toml", "tap-salesforce-groups", "target-amplitude-groups", "groups-mapping")


def test_every_floor_is_the_python_ci_runs():
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    readme = re.search(r"with Python (\d+\.\d+)\+", (PROJECT_ROOT / "README.md").read_text())
    assert readme is not None and readme.group(1) == running
    make = re.search(r"sys\.version_info >= \((\d+), (\d+)\)", (PROJECT_ROOT / "Makefile").read_text())
    assert make is not None and f"{make.group(1)}.{make.group(2)}" == running
    for package in PACKAGES:
        path = (
            PROJECT_ROOT / package if package.endswith(".toml") else PROJECT_ROOT / package / "pyproject.toml"
        )
        floor = tomllib.loads(path.read_text())["project"]["requires-python"]
        assert floor == f">={running}", path
