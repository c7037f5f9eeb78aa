"""The short convergence run of ``make test`` (about a minute); ``make soak`` runs it for longer.

Runs go through the real ``meltano run`` for the first and last run of each history, every
run that is killed (SIGKILL to the process group) or signalled (SIGTERM), and a quarter of the
others; the rest pipe the plugins' own executables into each other, with state kept as Meltano
keeps it (the last STATE the target wrote), because a `meltano run` costs several seconds of
start-up. See ``harness.py`` for the model and the checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.convergence.harness import ConvergenceFailure, History, soak

pytestmark = pytest.mark.e2e

SECONDS = float(os.environ.get("CONVERGENCE_SECONDS", "45"))  # then one last clean run


@pytest.mark.usefixtures("meltano_env")  # the checkout's plugins installed before its own `meltano install`
def test_amplitude_converges_to_the_org_over_random_histories() -> None:
    seed = os.environ.get("CONVERGENCE_SEED")
    summary = soak(seconds=SECONDS, seed=int(seed) if seed else None, steps=10)
    print(summary.line())
    # Each history ends with a clean run, which must exit 0 and is checked (the harness raises
    # otherwise); earlier runs may fail by design (faults, signals).
    assert summary.histories >= 1 and summary.checks >= summary.histories


class _UnstampedWrite(History):
    """A history whose one step changes a mapped value without moving SystemModstamp.

    No incremental reader can see it, so the check after the last run must catch the difference.
    """

    def step(self) -> None:
        table = self.org.table("Account")
        row = next(i for i in range(len(table)) if not table.deleted(i))
        table.columns["Name"][row] = "Changed behind the stamp"
        self.note(f"unstamped write to Account/{table.ids[row]} Name")


def test_the_check_catches_a_value_amplitude_never_received(tmp_path: Path) -> None:
    history = _UnstampedWrite(5, tmp_path, f"sqlite:///{tmp_path / 'meltano.db'}", steps=1, use_meltano=False)
    with pytest.raises(ConvergenceFailure) as failure:
        history.run()
    message = str(failure.value)
    assert "make soak SEED=5" in message
    assert "'account name': org 'Changed behind the stamp'" in message
    assert "unstamped write to Account/" in message  # the history is printed


def test_a_quiet_org_that_costs_requests_is_caught(tmp_path: Path) -> None:
    """The zero-request check can fail.

    An Amplitude wiped between two runs with nothing changed in the org costs nothing (the pair cannot know),
    but a fresh state would resend everything.
    """

    class _StateLost(History):
        def step(self) -> None:
            self.step_run(clean=True)  # nothing left to send after it
            self.state = {}  # as if Meltano's state were lost: the next run reads everything again
            self.note("state lost")
            self.step_run(clean=True)  # no fault: it exits 0, so the check applies

    history = _StateLost(6, tmp_path, f"sqlite:///{tmp_path / 'meltano.db'}", steps=1, use_meltano=False)
    with pytest.raises(ConvergenceFailure, match=r"nothing changed, yet \d+ Amplitude request"):
        history.run()


def test_the_check_catches_a_deleted_row_left_unflagged(tmp_path: Path) -> None:
    """With ``deleted_records: flag`` the model wants the flag: a target that unsets instead is caught."""

    class _NotFlagged(History):
        def settings(self, api_type: str) -> tuple[dict, dict]:
            tap, target = super().settings(api_type)
            target["deleted_records"] = "unset"  # while the model expects the flag
            return tap, target

        def step(self) -> None:
            self.deleted_records = "flag"
            self.step_delete()
            self.step_run(clean=True)

    history = _NotFlagged(7, tmp_path, f"sqlite:///{tmp_path / 'meltano.db'}", steps=1, use_meltano=False)
    with pytest.raises(ConvergenceFailure, match=r"property 'deleted': org (True|False), Amplitude"):
        history.run()
