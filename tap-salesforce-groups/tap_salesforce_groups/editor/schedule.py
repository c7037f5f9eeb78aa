"""Sync cadence: the interval of the Meltano schedule that runs this tap, daily or hourly.

Meltano sets ``MELTANO_PROJECT_ROOT`` for the plugins it invokes; outside a Meltano project
there is no schedule to change. ``meltano.yml`` is edited with a ruamel.yaml round trip, so its
comments, order and quoting survive, and written atomically.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

CADENCES = {"daily": "@daily", "hourly": "@hourly"}
PROJECT_ROOT_ENV = "MELTANO_PROJECT_ROOT"
TAP = "tap-salesforce-groups"


class ScheduleError(Exception):
    """The cadence cannot be read or changed; the message says why."""


@dataclass(frozen=True)
class Cadence:
    """The schedules that run the tap and their common cadence (None when not under Meltano)."""

    project: str | None
    schedules: tuple[str, ...]
    cadence: str | None  # daily, hourly, or custom (any other interval)

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": bool(self.project and self.schedules),
            "project": self.project,
            "schedules": list(self.schedules),
            "cadence": self.cadence,
        }


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode: comments and formatting are kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    return yaml


def _runs_tap(schedule: Any, jobs: dict[str, Any]) -> bool:
    if schedule.get("extractor") == TAP:
        return True
    tasks = jobs.get(schedule.get("job"), [])
    flat = [t for item in tasks for t in (item if isinstance(item, list) else [item])]
    return any(TAP in str(task).split() for task in flat)


class ProjectSchedule:
    """The schedules in ``meltano.yml`` whose job (or extractor) runs tap-salesforce-groups."""

    def __init__(self, project_root: str | None = None) -> None:
        root = project_root if project_root is not None else os.environ.get(PROJECT_ROOT_ENV)
        self.path = Path(root) / "meltano.yml" if root else None

    def _load(self) -> tuple[Any, list[Any]]:
        assert self.path is not None
        try:
            data = _yaml().load(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScheduleError(f"cannot read {self.path}: {exc.strerror}") from exc
        except Exception as exc:  # ruamel's errors have no common public base
            raise ScheduleError(f"cannot parse {self.path}: {exc}") from exc
        jobs = {j.get("name"): j.get("tasks", []) for j in (data.get("jobs") or [])}
        ours = [s for s in (data.get("schedules") or []) if _runs_tap(s, jobs)]
        return data, ours

    def read(self) -> Cadence:
        if self.path is None:
            return Cadence(None, (), None)
        _, ours = self._load()
        intervals = {str(s.get("interval")) for s in ours}
        cadence = None
        if len(intervals) == 1:
            interval = intervals.pop()
            cadence = next((c for c, i in CADENCES.items() if i == interval), "custom")
        return Cadence(str(self.path), tuple(str(s["name"]) for s in ours), cadence)

    def set(self, cadence: str) -> Cadence:
        """Set every schedule that runs the tap to ``cadence`` (daily or hourly)."""
        if cadence not in CADENCES:
            raise ScheduleError(f"cadence must be one of {', '.join(CADENCES)}, not {cadence!r}")
        if self.path is None:
            raise ScheduleError(
                f"not running under Meltano ({PROJECT_ROOT_ENV} is not set): there is no schedule to change"
            )
        data, ours = self._load()
        if not ours:
            raise ScheduleError(f"{self.path}: no schedule runs {TAP}; add one with `meltano schedule add`")
        for schedule in ours:
            schedule["interval"] = CADENCES[cadence]
        fd, tmp = tempfile.mkstemp(prefix=".meltano.yml.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                _yaml().dump(data, handle)
            os.chmod(tmp, self.path.stat().st_mode & 0o777)  # mkstemp makes 0600 files
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return self.read()
