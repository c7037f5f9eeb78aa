"""The Dagster code location: one asset per shard of the project's mapping, run in parallel.

Each asset is one shard's plain ``meltano run`` (orchestrate/shards.py): the tap and target over
one mapped object, with that shard's state id. The job materialises every shard, at most
``ORCHESTRATE_MAX_PARALLEL_SHARDS`` at once; each shard's target gets an equal part of
``ORCHESTRATE_AMPLITUDE_CONCURRENCY`` (the total Amplitude requests in flight across shards) as
its ``max_concurrency``. A failed shard is retried on its own (``ORCHESTRATE_SHARD_RETRIES``
times, ``ORCHESTRATE_RETRY_DELAY`` seconds apart, doubling); its state id keeps the others'
bookmarks apart, so a retry resumes only that shard. The schedule follows the interval of the
Meltano schedule that runs the pair (``@daily``, or ``@hourly`` as the mapping editor's Sync
cadence sets it), read again from ``meltano schedule list`` at every hourly tick.

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
import time
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext, ScheduleEvaluationContext

from orchestrate.shards import (
    PROJECT_ROOT,
    SYS_DIR_ENV,
    Shard,
    ShardError,
    database_uri,
    meltano_executable,
    meltano_json,
    parallel_env,
    per_shard_concurrency,
    project_shards,
    shards_at_once,
)

JOB = "salesforce_to_amplitude"
HOURLY, DAILY = "0 * * * *", "0 0 * * *"  # Meltano's @hourly and @daily
IN_PROGRESS = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)
GROUP = "salesforce_to_amplitude"
# A clean stop that a retry a minute later cannot fix (e.g. the org's API budget): EX_TEMPFAIL.
EXIT_TRY_LATER = 75
# Meltano fails a run record whose heartbeat is older than 5 minutes; a minute's margin.
STALE_AFTER = 6 * 60
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
    """Return the Meltano project: ``MELTANO_PROJECT_ROOT``, else this checkout."""
    return Path(os.environ.get("MELTANO_PROJECT_ROOT") or PROJECT_ROOT).resolve()


def environment() -> str | None:
    """Return the Meltano environment the shards run in (None: Meltano's default)."""
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
    asked = _int_env("ORCHESTRATE_MAX_PARALLEL_SHARDS", 4, 1)
    total = _int_env("ORCHESTRATE_AMPLITUDE_CONCURRENCY", 8, 1)
    parallel = shards_at_once(total, asked)
    if parallel < asked:
        dg.get_dagster_logger().warning(
            f"ORCHESTRATE_MAX_PARALLEL_SHARDS={asked} is above ORCHESTRATE_AMPLITUDE_CONCURRENCY={total}: "
            f"at most {parallel} shards run at once (each keeps at least one request in flight)"
        )
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
    if parallel > 1 and database_uri(root).startswith("sqlite"):
        dg.get_dagster_logger().warning(
            "Meltano's system database is SQLite: shards running at once can fail with 'database is "
            "locked'. Set MELTANO_DATABASE_URI to a PostgreSQL database (docs/operations.md)."
        )
    os.environ[PLAN_ENV] = json.dumps(derived)
    return derived


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_shard(context: AssetExecutionContext, shard: Shard, settings: dict[str, Any]) -> dg.MaterializeResult:
    """One shard's ``meltano run``; its output goes to the step's log, its status decides the step."""
    env_name = settings["environment"]
    env = {
        **os.environ,
        **shard.env(settings["per_shard_concurrency"]),
        **parallel_env(Path(settings["root"]), shard),
    }
    command = shard.command(meltano_executable(), env_name)
    # A `meltano run` killed by a signal leaves its run "running" in the system database, and
    # every later one of the same state id refuses to start until that record's heartbeat is
    # 5 minutes old (Meltano then marks it failed). This shard's steps know when one of them saw
    # its run die that way, and that it is gone: until then they override the stale record with
    # --force, and only then. (One run of the job at a time: the schedule skips while one runs.)
    killed = Path(env[SYS_DIR_ENV]) / "killed-run"
    if killed.exists():
        pid, _, when = killed.read_text().partition(" ")
        if time.time() - float(when or 0) > STALE_AFTER:
            killed.unlink(missing_ok=True)
        elif not _alive(int(pid or 0)):
            command.insert(command.index("run") + 1, "--force")
            context.log.warning(
                f"shard {shard.name}: a killed earlier run's stale record is overridden (--force)"
            )
    context.log.info(f"shard {shard.name}: {' '.join(command[1:])}")
    # A session of its own, so that stopping the step stops meltano, the tap and the target together.
    process = subprocess.Popen(
        command,
        cwd=settings["root"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    tail: collections.deque[str] = collections.deque(maxlen=40)
    summary = ""
    stopped_early = False
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)  # the step's captured log (Dagster's compute logs)
            tail.append(line.rstrip())
            if "Summary: " in line:
                summary = line.split("Summary: ", 1)[1].strip()
                # The tap stopped at the API budget (it exits 75, but `meltano run` exits 1 for any
                # failed block): everything read was delivered and its state saved. Retrying now
                # would only meet the same budget; the next scheduled run resumes.
                stopped_early = "(partial: " in line
        code = process.wait()
    except BaseException:
        # Dagster stops a step with SIGTERM/SIGINT: the target then writes the STATE of what was
        # acknowledged and exits; only a shard that ignores it for a minute is killed.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            killed.write_text(f"{process.pid} {time.time()}")
        raise
    state_id = shard.state_id(env_name or "dev")
    if code < 0:  # killed by a signal: its run record stays "running"
        killed.write_text(f"{process.pid} {time.time()}")
    if code != 0:
        errors = [t for t in tail if "[error" in t or "Error" in t]
        reason = (errors or [t for t in tail if t.strip()] or ["no output"])[-1]
        try_later = code == EXIT_TRY_LATER or stopped_early
        if stopped_early:
            reason = f"stopped early, not retried: {summary}"
        raise dg.Failure(
            description=f"shard {shard.name} ({state_id}): meltano run exited {code}: {reason}",
            metadata={"state_id": state_id, "exit_code": code, "try_later": try_later},
            allow_retries=not try_later,
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
    """Build the asset of one shard, with its retry policy."""

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
    """Build the code location's assets, job and schedule from the project's shards."""
    settings = plan()
    shards = [Shard(name, tuple(objects)) for name, objects in settings["shards"]]
    job = dg.define_asset_job(
        JOB,
        selection=dg.AssetSelection.groups(GROUP),
        description="Every shard of the mapping, in parallel up to ORCHESTRATE_MAX_PARALLEL_SHARDS.",
        executor_def=dg.multiprocess_executor.configured({"max_concurrent": settings["parallel"]}),
    )
    return dg.Definitions(
        assets=[shard_asset(s, settings) for s in shards],
        jobs=[job],
        schedules=[cadence_schedule(job, settings)],
    )


def cadence_schedule(job: Any, settings: dict[str, Any]) -> dg.ScheduleDefinition:
    """The schedule that follows meltano.yml's cadence as it is at each tick, not as it was at load.

    The editor's Sync cadence control switches the Meltano schedule between ``@daily`` and
    ``@hourly``: the schedule ticks every hour and reads the interval again, running on every tick
    (hourly) or at midnight UTC (daily). Any other interval is used as the cron line itself, and a
    change to it applies when the code location is reloaded.
    """
    if settings["cron"] not in (HOURLY, DAILY):
        return dg.ScheduleDefinition(
            name=JOB, job=job, cron_schedule=settings["cron"], execution_timezone="UTC"
        )

    @dg.schedule(
        name=JOB,
        job=job,
        cron_schedule=HOURLY,
        execution_timezone="UTC",
        description="Every hour, or at midnight UTC: as meltano.yml's schedule (the editor's Sync cadence) says now.",
    )
    def _follow_cadence(context: ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=JOB, statuses=list(IN_PROGRESS)), limit=1
        )
        if busy:
            # One run at a time: two runs of one shard would race for its state.
            return dg.SkipReason(f"run {busy[0].run_id} of {JOB} is still in progress")
        cron = meltano_cron(Path(settings["root"]), settings["environment"])
        when = context.scheduled_execution_time
        if cron == HOURLY or (cron == DAILY and when is not None and when.hour == 0):
            return dg.RunRequest(tags={"meltano_cadence": cron})
        if cron == DAILY:
            return dg.SkipReason("the cadence is daily (meltano.yml): it runs at 00:00 UTC")
        return dg.SkipReason(f"meltano.yml's interval is now {cron!r}: reload the code location to follow it")

    return _follow_cadence


defs = build_definitions()


def salesforce_to_amplitude_job() -> dg.JobDefinition:
    """The job, for ``dagster.reconstructable`` (tests and scripts that run it without a webserver)."""
    return defs.resolve_job_def(JOB)
