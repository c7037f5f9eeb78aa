"""One benchmark size: emulators up.

Per API (REST, Bulk) the full and incremental `meltano run`s, the tap alone, the raw query floor and the raw
whole-job floor.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import amplitude
from bench.mapping import OBJECT, pick_fields, write_mapping
from bench.procmon import TreeMonitor
from emulators.amplitude import AmplitudeEmulator
from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators
from emulators.salesforce.data import HISTORY_END_MS, format_datetime

TAP, TARGET = TAP_TARGET
MELTANO = Path(sys.executable).with_name("meltano")
ENVIRONMENT = "--environment=demo"
# The tap as `meltano install` put it in the project (the same code `meltano run` starts).
TAP_EXECUTABLE = PROJECT_ROOT / ".meltano" / "extractors" / TAP / "venv" / "bin" / TAP
# The demo environment's emulator credentials (meltano.yml), for the tap run on its own.
EMULATOR_CREDENTIALS = {
    "client_id": "emulator-client-id",
    "client_secret": "emulator-client-secret",
    "refresh_token": "emulator-refresh-token",
}


class BenchEmulators(Emulators):
    """The shared emulators.

    The Amplitude emulator keeps no payloads and a log long enough for every request of a run.
    """

    def __init__(self, *, accounts: int) -> None:
        super().__init__(accounts=accounts)
        self.amplitude = AmplitudeEmulator(
            ca=self.ca, keep_payloads=False, log_limit=max(10_000, 2 * accounts)
        )


@dataclass
class Context:
    """What every run of one size shares."""

    emu: BenchEmulators
    env: dict[str, str]
    mapping: Path
    workdir: Path
    timeout: float


def stage_bookmark_burst(emu: Emulators, count: int) -> int:
    """Give ``count`` live Accounts one SystemModstamp later than all others.

    The full run's bookmark then lands on a timestamp that many rows share. Returns how many
    were restamped.
    """
    org = emu.salesforce.org
    table = org.table(OBJECT)
    stamp = format_datetime(HISTORY_END_MS + 86_400_000)
    ids = [rid for row, rid in enumerate(table.ids) if not table.deleted(row)][-count:] if count else []
    for rid in ids:
        org.update(OBJECT, rid, SystemModstamp=stamp, LastModifiedDate=stamp)
    return len(ids)


def _stop_group(process: subprocess.Popen[Any]) -> None:
    """End what is left of the process group this benchmark started (the child leads it)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # grandchildren get a moment to exit after SIGTERM


def run_measured(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    roles: tuple[str, ...],
    *,
    discard_stdout: bool = False,
) -> tuple[int, float, TreeMonitor]:
    """Run ``command`` in its own process group, sampling its tree; exit code, wall, monitor.

    Output goes to ``log_path`` (stdout to /dev/null with ``discard_stdout``).
    """
    full_env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **env}
    with log_path.open("w", encoding="utf-8") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL if discard_stdout else log,
            stderr=log if discard_stdout else subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            with TreeMonitor(process.pid, roles) as monitor:
                code = process.wait(timeout=timeout)
            wall = time.perf_counter() - started
        finally:
            _stop_group(process)  # a no-op after a clean exit; after a failure, no stragglers
    return code, wall, monitor


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _summary_line(path: Path) -> str | None:
    match = re.search(r"Summary[^\n]*", path.read_text(encoding="utf-8", errors="replace"))
    return match.group(0).split(" cmd_type=")[0] if match else None


def meltano_run(ctx: Context, label: str, *extra: str) -> dict[str, Any]:
    """One measured `meltano run` of the pair; what it cost and what reached Amplitude."""
    emu = ctx.emu
    log_path = ctx.workdir / f"{label}.log"
    report_path = ctx.workdir / f"{label}-target-report.json"
    report_path.unlink(missing_ok=True)
    env = {**ctx.env, "TARGET_AMPLITUDE_GROUPS_REPORT_FILE": str(report_path)}
    log_before = len(emu.amplitude.requests)
    calls_before = emu.salesforce.api_calls
    command = [str(MELTANO), ENVIRONMENT, "run", *extra, TAP, TARGET]
    cpu_before = time.process_time()
    code, wall, monitor = run_measured(command, env, log_path, ctx.timeout, (TAP, TARGET))
    emulators_cpu = time.process_time() - cpu_before
    if code != 0:
        msg = f"meltano {' '.join(command[1:])} exited {code}; log {log_path}:\n{_tail(log_path)}"
        raise RuntimeError(msg)
    entries = emu.amplitude.requests[log_before:]
    rows = emu.salesforce.org.count(OBJECT, include_deleted=True)
    stats = monitor.stats
    plugin_seen = [s for s in (stats[TAP], stats[TARGET]) if s.first_seen is not None]
    plugins_wall = (
        max(s.last_seen or 0.0 for s in plugin_seen) - min(s.first_seen or 0.0 for s in plugin_seen)
        if plugin_seen
        else None
    )
    return {
        "wall_s": round(wall, 3),
        "plugins_wall_s": _round(plugins_wall),
        "rows": rows,
        "rows_per_s": round(rows / wall, 1),
        "tap_alive_s": _round(stats[TAP].lifetime),
        "target_alive_s": _round(stats[TARGET].lifetime),
        "peak_rss_tap_bytes": stats[TAP].peak_rss,
        "peak_rss_target_bytes": stats[TARGET].peak_rss,
        "peak_rss_meltano_bytes": stats["root"].peak_rss,
        "tap_processes": len(stats[TAP].pids),
        "cpu_s": {
            "tap": round(stats[TAP].cpu_s, 2),
            "target": round(stats[TARGET].cpu_s, 2),
            "meltano": round(stats["root"].cpu_s, 2),
            "emulators": round(emulators_cpu, 2),
        },
        "salesforce_api_calls": emu.salesforce.api_calls - calls_before,
        "amplitude": amplitude.figures(entries),
        "target_report": json.loads(report_path.read_text()) if report_path.exists() else None,
        "summary": _summary_line(log_path),
    }


def tap_alone(ctx: Context, api: str) -> dict[str, Any]:
    """The tap by itself (discovery, then the full read), its messages written to /dev/null."""
    emu = ctx.emu
    config = {
        "login_url": emu.salesforce.url,
        **EMULATOR_CREDENTIALS,
        "mapping_file": str(ctx.mapping),
        "api_type": api,
    }
    config_path = ctx.workdir / f"tap-{api}.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    log_path = ctx.workdir / f"tap-{api}.log"
    calls_before = emu.salesforce.api_calls
    command = [str(TAP_EXECUTABLE), "--config", str(config_path)]
    code, wall, monitor = run_measured(command, ctx.env, log_path, ctx.timeout, (TAP,), discard_stdout=True)
    if code != 0:
        raise RuntimeError(f"the tap alone exited {code}; log {log_path}:\n{_tail(log_path)}")
    rows = emu.salesforce.org.count(OBJECT, include_deleted=True)
    stats = monitor.stats
    return {
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall, 1),
        "peak_rss_bytes": stats["root"].peak_rss,
        "cpu_s": round(stats["root"].cpu_s, 2),
        "salesforce_api_calls": emu.salesforce.api_calls - calls_before,
    }


def raw_floor(ctx: Context, soql: str | None, api: str, mode: str) -> dict[str, Any]:
    """The plain script against the same emulators (``mode`` query or job), after resetting Amplitude."""
    emu = ctx.emu
    emu.amplitude.reset()
    calls_before = emu.salesforce.api_calls
    log_path = ctx.workdir / f"raw-floor-{api}-{mode}.out"
    command = [
        sys.executable,
        "-m",
        "bench.raw_floor",
        "--login-url",
        emu.salesforce.url,
        "--api",
        api,
        "--mode",
        mode,
        "--amplitude-url",
        f"{emu.amplitude.url}/groupidentify",
        "--mapping",
        str(ctx.mapping),
        *(["--soql", soql] if soql else []),
    ]
    cpu_before = time.process_time()
    code, wall, _ = run_measured(command, ctx.env, log_path, ctx.timeout, ())
    emulators_cpu = time.process_time() - cpu_before
    if code != 0:
        raise RuntimeError(f"the raw floor ({api}, {mode}) exited {code}:\n{_tail(log_path)}")
    own = json.loads(log_path.read_text(encoding="utf-8").strip().splitlines()[-1])
    result = {
        **own,
        "process_wall_s": round(wall, 3),
        "emulators_cpu_s": round(emulators_cpu, 2),
        "salesforce_api_calls_seen": emu.salesforce.api_calls - calls_before,
    }
    if mode == "job":
        result["amplitude"] = amplitude.figures(emu.amplitude.requests)
    return result


def tap_soql(emu: Emulators) -> str | None:
    """The tap's full-read query of the mapped object (REST or Bulk), from the emulator's log."""
    for entry in reversed(emu.salesforce.requests):
        query = entry.get("query") or ""
        path = entry["path"].rstrip("/")
        if (
            (path.endswith("/queryAll") or path.endswith("/jobs/query"))
            and f" FROM {OBJECT} " in query
            and "WHERE" not in query
            and "COUNT()" not in query
        ):
            return query
    return None


def bench_api(ctx: Context, api: str, label: str) -> dict[str, Any]:
    """One round on one API: full run, unchanged incremental run, tap alone, both raw floors."""
    emu = ctx.emu
    base_env = ctx.env
    ctx.env = {**base_env, "TAP_SALESFORCE_GROUPS_API_TYPE": api}
    try:
        print(f"  {label} {api}: full run…", flush=True)
        emu.amplitude.reset()
        full = meltano_run(ctx, f"full-{api}", "--full-refresh", "--refresh-catalog")
        soql = tap_soql(emu)
        print(f"  {label} {api}: incremental run…", flush=True)
        incremental = meltano_run(ctx, f"incremental-{api}")
        print(f"  {label} {api}: tap alone…", flush=True)
        tap = tap_alone(ctx, api)
        print(f"  {label} {api}: raw query floor…", flush=True)
        query_floor = raw_floor(ctx, soql, api, "query")
        print(f"  {label} {api}: raw whole-job floor…", flush=True)
        job_floor = raw_floor(ctx, soql, api, "job")
    finally:
        ctx.env = base_env
    return {
        "full": full,
        "incremental": incremental,
        "tap_alone": tap,
        "raw_query_floor": query_floor,
        "raw_floor": job_floor,
        "ratios": {
            "tap_vs_query_floor": round(query_floor["process_wall_s"] / tap["wall_s"], 3),
            "run_vs_job_floor": round(job_floor["process_wall_s"] / full["wall_s"], 3),
        },
    }


def bench_size(
    accounts: int, fields: int, repeat: int, burst: int | None, api_types: list[str]
) -> dict[str, Any]:
    """Every figure for one row count: ``repeat`` rounds, each on every API of ``api_types``."""
    with (
        BenchEmulators(accounts=accounts) as emu,
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
    ):
        workdir = Path(tmp)
        org = emu.salesforce.org
        chosen = pick_fields(fields, org.describe)
        mapping = write_mapping(workdir / "mapping.json", chosen)
        at_bookmark = stage_bookmark_burst(emu, max(1000, accounts // 50) if burst is None else burst)
        env = {
            **emu.env(),
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(mapping),
            "TARGET_AMPLITUDE_GROUPS_MAPPING_FILE": str(mapping),
        }
        ctx = Context(emu, env, mapping, workdir, timeout=max(900.0, accounts / 50))
        rounds = []
        for index in range(repeat):
            label = f"[{accounts:,} rows] round {index + 1}/{repeat}"
            rounds.append({api: bench_api(ctx, api, label) for api in api_types})
        return {
            "accounts": accounts,
            "rows": org.count(OBJECT, include_deleted=True),
            "live_rows": org.count(OBJECT),
            "rows_at_bookmark": at_bookmark,
            "fields": [{"field": f, "property": p} for f, p in chosen],
            "soql": {api: rounds[-1][api]["raw_floor"]["soql"] for api in api_types},
            "rounds": rounds,
        }
