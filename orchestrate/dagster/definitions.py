"""The Dagster code location: one asset per shard of the project's mapping, run in parallel.

Each asset is one shard's plain ``meltano run`` (orchestrate/shards.py): the tap and target over
one mapped object, with that shard's state id. The job materialises every shard, at most
``ORCHESTRATE_MAX_PARALLEL_SHARDS`` at once; each shard's target gets an equal part of
``ORCHESTRATE_AMPLITUDE_CONCURRENCY`` (the total Amplitude requests in flight across shards) as
its ``max_concurrency``. A failed shard is retried on its own (``ORCHESTRATE_SHARD_RETRIES``
times, ``ORCHESTRATE_RETRY_DELAY`` seconds apart, doubling); its state id keeps the others'
bookmarks apart, so a retry resumes only that shard. The schedule follows the interval of the
Meltano schedule that runs the pair (``@daily``, or ``@hourly`` as the mapping editor's Sync
cadence sets it), as ``meltano schedule list`` reports it.

Start it with ``dagster dev -m orchestrate.dagster.definitions`` from the project root (see
docs/operations.md "Scaling out"). ``MELTANO_PROJECT_ROOT`` (default: this checkout) and
``MELTANO_ENVIRONMENT`` choose the project and environment; Meltano's system database
(``MELTANO_DATABASE_URI``) must be one that concurrent runs can share: PostgreSQL.

Plain subprocess assets, not ``dagster-meltano``: its last release (1.5.5) imports
``dagster_shell``, whose last release (0.25.13) requires ``dagster==1.9.13``; with current
Dagster pip falls back to ``dagster-shell`` 0.11.14, which fails at import (``dagster.core``).
"""

# No `from __future__ import annotations` here: Dagster reads the asset function's context annotation.
import collections
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from orchestrate.shards import (
    PROJECT_ROOT,
    Shard,
    ShardError,
    meltano_executable,
    meltano_json,
    per_shard_concurrency,
    project_shards,
)

JOB = "salesforce_to_amplitude"
GROUP = "salesforce_to_amplitude"
# A clean stop that a retry a minute later cannot fix (e.g. the org's API budget): EX_TEMPFAIL.
EXIT_TRY_LATER = 75
# The derived plan, for the processes Dagster starts for each step: they import this module
# again, and must build the same assets as the process that loaded the code location.
PLAN_ENV = "ORCHESTRATE_PLAN"


def _int_env(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ShardError(f"{name} must be an integer, not {text!r}") from None
    if value < minimum:
        raise ShardError(f"{name} must be at least {minimum}, not {value}")
    return value


def project_root() -> Path:
    return Path(os.environ.get("MELTANO_PROJECT_ROOT") or PROJECT_ROOT).resolve()


def environment() -> str | None:
    return os.environ.get("MELTANO_ENVIRONMENT") or None


def meltano_cron(root: Path, env_name: str | None) -> str:
    """The cron line of the Meltano schedule that runs the pair (the editor's Sync cadence)."""
    schedules = meltano_json(root, env_name, "schedule", "list", "--format=json")["schedules"]
    crons = set()
    for schedule in schedules.get("job", []):
        tasks = " ".join(schedule["job"]["tasks"] if isinstance(schedule["job"]["tasks"], list) else [])
        if "tap-salesforce-groups" in tasks.split():
            crons.add(schedule["cron_interval"])
    for schedule in schedules.get("elt", []):
        if schedule.get("extractor") == "tap-salesforce-groups":
            crons.add(schedule["cron_interval"])
    if len(crons) != 1:
        found = ", ".join(sorted(crons)) or "none"
        raise ShardError(f"{root / 'meltano.yml'}: need one schedule interval for the pair, found {found}")
    return crons.pop()


def plan() -> dict[str, Any]:
    """Shards, cron and limits: derived once, then inherited by the step processes."""
    cached = os.environ.get(PLAN_ENV)
    if cached:
        return dict(json.loads(cached))
    root, env_name = project_root(), environment()
    shards = project_shards(root, env_name)
    parallel = _int_env("ORCHESTRATE_MAX_PARALLEL_SHARDS", 4, 1)
    total = _int_env("ORCHESTRATE_AMPLITUDE_CONCURRENCY", 8, 1)
    derived = {
        "root": str(root),
        "environment": env_name,
        "shards": [[s.name, list(s.objects)] for s in shards],
        "cron": meltano_cron(root, env_name),
        "parallel": parallel,
        "per_shard_concurrency": per_shard_concurrency(total, parallel, len(shards)),
        "retries": _int_env("ORCHESTRATE_SHARD_RETRIES", 2, 0),
        "retry_delay": _int_env("ORCHESTRATE_RETRY_DELAY", 60, 0),
    }
    os.environ[PLAN_ENV] = json.dumps(derived)
    return derived


def run_shard(context: AssetExecutionContext, shard: Shard, settings: dict[str, Any]) -> dg.MaterializeResult:
    """One shard's ``meltano run``; its output goes to the step's log, its status decides the step."""
    env_name = settings["environment"]
    command = shard.command(meltano_executable(), env_name)
    context.log.info(f"shard {shard.name}: {' '.join(command[1:])}")
    # A session of its own, so that stopping the step stops meltano, the tap and the target together.
    process = subprocess.Popen(
        command,
        cwd=settings["root"],
        env={**os.environ, **shard.env(settings["per_shard_concurrency"])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tail: collections.deque[str] = collections.deque(maxlen=20)
    summary = ""
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)  # the step's captured log (Dagster's compute logs)
            tail.append(line.rstrip())
            if "Summary: " in line:
                summary = line.split("Summary: ", 1)[1].strip()
        code = process.wait()
    except BaseException:
        # Dagster stops a step with SIGTERM/SIGINT: the target then writes the STATE of what was
        # acknowledged and exits; only a shard that ignores it for a minute is killed.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        raise
    state_id = shard.state_id(env_name or "dev")
    if code != 0:
        reason = next((t for t in reversed(tail) if t.strip()), "no output")
        raise dg.Failure(
            description=f"shard {shard.name} ({state_id}): meltano run exited {code}: {reason}",
            metadata={"state_id": state_id, "exit_code": code},
            allow_retries=code != EXIT_TRY_LATER,
        )
    sent = re.match(r"(\d+) groups sent", summary)
    return dg.MaterializeResult(
        metadata={
            "state_id": state_id,
            "summary": summary,
            "groups_sent": int(sent.group(1)) if sent else 0,
        }
    )


def shard_asset(shard: Shard, settings: dict[str, Any]) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"amplitude_groups_{shard.name}",
        group_name=GROUP,
        description=f"Amplitude groups from Salesforce {', '.join(shard.objects)}: one shard's meltano run.",
        kinds={"meltano", "salesforce", "amplitude"},
        metadata={
            "objects": list(shard.objects),
            "state_id": shard.state_id(settings["environment"] or "dev"),
        },
        retry_policy=dg.RetryPolicy(
            max_retries=settings["retries"], delay=settings["retry_delay"], backoff=dg.Backoff.EXPONENTIAL
        ),
    )
    def _materialize(context: AssetExecutionContext) -> dg.MaterializeResult:
        return run_shard(context, shard, settings)

    return _materialize


def build_definitions() -> dg.Definitions:
    settings = plan()
    shards = [Shard(name, tuple(objects)) for name, objects in settings["shards"]]
    job = dg.define_asset_job(
        JOB,
        selection=dg.AssetSelection.groups(GROUP),
        description="Every shard of the mapping, in parallel up to ORCHESTRATE_MAX_PARALLEL_SHARDS.",
        executor_def=dg.multiprocess_executor.configured({"max_concurrent": settings["parallel"]}),
    )
    schedule = dg.ScheduleDefinition(
        name=JOB,
        job=job,
        cron_schedule=settings["cron"],
        execution_timezone="UTC",
        description="The interval of the Meltano schedule that runs the pair (the editor's Sync cadence).",
    )
    return dg.Definitions(assets=[shard_asset(s, settings) for s in shards], jobs=[job], schedules=[schedule])


defs = build_definitions()


def salesforce_to_amplitude_job() -> dg.JobDefinition:
    """The job, for ``dagster.reconstructable`` (tests and scripts that run it without a webserver)."""
    return defs.resolve_job_def(JOB)
