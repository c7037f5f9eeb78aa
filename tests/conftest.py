"""Fixtures every test may use: the session's emulators, the checkout's Meltano project.

The emulators start here (not at import) and are reset around each test that uses one.

The helpers the tests share are plain modules in tests/support/; test modules import them from
there, never from a conftest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.amplitude import AmplitudeEmulator
from emulators.salesforce import SalesforceEmulator
from tests.support.editor import SCREENSHOT_LINE
from tests.support.emulators import SESSION, Session
from tests.support.project import clone_like, install_plugins, own_meltano_dir
from tests.support.scheduling import ModuleOrGroupScheduling


@pytest.fixture(scope="session", autouse=True)
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Both emulators, one CA in REQUESTS_CA_BUNDLE, for the whole session."""
    SESSION.start(tmp_path_factory.mktemp("emulators"))
    yield SESSION
    SESSION.stop()


@pytest.fixture
def salesforce() -> Iterator[SalesforceEmulator]:
    emulator = SESSION.salesforce
    assert emulator is not None
    emulator.reset()
    yield emulator
    # A read stopped early leaves its prefetch thread to finish the request in flight (the tap
    # does not wait for it): let it end here, so that it does not land in the next test's log.
    for thread in threading.enumerate():
        if thread.name.endswith(("-pages", "-bulk")):
            thread.join(timeout=60)
    emulator.reset()
    emulator.query_timeout_rows, emulator.sandbox, emulator.api_max = None, False, 1_000_000
    emulator.rotate_refresh_tokens = False


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    emulator = SESSION.amplitude
    assert emulator is not None
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture(scope="session")
def meltano_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Variables for every `meltano` a test starts in the checkout: a `.meltano` of this process's own.

    The checkout's plugins are installed first (once: the other test processes wait). With
    them, runs in other test processes at the same time never share `.meltano/run/`
    (tests/support/project.py says why).
    """
    install_plugins()
    return own_meltano_dir(tmp_path_factory.mktemp("meltano-sys"))


@pytest.fixture
def project_copy(meltano_env: dict[str, str], tmp_path: Path) -> Path:
    """A fresh-clone-like copy of the project, sharing the installed .venv and plugin venvs."""
    return clone_like(tmp_path / "project")


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: without the plugin (-p no:xdist), unused
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> ModuleOrGroupScheduling | None:
    """Under ``--dist loadgroup`` (pyproject.toml): whole modules, or whole xdist groups, in collection order."""
    if config.getvalue("dist") != "loadgroup":
        return None
    config.option.loadscopereorder = False  # collection order: the Meltano modules first (below)
    return ModuleOrGroupScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that run Meltano (marked e2e) first, each module's tests in their own order.

    They are the long ones: `make test` hands whole modules to its processes in this order
    (:func:`pytest_xdist_make_scheduler`), so the short ones fill in at the end.
    """
    e2e_modules = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: item.path not in e2e_modules)  # a stable sort


SCREENSHOTS: list[tuple[str, str]] = []  # (path, what it shows), from the tests' reports


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Note the screenshots a test printed (tests/editor/test_page.py), whichever process ran it."""
    if report.when == "call":
        SCREENSHOTS.extend((m["path"], m["what"]) for m in SCREENSHOT_LINE.finditer(report.capstdout))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser test's screenshots are (tests/output/editor/)."""
    if SCREENSHOTS:
        terminalreporter.write_sep("-", "mapping editor screenshots")
        for path, what in SCREENSHOTS:
            terminalreporter.write_line(f"{path}: {what}")
