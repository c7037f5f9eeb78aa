"""Ctrl-C and SIGTERM in every mapping command: exit 130/143, one line, nothing written partially.

Real signals to the real command in a subprocess, against the Salesforce emulator. Each test
waits until the command is provably blocked (an emulator request held by a ``delay`` fault, or a
named pipe the command is reading) before it signals, so none depends on timing. Before the
commands stopped building a ``Tap``, the SDK's handler answered: ``scaffold > mapping.json``
left ``{"type":"STATE","value":{}}`` as the mapping and exited 0, and ``verify`` reported
"cannot log in to Salesforce".
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators._server import Fault
from emulators.salesforce import SalesforceEmulator
from tests.support.emulators import CA
from tests.support.tap import CONFIG

SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
IDS = ["SIGINT", "SIGTERM"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[SalesforceEmulator]:
    """An emulator of this module's own.

    The requests held here finish after their command ended, and must not show up in another test's request
    log.
    """
    server = SalesforceEmulator(ca=CA, accounts=20)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def salesforce(emulator: SalesforceEmulator) -> SalesforceEmulator:
    emulator.faults.clear()
    return emulator


@pytest.fixture
def config(salesforce: SalesforceEmulator) -> dict:
    return {**CONFIG, "login_url": salesforce.url}


def start(tmp_path: Path, command: str, config: dict, *args: str, stdout: Any) -> subprocess.Popen[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "tap_salesforce_groups.mapping_cli", command, "--config", str(path), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: object, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():  # type: ignore[operator]
        assert process.poll() is None, f"the command ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def held(salesforce: object, fault: Fault) -> bool:
    """The delayed request arrived: the emulator took the fault and is sleeping on it."""
    return fault not in salesforce.faults.pending()  # type: ignore[attr-defined]


def stop(process: subprocess.Popen[str], signum: int) -> str:
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    return err


def assert_one_line(err: str, signum: int) -> None:
    assert "Traceback" not in err
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert err.strip().splitlines() == [f"Interrupted by {name}; nothing was written."]


@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=IDS)
def test_scaffold_into_a_file_leaves_it_empty(salesforce, config, tmp_path, signum, code):
    fault = Fault(path="/describe", delay=30)
    salesforce.faults.add(fault)
    output = tmp_path / "mapping.json"
    with output.open("w") as out:  # the shell's `> mapping.json`
        process = start(
            tmp_path, "scaffold", config, "--object", "Account", "--group-type", "org id", "--all", stdout=out
        )
        wait_until(lambda: held(salesforce, fault), process, "asked for the describe")
        err = stop(process, signum)
    assert process.returncode == code
    assert output.read_text() == ""  # no STATE message, no half mapping
    assert_one_line(err, signum)


@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=IDS)
def test_scaffold_write_leaves_the_mapping_file_as_it_was(salesforce, config, tmp_path, signum, code):
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(CONFIG["mapping"], indent=2))
    before = mapping_file.read_bytes()
    fault = Fault(path="/describe", delay=30)
    salesforce.faults.add(fault)
    process = start(
        tmp_path,
        "scaffold",
        {**config, "mapping": None, "mapping_file": str(mapping_file)},
        "--object",
        "Contact",
        "--group-type",
        "contact",
        "--write",
        stdout=subprocess.PIPE,
    )
    wait_until(lambda: held(salesforce, fault), process, "asked for the describe")
    err = stop(process, signum)
    assert process.returncode == code
    assert mapping_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "mapping.json"]  # no temporary left
    assert_one_line(err, signum)


@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=IDS)
def test_verify_reports_the_signal_not_a_login_failure(salesforce, config, tmp_path, signum, code):
    fault = Fault(path="/query", delay=30)  # the one-row read of the first object
    salesforce.faults.add(fault)
    process = start(tmp_path, "verify", config, stdout=subprocess.PIPE)
    wait_until(lambda: held(salesforce, fault), process, "read a row")
    err = stop(process, signum)
    assert process.returncode == code
    assert "log in" not in err
    assert_one_line(err, signum)


@pytest.mark.parametrize("command", ["validate", "export"])
@pytest.mark.parametrize(("signum", "code"), SIGNALS, ids=IDS)
def test_offline_commands_stop_on_a_signal(tmp_path, command, signum, code):
    fifo = tmp_path / "mapping.json"
    os.mkfifo(fifo)
    config = {**CONFIG, "mapping": None, "mapping_file": str(fifo)}
    process = start(tmp_path, command, config, stdout=subprocess.PIPE)
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the command never opened the mapping file"
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                time.sleep(0.02)
        process.send_signal(signum)  # it is blocked reading the mapping, which never comes
        out, err = process.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
    assert process.returncode == code
    assert out == ""
    assert_one_line(err, signum)
