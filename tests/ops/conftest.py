"""A fresh-clone-like copy of the project, sharing the installed .venv and plugin venvs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from emulators.pipeline import PROJECT_ROOT, meltano


def clone_like(dest: Path) -> Path:
    """Copy what git would check out (plus uncommitted files), then link the installed venvs.

    Installing from scratch takes minutes, so `.venv` and the plugin venvs under `.meltano/`
    are symlinks to the checkout's (the plugins are editable installs of this same source).
    """
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    for kind in ("extractors", "loaders"):
        (dest / ".meltano" / kind).mkdir(parents=True)
        for plugin in (PROJECT_ROOT / ".meltano" / kind).iterdir():
            (dest / ".meltano" / kind / plugin.name).symlink_to(plugin)
    return dest


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The checkout's .venv and plugins are installed and current (quick when they already are).

    `make install` first: a copy's `make install` (the README runs it) must find the shared
    .venv current, or it would reinstall the editable packages from the copy, which is deleted.
    """
    subprocess.run(["make", "install"], cwd=PROJECT_ROOT, check=True, capture_output=True)
    db = tmp_path_factory.mktemp("install") / "meltano.db"
    meltano("install", env={"MELTANO_DATABASE_URI": f"sqlite:///{db}"})


@pytest.fixture
def project_copy(installed: None, tmp_path: Path) -> Path:
    return clone_like(tmp_path / "project")
