"""Runs against real-world latencies.

Each Salesforce query page and each Amplitude request takes a round trip (the emulators' latency switch), and
a throttled run against a rate limit.

On loopback every answer is immediate, so a pipeline that reads and then sends, in turns, looks
as fast as one that overlaps them. With latency it does not: the **pipelined floor**

    max(pages x page latency, fewest requests x request latency / max_concurrency)

is the wall time of a perfect overlap (reading never waits on sending, and ``max_concurrency``
requests are always in flight). The **throttled** run adds a rate limit of R identifications
per second that Amplitude enforces with 429 and ``Retry-After``; its floor is the larger of the
pipelined floor and ``(groups - burst) / R`` (the bucket starts full with one second's worth).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.mapping import OBJECT, pick_fields, write_mapping
from bench.report import allowed_requests
from bench.runner import BenchEmulators, Context, meltano_run
from emulators.salesforce.app import is_records_page

LATENCY_BAR = {4: 0.85}  # pipelined floor / wall at max_concurrency 4 (issue 20) ...
LATENCY_BAR_DEFAULT = 0.8  # ... and at any other max_concurrency (16 in the published run)
THROTTLED_BAR = 1 / 1.2  # throttled run: within 1.2x of the floor its rate limit allows
LATENCY_BAR_RULES = {
    "latency_vs_pipelined_floor": "latency runs, median ratio: pipelined floor / meltano run wall >= "
    f"{LATENCY_BAR[4]} at max_concurrency 4, >= {LATENCY_BAR_DEFAULT} otherwise; pipelined floor = "
    "max(pages x page latency, fewest requests x request latency / max_concurrency)",
    "throttled_vs_rate_floor": "throttled run, median ratio: floor / wall >= 1/1.2; floor = max(pipelined "
    "floor, (groups - burst) / rate limit)",
    "amplitude_requests_within_1pct (latency runs)": "accepted requests <= ceil(1.01 x fewest)",
}


@dataclass(frozen=True)
class LatencyPlan:
    """What the latency runs measure."""

    rows: int
    fields: int
    rounds: int
    concurrencies: tuple[int, ...]
    page_latency: float
    request_latency: float
    jitter: float  # fraction of each latency, spread evenly either side
    throttle_rate: float  # identifications per second; 0: no throttled run
    throttle_concurrency: int
    api: str = "rest"


def latency_bar(concurrency: int) -> float:
    return LATENCY_BAR.get(concurrency, LATENCY_BAR_DEFAULT)


def _set_latency(emu: BenchEmulators, plan: LatencyPlan) -> None:
    emu.salesforce.set_latency(plan.page_latency, plan.page_latency * plan.jitter)
    emu.amplitude.set_latency(plan.request_latency, plan.request_latency * plan.jitter)


def _one_run(
    ctx: Context, plan: LatencyPlan, label: str, concurrency: int, rate: float | None
) -> dict[str, Any]:
    emu = ctx.emu
    emu.amplitude.reset()  # also clears latency and rate limit: set both again
    _set_latency(emu, plan)
    if rate:
        emu.amplitude.set_rate_limit(rate)
    base_env = ctx.env
    ctx.env = {
        **base_env,
        "TAP_SALESFORCE_GROUPS_API_TYPE": plan.api,
        "TARGET_AMPLITUDE_GROUPS_MAX_CONCURRENCY": str(concurrency),
    }
    log_before = len(emu.salesforce.requests)
    started = time.time()
    try:
        run = meltano_run(ctx, label, "--full-refresh", "--refresh-catalog")
    finally:
        ctx.env = base_env
        emu.amplitude.set_rate_limit(None)
    sf_log = emu.salesforce.requests[log_before:]
    pages = sum(1 for e in sf_log if is_records_page(e["path"]))
    amp = run["amplitude"]
    read_floor = pages * plan.page_latency
    send_floor = amp["fewest_requests"] * plan.request_latency / concurrency
    floor = max(read_floor, send_floor)
    result: dict[str, Any] = {
        "timeline": {
            **timeline(emu.amplitude.requests, started, concurrency),
            **read_timeline(sf_log, started),
        },
        "max_concurrency": concurrency,
        "pages": pages,
        "read_floor_s": round(read_floor, 3),
        "send_floor_s": round(send_floor, 3),
        "pipelined_floor_s": round(floor, 3),
        "run": run,
    }
    if rate:
        burst = rate  # the emulator's bucket holds one second's worth
        rate_floor = max(0.0, amp["groups"] - burst) / rate
        result["rate_limit"] = rate
        result["rate_floor_s"] = round(rate_floor, 3)
        floor = max(floor, rate_floor)
        result["floor_s"] = round(floor, 3)
        report = run.get("target_report") or {}
        result["retries"] = report.get("retries")
        result["throttled_429"] = amp["statuses"].get("429", 0)
    else:
        result["floor_s"] = round(floor, 3)
    result["ratio"] = round(floor / run["wall_s"], 3)
    return result


def timeline(entries: list[dict[str, Any]], started: float, concurrency: int) -> dict[str, Any]:
    """When Amplitude requests went out, from the emulator's log.

    The first one's start and the last one's answer (seconds into the run), and how busy
    ``concurrency`` slots were between.
    """
    spans = [(e["time"] - e["latency"], e["time"]) for e in entries if e.get("latency") is not None]
    if not spans:
        return {}
    first = min(a for a, _ in spans)
    last = max(b for _, b in spans)
    busy = sum(b - a for a, b in spans)
    return {
        "first_request_s": round(first - started, 2),
        "last_answer_s": round(last - started, 2),
        "slots_busy": round(busy / (concurrency * (last - first)), 3) if last > first else None,
    }


def read_timeline(entries: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """When the run's first Salesforce call and its first and last pages of records were answered.

    Seconds into the run; the reading floor starts at the first page.
    """
    pages = [e["time"] for e in entries if is_records_page(e["path"])]
    if not entries or not pages:
        return {}
    return {
        "first_salesforce_call_s": round(min(e["time"] for e in entries) - started, 2),
        "first_page_s": round(min(pages) - started, 2),
        "last_page_s": round(max(pages) - started, 2),
    }


def bench_latency(plan: LatencyPlan) -> dict[str, Any]:
    """Every latency-bound run and the throttled run, ``plan.rounds`` times; medians per case."""
    with (
        BenchEmulators(accounts=plan.rows) as emu,
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
    ):
        workdir = Path(tmp)
        chosen = pick_fields(plan.fields, emu.salesforce.org.describe)
        mapping = write_mapping(workdir / "mapping.json", chosen)
        env = {
            **emu.env(),
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(mapping),
            "TARGET_AMPLITUDE_GROUPS_MAPPING_FILE": str(mapping),
        }
        ctx = Context(emu, env, mapping, workdir, timeout=max(900.0, plan.rows / 20))
        cases: list[tuple[str, int, float | None]] = [(f"latency-c{c}", c, None) for c in plan.concurrencies]
        if plan.throttle_rate:
            cases.append(
                (f"throttled-c{plan.throttle_concurrency}", plan.throttle_concurrency, plan.throttle_rate)
            )
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
        for index in range(plan.rounds):
            for name, concurrency, rate in cases:
                print(f"  [{plan.rows:,} rows, latency] round {index + 1}/{plan.rounds}: {name}…", flush=True)
                runs[name].append(_one_run(ctx, plan, f"{name}-{index + 1}", concurrency, rate))
        rows = emu.salesforce.org.count(OBJECT, include_deleted=True)
        live = emu.salesforce.org.count(OBJECT)
    return {
        "rows": rows,
        "live_rows": live,
        "api": plan.api,
        "page_latency_s": plan.page_latency,
        "request_latency_s": plan.request_latency,
        "jitter_fraction": plan.jitter,
        "cases": {name: {"rounds": rs, "median": _median(rs)} for name, rs in runs.items()},
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median ratio (its figures belong together), plus the spread."""
    ordered = sorted(rounds, key=lambda r: r["ratio"])
    middle = dict(ordered[(len(ordered) - 1) // 2])
    middle["ratios"] = [r["ratio"] for r in rounds]
    middle["median_ratio"] = round(statistics.median(middle["ratios"]), 3)
    return middle


def latency_bars(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 20's bars.

    Latency-bound runs near their pipelined floor, the throttled run near its rate floor, every live row
    delivered and requests within 1% of the fewest.
    """
    out = []
    for name, case in result["cases"].items():
        med = case["median"]
        where = f"{result['rows']:,} rows, {name}, median of {len(case['rounds'])}"
        if "rate_limit" in med:
            bar = THROTTLED_BAR
            floor_text = f"rate floor {med['floor_s']:.1f} s at {med['rate_limit']:,.0f} groups/s"
        else:
            bar = latency_bar(med["max_concurrency"])
            floor_text = f"pipelined floor {med['floor_s']:.1f} s"
        out.append(
            {
                "bar": "throttled_vs_rate_floor" if "rate_limit" in med else "latency_vs_pipelined_floor",
                "where": where,
                "ok": med["median_ratio"] >= bar,
                "detail": f"x{med['median_ratio']:.2f} (run {med['run']['wall_s']:.1f} s, {floor_text}; "
                f"bar x{bar:.2f})",
            }
        )
        for rnd_index, rnd in enumerate(case["rounds"], start=1):
            amp = rnd["run"]["amplitude"]
            accepted_requests = amp["accepted"]
            allowed = allowed_requests(amp["fewest_requests"])
            out.append(
                {
                    "bar": "amplitude_requests_within_1pct",
                    "where": f"{result['rows']:,} rows, {name}, round {rnd_index}",
                    "ok": accepted_requests <= allowed,
                    "detail": f"{accepted_requests} accepted requests, fewest possible "
                    f"{amp['fewest_requests']}, at most {allowed} allowed",
                }
            )
            out.append(
                {
                    "bar": "every_live_row_delivered",
                    "where": f"{result['rows']:,} rows, {name}, round {rnd_index}",
                    "ok": amp["groups"] == result["live_rows"],
                    "detail": f"{amp['groups']} groups accepted of {result['live_rows']} live rows",
                }
            )
    return out


def latency_markdown(result: dict[str, Any]) -> str:
    """The latency table of docs/benchmarks.md."""
    lines = [
        "| rows | case | `max_concurrency` | wall | pages / requests (fewest) | floor | run ÷ floor "
        "| 429s / retries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in result["cases"].values():
        med = case["median"]
        run, amp = med["run"], med["run"]["amplitude"]
        kind = (
            f"throttled at {med['rate_limit']:,.0f} groups/s"
            if "rate_limit" in med
            else f"{result['page_latency_s'] * 1000:.0f} ms pages, {result['request_latency_s'] * 1000:.0f} ms requests"
        )
        floor = (
            f"{med['floor_s']:.1f} s (rate)" if "rate_limit" in med else f"{med['floor_s']:.1f} s (pipelined)"
        )
        throttled = f"{med.get('throttled_429', amp['statuses'].get('429', 0)):,} / "
        report = run.get("target_report") or {}
        throttled += f"{report.get('retries', '-')}"
        lines.append(
            f"| {result['rows']:,} | {kind} | {med['max_concurrency']} | {run['wall_s']:.1f} s | "
            f"{med['pages']} / {amp['requests']:,} ({amp['fewest_requests']:,}) | {floor} | "
            f"**{med['median_ratio']:.2f}** | {throttled} |"
        )
    return "\n".join(lines)


def latency_table(result: dict[str, Any]) -> str:
    """The readable block of the printed report."""
    lines = [
        f"== {result['rows']:,} Account rows, {result['api'].upper()}, "
        f"{result['page_latency_s'] * 1000:.0f} ms per query page, "
        f"{result['request_latency_s'] * 1000:.0f} ms per Amplitude request "
        f"(±{result['jitter_fraction'] * 100:.0f}%) ==",
    ]
    for name, case in result["cases"].items():
        med = case["median"]
        run = med["run"]
        lines.append(
            f"  {name}: wall {run['wall_s']:.1f} s (ratios {', '.join(f'{r:.2f}' for r in med['ratios'])}); "
            f"read floor {med['read_floor_s']:.1f} s ({med['pages']} pages), send floor "
            f"{med['send_floor_s']:.1f} s; "
            + (f"rate floor {med['rate_floor_s']:.1f} s; " if "rate_floor_s" in med else "")
            + f"Salesforce: first call {med['timeline'].get('first_salesforce_call_s', '-')} s, pages "
            f"{med['timeline'].get('first_page_s', '-')} s to {med['timeline'].get('last_page_s', '-')} s; "
            f"Amplitude requests from {med['timeline'].get('first_request_s', '-')} s to "
            f"{med['timeline'].get('last_answer_s', '-')} s, slots busy {med['timeline'].get('slots_busy', '-')}; "
            f"tap alive {run['tap_alive_s']} s, target alive {run['target_alive_s']} s; "
            f"summary: {run.get('summary')}"
        )
    return "\n".join(lines)
