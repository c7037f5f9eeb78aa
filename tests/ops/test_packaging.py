"""Packaging: three packages in one uv workspace, each plugin installable on its own.

The plugins pin groups-mapping and take it from the workspace member beside them
([tool.uv.sources] … {workspace = true}, as meltano/sdk's repository declares its packages;
docs/reference/singer-sdk-meltano.md §1.1), never from an index by name. The wheels are built and
installed, each alone, into a fresh virtual environment with uv (from PyPI, as `make install`
installs it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from emulators.pipeline import PROJECT_ROOT

UV = str(Path(sys.executable).with_name("uv"))
PLUGINS = {
    "tap-salesforce-groups": "tap_salesforce_groups",
    "target-amplitude-groups": "target_amplitude_groups",
}


def pyproject(folder: str) -> dict:
    return tomllib.loads((PROJECT_ROOT / folder / "pyproject.toml").read_text(encoding="utf-8"))


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_one_workspace_and_pinned_workspace_sources():
    root = pyproject(".")
    assert root["tool"]["uv"]["workspace"]["members"] == ["groups-mapping", *PLUGINS]
    version = pyproject("groups-mapping")["project"]["version"]
    for plugin in PLUGINS:
        project = pyproject(plugin)
        assert f"groups-mapping=={version}" in project["project"]["dependencies"]
        assert project["tool"]["uv"]["sources"] == {"groups-mapping": {"workspace": True}}


def test_uv_lock_agrees_with_the_constraints():
    """One set of versions: uv.lock (the workspace) pins what requirements/constraints.txt pins."""
    pins = {}
    for line in (PROJECT_ROOT / "requirements" / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line):
            pins[canonical(match.group(1))] = match.group(2)
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text(encoding="utf-8"))
    members = {"groups-mapping", *PLUGINS, canonical(pyproject(".")["project"]["name"])}
    locked = {p["name"]: p.get("version") for p in lock["package"] if p["name"] not in members}
    assert {
        name: (version, pins.get(name)) for name, version in locked.items() if pins.get(name) != version
    } == {}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for package in ("groups-mapping", *PLUGINS):
        subprocess.run(
            [UV, "build", "--quiet", "--package", package, "--wheel", "--out-dir", str(out)],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
        )
    return out


def fresh_venv(path: Path) -> Path:
    subprocess.run(
        [UV, "venv", "--quiet", "--python", sys.executable, str(path)], check=True, capture_output=True
    )
    return path / "bin"


def install(bin_dir: Path, *targets: Path) -> None:
    """``uv pip install`` ``targets`` into the virtual environment of ``bin_dir``, with the constraints."""
    constraints = PROJECT_ROOT / "requirements" / "constraints.txt"
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(bin_dir / "python"),
            "--constraint",
            str(constraints),
        ]
        + [str(target) for target in targets],
        check=True,
        capture_output=True,
    )


def python_in(bin_dir: Path, code: str) -> str:
    """What ``code`` prints, run by the Python of ``bin_dir``."""
    return subprocess.run(
        [str(bin_dir / "python"), "-c", code], check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_plugin_wheel_installs_alone(wheels, tmp_path, plugin):
    wheel = next(wheels.glob(f"{PLUGINS[plugin]}-*.whl"))
    metadata = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], check=True, capture_output=True, text=True
    ).stdout
    assert "groups_mapping/" not in metadata  # a dependency, not a copy
    bin_dir = fresh_venv(tmp_path / "venv")
    install(bin_dir, wheel, next(wheels.glob("groups_mapping-*.whl")))
    about = subprocess.run(
        [str(bin_dir / plugin), "--about", "--format", "json"], check=True, capture_output=True, text=True
    )
    assert json.loads(about.stdout)["name"] == plugin
    requires = python_in(bin_dir, f"import importlib.metadata as m; print(m.requires({plugin!r}))")
    assert "'groups-mapping==0.1.0'" in requires


def test_a_plugin_installs_from_its_folder_with_groups_mapping_from_the_workspace(tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv")
    install(bin_dir, PROJECT_ROOT / "target-amplitude-groups")
    where = python_in(bin_dir, "import groups_mapping; print(groups_mapping.__file__)")
    # The workspace member beside it (uv installs workspace members editable), not an index's.
    assert where.strip() == str(PROJECT_ROOT / "groups-mapping" / "groups_mapping" / "__init__.py")
