r"""Shards: the pair run over one mapped object at a time, each with a state id of its own.

The project derives the shards from the mapping the tap reads (``mapping_file`` or ``mapping``):
one per mapped object, named by the object's API name in lower case (Salesforce names are
case-insensitive, so the name survives a change of case in the mapping). A shard is a plain

    TAP_SALESFORCE_GROUPS__SELECT_FILTER='["Account"]' \\
      meltano run --state-id-suffix=account tap-salesforce-groups target-amplitude-groups

Meltano's select filter keeps only that object's stream, and the suffix gives the shard the
state id ``<environment>:tap-salesforce-groups-to-target-amplitude-groups:account``, the same on
every run. Both plugins still read the whole mapping file, so its validation (and the tap's
verification against the org) always sees the whole project, not one shard's slice of it.

``python -m orchestrate.shards list`` prints the shards; ``python -m orchestrate.shards run``
runs them one by one with plain ``meltano run``. The Dagster code location in
``orchestrate/dagster/`` runs the same commands in parallel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from groups_mapping.model import MappingConfig
from groups_mapping.validate import MappingError, load_mapping, problems_together
from tap_salesforce_groups.project import ProjectError, project_mappings

TAP = "tap-salesforce-groups"
TARGET = "target-amplitude-groups"
BASE_STATE_ID = f"{TAP}-to-{TARGET}"
SELECT_FILTER_ENV = "TAP_SALESFORCE_GROUPS__SELECT_FILTER"
MAX_CONCURRENCY_ENV = "TARGET_AMPLITUDE_GROUPS_MAX_CONCURRENCY"
MAPPING_FILE_ENV = "TAP_SALESFORCE_GROUPS_MAPPING_FILE"
MAPPING_ENV = "TAP_SALESFORCE_GROUPS_MAPPING"
DATABASE_URI_ENV = "MELTANO_DATABASE_URI"
SYS_DIR_ENV = "MELTANO_SYS_DIR_ROOT"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ShardError(Exception):
    """The shards cannot be derived; the message says why, in one line."""


@dataclass(frozen=True)
class Shard:
    """The pair over one mapped object (every spelling of its name the mapping uses)."""

    name: str
    objects: tuple[str, ...]

    def state_id(self, environment: str) -> str:
        """Meltano's state id of this shard in ``environment``."""
        return f"{environment}:{BASE_STATE_ID}:{self.name}"

    def env(self, max_concurrency: int | None = None) -> dict[str, str]:
        """Variables that make a plain ``meltano run`` this shard (and cap its Amplitude requests)."""
        env = {SELECT_FILTER_ENV: json.dumps(list(self.objects))}
        if max_concurrency is not None:
            env[MAX_CONCURRENCY_ENV] = str(max_concurrency)
        return env

    def command(self, meltano: str = "meltano", environment: str | None = None) -> list[str]:
        """The ``meltano run`` of this shard (``environment``: Meltano's default when None)."""
        env_flag = [f"--environment={environment}"] if environment else []
        return [meltano, *env_flag, "run", f"--state-id-suffix={self.name}", TAP, TARGET]


def shards_of(mapping: MappingConfig) -> list[Shard]:
    """One shard per mapped object, in first-mapped order."""
    grouped: dict[str, list[str]] = {}
    for name in mapping.objects:
        grouped.setdefault(name.lower(), []).append(name)
    return [Shard(key, tuple(names)) for key, names in grouped.items()]


def shards_at_once(total: int, parallel: int) -> int:
    """How many shards may run at once: ``parallel``, but never more than ``total`` requests allow.

    Each running shard keeps at least one request in flight, so more shards at once than the
    total concurrency would pass Amplitude's ceiling the operator set.
    """
    return max(1, min(parallel, total))


def per_shard_concurrency(total: int, parallel: int, shards: int) -> int:
    """Each shard's ``max_concurrency`` so that the shards running at once stay within ``total``."""
    if total < 1 or parallel < 1:
        raise ShardError(
            f"total concurrency and parallel shards must be at least 1 (got {total}, {parallel})"
        )
    return max(1, total // max(1, min(parallel, shards)))


def database_uri(project_root: Path, env: Mapping[str, str] | None = None) -> str:
    """Return Meltano's system database for this project.

    The variable (in ``env``, default this process's environment), else .env, else meltano.yml,
    else SQLite.
    """
    variables = os.environ if env is None else env
    if variables.get(DATABASE_URI_ENV):
        return variables[DATABASE_URI_ENV]
    dotenv = project_root / ".env"
    if dotenv.exists() and dotenv_values(dotenv).get(DATABASE_URI_ENV):
        return str(dotenv_values(dotenv)[DATABASE_URI_ENV])
    project = yaml.safe_load((project_root / "meltano.yml").read_text(encoding="utf-8")) or {}
    if project.get("database_uri"):
        return str(project["database_uri"])
    return f"sqlite:///{project_root / '.meltano' / 'meltano.db'}"


def parallel_env(project_root: Path, shard: Shard, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that let this shard's ``meltano run`` run beside the others'.

    Meltano 4.4's ``meltano run`` keeps every run's discovered catalog in the one file
    ``.meltano/run/<plugin>/tap.properties.json`` and applies each run's selection to it in place
    (meltano/meltano#8763), so two shards at once overwrite each other's catalog. Each shard gets
    a ``.meltano`` of its own for that (``MELTANO_SYS_DIR_ROOT``), whose plugin folders link to
    the project's installed ones; the system database stays the project's (as ``env``, default
    this process's environment, names it), named explicitly.
    """
    base = project_root / ".meltano"
    own = base / "shards" / shard.name
    own.mkdir(parents=True, exist_ok=True)
    for entry in base.iterdir():
        if entry.name in ("run", "shards") or entry.name.startswith("meltano.db"):
            continue
        link = own / entry.name
        if not link.is_symlink():
            with contextlib.suppress(FileExistsError):  # another shard's step made it first
                link.symlink_to(entry)
    return {SYS_DIR_ENV: str(own), DATABASE_URI_ENV: database_uri(project_root, env)}


def meltano_executable() -> str:
    """The ``meltano`` next to this Python (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("meltano")
    return str(beside) if beside.exists() else (shutil.which("meltano") or "meltano")


def meltano_json(
    project_root: Path, environment: str | None, *args: str, env: Mapping[str, str] | None = None
) -> Any:
    """The JSON a ``meltano`` command prints in ``project_root``, or :class:`ShardError`."""
    env_flag = [f"--environment={environment}"] if environment else []
    result = subprocess.run(
        [meltano_executable(), *env_flag, *args],
        cwd=project_root,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ShardError(f"meltano {' '.join(args)} failed in {project_root}: {last}")
    return json.loads(result.stdout)


def tap_mapping_settings(
    project_root: Path, environment: str | None, env: Mapping[str, str] | None = None
) -> tuple[Any, str | None]:
    """The tap's ``mapping`` and ``mapping_file`` as Meltano resolves them (.env, environment, variables)."""
    variables = {**os.environ, **(env or {})}
    if variables.get(MAPPING_FILE_ENV) or variables.get(MAPPING_ENV):
        # A variable outranks every other source in Meltano: no need to ask it.
        return variables.get(MAPPING_ENV) or None, variables.get(MAPPING_FILE_ENV) or None
    # `config print` masks secrets (its default --safe): only the two mapping keys are used.
    config = meltano_json(project_root, environment, "config", "print", TAP, env=variables)
    return config.get("mapping"), config.get("mapping_file")


def project_shards(
    project_root: Path = PROJECT_ROOT,
    environment: str | None = None,
    *,
    mapping_file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Shard]:
    """The shards of a project: from ``mapping_file`` when given, else from the tap's settings.

    The whole mapping is validated first; a problem anywhere in it is an error for every shard.
    """
    mapping: Any = None
    if mapping_file is None:
        mapping, mapping_file = tap_mapping_settings(project_root, environment, env)
    path = project_root / mapping_file if mapping_file else None
    try:
        config = load_mapping(mapping, path)
    except MappingError as exc:
        raise ShardError(f"{exc.source}: {'; '.join(exc.problems)}") from exc
    # Together with every other mapping the project's plugins send to the same Amplitude project
    # (inherited plugins, environments, include_paths): a rule checked per file is not checked.
    try:
        others, _ = project_mappings(project_root, environment)
    except ProjectError as exc:
        raise ShardError(str(exc)) from exc
    name = str(path) if path else "mapping setting"
    problems = problems_together({name: config, **{plugin.name: other for plugin, other in others}})
    if problems:
        raise ShardError(f"{name} with the project's other mappings: {'; '.join(problems)}")
    return shards_of(config)


def run_shards(
    shards: Sequence[Shard], project_root: Path, environment: str | None, max_concurrency: int | None
) -> int:
    """Each shard with plain ``meltano run``, one after another; 0 when every one succeeded."""
    failed = []
    for shard in shards:
        command = shard.command(meltano_executable(), environment)
        print(f"shard {shard.name}: {' '.join(command[1:])}", flush=True)
        result = subprocess.run(
            command, cwd=project_root, env={**os.environ, **shard.env(max_concurrency)}, check=False
        )
        if result.returncode != 0:
            failed.append(f"{shard.name} (exit {result.returncode})")
    if failed:
        print(f"shards failed: {', '.join(failed)}; the others' state is saved", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: ``list`` the shards or ``run`` them one by one."""
    parser = argparse.ArgumentParser(prog="python -m orchestrate.shards", description=__doc__.split("\n")[0])
    parser.add_argument("--environment", default=os.environ.get("MELTANO_ENVIRONMENT"))
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    parser.add_argument(
        "--mapping-file", help="derive the shards from this file instead of the tap's settings"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print each shard: name, objects, state id")
    run = sub.add_parser("run", help="run the shards (all, or those named) one by one with meltano run")
    run.add_argument("names", nargs="*", help="shard names (default: all)")
    run.add_argument("--max-concurrency", type=int, help="each shard's target max_concurrency")
    args = parser.parse_args(argv)
    root = args.project_root.resolve()
    try:
        shards = project_shards(root, args.environment, mapping_file=args.mapping_file)
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    environment = args.environment or "dev"
    if args.command == "list":
        for shard in shards:
            print(f"{shard.name}\t{','.join(shard.objects)}\t{shard.state_id(environment)}")
        return 0
    unknown = sorted(set(args.names) - {s.name for s in shards})
    if unknown:
        print(
            f"error: no such shard: {', '.join(unknown)} (shards: {', '.join(s.name for s in shards)})",
            file=sys.stderr,
        )
        return 2
    chosen = [s for s in shards if not args.names or s.name in args.names]
    return run_shards(chosen, root, args.environment, args.max_concurrency)


if __name__ == "__main__":
    sys.exit(main())
