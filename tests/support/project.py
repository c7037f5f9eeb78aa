"""The checkout's Meltano project in tests: its plugins installed once, a `.meltano` of a process's own.

Tests run in parallel (pytest-xdist, docs/development.md), and every `meltano` they start in the
checkout shares its `.meltano/`. Two things there cannot be shared at once:

- installing the plugins: two `meltano install` of a fresh checkout at the same time would pip
  into the same virtual environments, so :func:`install_plugins` takes a lock first;
- `.meltano/run/<plugin>/`: Meltano 4.4 writes each run's config, catalog and state files of a
  plugin there, one folder for every run of that plugin in the project, and a second run at
  once reads the first one's catalog (meltano/meltano#8763). :func:`own_meltano_dir` gives a
  caller a `.meltano` of its own (``MELTANO_SYS_DIR_ROOT``), whose plugin folders link to the
  checkout's installed ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators, meltano

STATE_ID = "demo:tap-salesforce-groups-to-target-amplitude-groups"  # `meltano run` in the demo environment
SYS_DIR_ENV = "MELTANO_SYS_DIR_ROOT"
# What `meltano install` puts under .meltano/: shared by every .meltano of the tests' own.
PLUGIN_DIRS = ("extractors", "loaders", "utilities", "mappers", "orchestrators", "transformers", "files")


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """Held by one test process at a time: installs into the checkout never run at once."""
    sys_dir = PROJECT_ROOT / ".meltano"
    sys_dir.mkdir(exist_ok=True)
    with (sys_dir / "tests-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def install_plugins() -> None:
    """`make install`, then `meltano install`, in the checkout; one process at a time.

    Both are quick when everything is current. `make install` first: a project copy's
    `make install` (the README runs it) must find the shared .venv current, or it would reinstall
    the editable packages from the copy, which is deleted.
    """
    with _install_lock():
        subprocess.run(["make", "install"], cwd=PROJECT_ROOT, check=True, capture_output=True)
        with tempfile.TemporaryDirectory(prefix="meltano-install-") as tmp:
            meltano("install", env={"MELTANO_DATABASE_URI": f"sqlite:///{Path(tmp) / 'meltano.db'}"})


def install_orchestrate() -> None:
    """`make install-orchestrate` in the checkout, under the same lock as :func:`install_plugins`.

    The README test's project copy shares the checkout's .venv and runs it too: done in the
    checkout first, a stale stamp cannot make the copy reinstall Dagster, whose scripts would then
    start with the path of the copy (which is deleted).
    """
    with _install_lock():
        subprocess.run(["make", "install-orchestrate"], cwd=PROJECT_ROOT, check=True, capture_output=True)


def own_meltano_dir(directory: Path) -> dict[str, str]:
    """The variable that makes `meltano` in the checkout use ``directory`` as its `.meltano`.

    Its plugin folders link to the checkout's (:func:`install_plugins` first); its `run/` and
    `logs/` are its own.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in PLUGIN_DIRS:
        installed = PROJECT_ROOT / ".meltano" / name
        if installed.is_dir() and not (directory / name).exists():
            (directory / name).symlink_to(installed)
    return {SYS_DIR_ENV: str(directory)}


def run_env(meltano_env: dict[str, str], emu: Emulators, directory: Path, **variables: str) -> dict[str, str]:
    """Variables for a test's `meltano` in the checkout against ``emu``, plus ``variables``.

    A system database and a rejected_file of its own in ``directory``.
    """
    return {
        **meltano_env,
        **emu.env(),
        "MELTANO_DATABASE_URI": f"sqlite:///{directory / 'meltano.db'}",
        "TARGET_AMPLITUDE_GROUPS_REJECTED_FILE": str(directory / "rejected.jsonl"),
        **variables,
    }


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


def start_run(env: dict[str, str], suffix: str, *extra: str) -> subprocess.Popen[str]:
    """`meltano run` of the demo job in the checkout, as a terminal starts it (its own process group).

    Its output (stdout and stderr together) is for the caller to read.
    """
    args = ("--environment=demo", "run", f"--state-id-suffix={suffix}", *extra, *TAP_TARGET)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("meltano")), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
