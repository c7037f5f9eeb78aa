"""What runs the Sync cadence.

A Meltano schedule is only a line in meltano.yml: Meltano never runs it by itself. Under the project's Dagster code location (orchestrate/dagster/, docs/operations.md
"Scaling out") the schedule is read at every hourly tick; otherwise the page gives the cron line
that runs it.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Any

CRON = {"daily": "0 0 * * *", "hourly": "0 * * * *"}
CODE_LOCATION = Path("orchestrate") / "dagster" / "definitions.py"
DAGSTER_COMMAND = "dagster dev -m orchestrate.dagster.definitions"


def dagster_in_use(project_root: Path) -> bool:
    """The project has the code location and Dagster is installed for it (make install-orchestrate)."""
    if not (project_root / CODE_LOCATION).is_file():
        return False
    return (project_root / ".venv" / "bin" / "dagster").exists() or shutil.which("dagster") is not None


def runs_it(meltano_yml: str | None, cadence: str | None, schedules: list[str]) -> dict[str, Any] | None:
    """Who runs the schedule at this cadence: ``{"runner": "dagster"|"cron", "text": ..., "cron": ...}``."""
    if not meltano_yml or not schedules:
        return None
    root = Path(meltano_yml).parent
    if dagster_in_use(root):
        return {
            "runner": "dagster",
            "text": "Run by Dagster: the code location orchestrate/dagster/ reads this cadence at every "
            f"hourly tick and runs each shard of the mapping ({DAGSTER_COMMAND}).",
            "cron": None,
        }
    if cadence not in CRON:
        return {
            "runner": "cron",
            "text": "Nothing runs this schedule by itself: install its interval as a cron line.",
            "cron": None,
        }
    meltano = ".venv/bin/meltano" if (root / ".venv" / "bin" / "meltano").exists() else "meltano"
    environment = os.environ.get("MELTANO_ENVIRONMENT")
    flag = f" --environment={shlex.quote(environment)}" if environment else ""
    line = f"{CRON[cadence]} cd {shlex.quote(str(root))} && {meltano}{flag} schedule run {shlex.quote(schedules[0])}"
    return {
        "runner": "cron",
        "text": "Nothing runs this schedule by itself: add this line to the crontab (crontab -e), or use Dagster.",
        "cron": line,
    }
