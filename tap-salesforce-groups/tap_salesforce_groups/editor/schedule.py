"""Sync cadence: the interval of the Meltano schedule that runs this tap, daily or hourly.

Meltano sets ``MELTANO_PROJECT_ROOT`` for the plugins it invokes; outside a Meltano project
there is no schedule to change. ``meltano.yml`` is edited with a ruamel.yaml round trip, so its
comments, order and quoting survive, and written atomically.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from groups_mapping import write_atomically

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
        """The cadence as the editor's API returns it."""
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


def _runs_tap(schedule: Any, jobs: dict[str, Any], ours: set[str]) -> bool:
    """Whether ``schedule`` runs one of ``ours`` (the tap and the plugins inheriting from it)."""
    if schedule.get("extractor") in ours:
        return True
    tasks = jobs.get(schedule.get("job"), [])
    tasks = [tasks] if isinstance(tasks, str) else tasks
    flat = [t for item in tasks for t in (item if isinstance(item, list) else [item])]
    return any(name.split(":")[0] in ours for task in flat for name in str(task).split())


def _our_plugins(extractors: list[Any]) -> set[str]:
    """The tap and every extractor whose ``inherit_from`` chain leads to it (Meltano's sharding)."""
    parents = {str(p.get("name")): p.get("inherit_from") for p in extractors if isinstance(p, dict)}
    ours = {TAP}
    changed = True
    while changed:
        grown = {name for name, parent in parents.items() if parent in ours}
        changed = not grown <= ours
        ours |= grown
    return ours


@dataclass
class _ProjectFile:
    """One YAML file of the project as read: where it is, its round-trip data, its line ending."""

    path: Path
    data: Any
    newline: str


class ProjectSchedule:
    """The schedules of the Meltano project whose job (or extractor) runs tap-salesforce-groups.

    As Meltano reads the project: ``meltano.yml`` and the files its ``include_paths`` globs
    match, with the plugins that inherit from the tap (``inherit_from``) counted as the tap.
    """

    def __init__(self, project_root: str | None = None) -> None:
        root = project_root if project_root is not None else os.environ.get(PROJECT_ROOT_ENV)
        self.path = Path(root) / "meltano.yml" if root else None

    def _read(self, path: Path) -> _ProjectFile:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ScheduleError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            # Loaded with LF line ends (ruamel would keep a CR in comments); written back with the file's own.
            data = _yaml().load(raw.decode("utf-8").replace("\r\n", "\n"))
        except Exception as exc:  # ruamel's errors have no common public base
            raise ScheduleError(f"cannot parse {path}: {exc}") from exc
        return _ProjectFile(path, data if data is not None else {}, "\r\n" if b"\r\n" in raw else "\n")

    def _files(self) -> list[_ProjectFile]:
        """``meltano.yml``, then every file its ``include_paths`` match (as Meltano globs them)."""
        assert self.path is not None
        main = self._read(self.path)
        root = self.path.parent
        files = [main]
        seen = {self.path.resolve()}
        for pattern in main.data.get("include_paths") or []:
            for path in sorted(root.glob(str(pattern))):
                if path.resolve() in seen or not path.is_file():
                    continue
                seen.add(path.resolve())
                files.append(self._read(path))
        return files

    def _load(self) -> tuple[list[_ProjectFile], list[tuple[_ProjectFile, Any]]]:
        files = self._files()
        extractors = [p for f in files for p in ((f.data.get("plugins") or {}).get("extractors") or [])]
        names = _our_plugins(extractors)
        jobs = {j.get("name"): j.get("tasks", []) for f in files for j in (f.data.get("jobs") or [])}
        ours = [(f, s) for f in files for s in (f.data.get("schedules") or []) if _runs_tap(s, jobs, names)]
        return files, ours

    def read(self) -> Cadence:
        """The cadence of the schedules that run the tap."""
        if self.path is None:
            return Cadence(None, (), None)
        _, ours = self._load()
        intervals = {str(s.get("interval")) for _, s in ours}
        cadence = None  # no schedule
        if len(intervals) == 1:
            interval = intervals.pop()
            cadence = next((c for c, i in CADENCES.items() if i == interval), "custom")
        elif intervals:
            cadence = "custom"  # schedules at different intervals: neither daily nor hourly
        return Cadence(str(self.path), tuple(str(s["name"]) for _, s in ours), cadence)

    def set(self, cadence: str) -> Cadence:
        """Set every schedule that runs the tap to ``cadence`` (daily or hourly), in its own file."""
        if cadence not in CADENCES:
            raise ScheduleError(f"cadence must be one of {', '.join(CADENCES)}, not {cadence!r}")
        if self.path is None:
            raise ScheduleError(
                f"not running under Meltano ({PROJECT_ROOT_ENV} is not set): there is no schedule to change"
            )
        _, ours = self._load()
        if not ours:
            raise ScheduleError(f"{self.path}: no schedule runs {TAP}; add one with `meltano schedule add`")
        changed: list[_ProjectFile] = []
        for project_file, schedule in ours:
            if schedule.get("interval") != CADENCES[cadence]:
                schedule["interval"] = CADENCES[cadence]
                if project_file not in changed:
                    changed.append(project_file)
        for project_file in changed:
            _write(project_file)
        return self.read()


def _write(project_file: _ProjectFile) -> None:
    """Replace the file atomically with its line endings and mode, through a symlink.

    A symlinked ``meltano.yml`` (a shared config checked out elsewhere) stays a symlink: the
    file it points to is replaced, next to itself.
    """
    text = io.StringIO()
    _yaml().dump(project_file.data, text)
    try:
        write_atomically(project_file.path, text.getvalue(), newline=project_file.newline)
    except OSError as exc:
        raise ScheduleError(f"cannot write {project_file.path}: {exc.strerror}") from exc
