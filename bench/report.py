"""Medians over rounds, the bars of docs/SPEC.md §8 and issue 9, and the printed table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

MB = 1024 * 1024
REQUEST_EXCESS_PERCENT = 1  # Amplitude requests at most 1% above the fewest the limits allow
RSS_GROWTH_BAR = 1.20  # peak RSS at the largest size at most 20% above that at the smallest
RSS_CEILING_MB = 150  # peak RSS of tap and of target at every size
TAP_RATIO_BAR = 0.5  # the tap alone: at least half the raw query floor's speed
RUN_RATIO_BAR = 0.6  # the whole meltano run: at least 60% of the raw whole-job floor's speed
BAR_RULES = {
    "amplitude_requests_within_1pct": "full run: requests <= ceil(1.01 x fewest), fewest = "
    "max(ceil(groups/1024), ceil(properties/1024), ceil(payload bytes/1,000,000))",
    "every_live_row_delivered": "full run: every live row accepted as a group, no request refused",
    "incremental_unchanged_sends_nothing": "incremental run with nothing changed: 0 Amplitude requests",
    "tap_vs_query_floor": f"median over rounds: raw query floor wall / tap-alone wall >= {TAP_RATIO_BAR}",
    "run_vs_job_floor": f"median over rounds: raw whole-job floor wall / meltano run wall >= {RUN_RATIO_BAR}",
    "tap_rss / target_rss": f"median peak RSS < {RSS_CEILING_MB} MB at every size",
    "tap_memory_flat / target_memory_flat / meltano_memory_flat": f"with --sizes: peak RSS at the "
    f"largest size <= {RSS_GROWTH_BAR} x that at the smallest",
}


def median_of(rounds: list[Any]) -> Any:
    """Field-wise median of equally shaped results (non-numbers: the last round's value)."""
    first = rounds[-1]
    if isinstance(first, dict):
        return {
            key: median_of([r.get(key) if isinstance(r, dict) else None for r in rounds]) for key in first
        }
    numbers = [r for r in rounds if isinstance(r, (int, float)) and not isinstance(r, bool)]
    if numbers and len(numbers) == len(rounds):
        value = statistics.median(numbers)
        return round(value, 4) if isinstance(value, float) else value
    return first


def allowed_requests(fewest: int) -> int:
    """1% above the fewest, rounded up to a whole request (integer arithmetic)."""
    return (fewest * (100 + REQUEST_EXCESS_PERCENT) + 99) // 100


def _bar(name: str, where: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"bar": name, "where": where, "ok": ok, "detail": detail}


def bars(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each bar with whether it holds and the figures behind it."""
    out: list[dict[str, Any]] = []
    for size in sizes:
        n = f"{size['accounts']:,} rows"
        for index, rnd in enumerate(size["rounds"], start=1):
            for api, res in rnd.items():
                tag = f"{n}, {api}, round {index}"
                full = res["full"]["amplitude"]
                allowed = allowed_requests(full["fewest_requests"])
                out.append(
                    _bar(
                        "amplitude_requests_within_1pct",
                        tag,
                        full["requests"] <= allowed,
                        f"{full['requests']} requests, fewest possible {full['fewest_requests']} "
                        f"(ratio {full['ratio']}), at most {allowed} allowed",
                    )
                )
                sent = full["groups"]
                out.append(
                    _bar(
                        "every_live_row_delivered",
                        tag,
                        sent == size["live_rows"] and full["accepted"] == full["requests"],
                        f"{sent} groups accepted of {size['live_rows']} live rows; "
                        f"{full['accepted']}/{full['requests']} requests accepted",
                    )
                )
                inc = res["incremental"]["amplitude"]["requests"]
                out.append(
                    _bar(
                        "incremental_unchanged_sends_nothing",
                        tag,
                        inc == 0,
                        f"{inc} Amplitude requests with {size['rows_at_bookmark']} rows at the bookmark",
                    )
                )
        for api, med in size["median"].items():
            tag = f"{n}, {api}, median of {len(size['rounds'])}"
            ratios = med["ratios"]
            out.append(
                _bar(
                    "tap_vs_query_floor",
                    tag,
                    ratios["tap_vs_query_floor"] >= TAP_RATIO_BAR,
                    f"x{ratios['tap_vs_query_floor']:.2f} (tap alone {med['tap_alone']['wall_s']:.1f} s, "
                    f"raw query floor {med['raw_query_floor']['process_wall_s']:.1f} s; bar x{TAP_RATIO_BAR})",
                )
            )
            out.append(
                _bar(
                    "run_vs_job_floor",
                    tag,
                    ratios["run_vs_job_floor"] >= RUN_RATIO_BAR,
                    f"x{ratios['run_vs_job_floor']:.2f} (meltano run {med['full']['wall_s']:.1f} s, "
                    f"raw whole-job floor {med['raw_floor']['process_wall_s']:.1f} s; bar x{RUN_RATIO_BAR})",
                )
            )
            for role in ("tap", "target"):
                rss = med["full"][f"peak_rss_{role}_bytes"] or 0
                out.append(
                    _bar(
                        f"{role}_rss",
                        tag,
                        0 < rss < RSS_CEILING_MB * MB,
                        f"peak RSS {rss / MB:.1f} MB (bar < {RSS_CEILING_MB} MB)",
                    )
                )
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for api in large["median"]:
            if api not in small["median"]:
                continue
            for role in ("tap", "target", "meltano"):
                key = f"peak_rss_{role}_bytes"
                a, b = small["median"][api]["full"][key], large["median"][api]["full"][key]
                out.append(
                    _bar(
                        f"{role}_memory_flat",
                        f"{api}, {small['accounts']:,} -> {large['accounts']:,} rows",
                        bool(a) and b <= a * RSS_GROWTH_BAR,
                        f"peak RSS {a / MB:.1f} MB -> {b / MB:.1f} MB "
                        f"(x{b / a if a else float('nan'):.2f}, bar x{RSS_GROWTH_BAR})",
                    )
                )
    return out


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _mb(value: Any) -> str:
    return "-" if not value else f"{value / MB:,.1f}"


def _size_block(size: dict[str, Any], api: str) -> list[str]:
    med = size["median"][api]
    full, inc, tap = med["full"], med["incremental"], med["tap_alone"]
    query, raw = med["raw_query_floor"], med["raw_floor"]
    fa, ra = full["amplitude"], raw["amplitude"]
    rows = size["rows"]
    w = 22
    return [
        "",
        f"== {rows:,} Account rows, {api.upper()} ({size['live_rows']:,} live; "
        f"{size['rows_at_bookmark']:,} share the final bookmark) ==",
        f"  {'':34}{'tap alone':>{w}}{'raw query floor':>{w}}",
        f"  {'wall time (s)':34}{_num(tap['wall_s'], 1):>{w}}{_num(query['process_wall_s'], 1):>{w}}",
        f"  {'rows/s':34}{_num(rows / tap['wall_s']):>{w}}{_num(rows / query['process_wall_s']):>{w}}",
        f"  {'peak RSS (MB)':34}{_mb(tap['peak_rss_bytes']):>{w}}{_mb(query['peak_rss_bytes']):>{w}}",
        f"  {'CPU (s)':34}{_num(tap['cpu_s'], 1):>{w}}{_num(query['cpu_s'], 1):>{w}}",
        f"  {'Salesforce API calls':34}{_num(tap['salesforce_api_calls']):>{w}}"
        f"{_num(query['salesforce_api_calls_seen']):>{w}}",
        f"  {'tap / raw query floor':34}{'x' + _num(med['ratios']['tap_vs_query_floor'], 2):>{w}}"
        f"{'(bar x' + str(TAP_RATIO_BAR) + ')':>{w}}",
        "",
        f"  {'':34}{'meltano run':>{w}}{'raw whole-job floor':>{w}}",
        f"  {'wall time (s)':34}{_num(full['wall_s'], 1):>{w}}{_num(raw['process_wall_s'], 1):>{w}}",
        f"  {'  tap / target alive (s)':34}"
        f"{_num(full['tap_alive_s'], 1) + ' / ' + _num(full['target_alive_s'], 1):>{w}}{'':>{w}}",
        f"  {'rows/s':34}{_num(rows / full['wall_s']):>{w}}{_num(rows / raw['process_wall_s']):>{w}}",
        f"  {'peak RSS tap (MB)':34}{_mb(full['peak_rss_tap_bytes']):>{w}}{_mb(raw['peak_rss_bytes']):>{w}}",
        f"  {'peak RSS target (MB)':34}{_mb(full['peak_rss_target_bytes']):>{w}}{'(one process)':>{w}}",
        f"  {'peak RSS meltano (MB)':34}{_mb(full['peak_rss_meltano_bytes']):>{w}}{'-':>{w}}",
        f"  {'Salesforce API calls':34}{_num(full['salesforce_api_calls']):>{w}}"
        f"{_num(raw['salesforce_api_calls_seen']):>{w}}",
        f"  {'Amplitude requests':34}{_num(fa['requests']):>{w}}{_num(ra['requests']):>{w}}",
        f"  {'  fewest the limits allow':34}{_num(fa['fewest_requests']):>{w}}{_num(ra['fewest_requests']):>{w}}",
        f"  {'  ratio (bar: +1%)':34}{_num(fa['ratio'], 4):>{w}}{_num(ra['ratio'], 4):>{w}}",
        f"  {'  groups / properties sent':34}{_num(fa['groups']) + ' / ' + _num(fa['properties']):>{w}}"
        f"{_num(ra['groups']) + ' / ' + _num(ra['properties']):>{w}}",
        f"  {'run / raw whole-job floor':34}{'x' + _num(med['ratios']['run_vs_job_floor'], 2):>{w}}"
        f"{'(bar x' + str(RUN_RATIO_BAR) + ')':>{w}}",
        f"  CPU seconds: tap {_num(full['cpu_s']['tap'], 1)}, target {_num(full['cpu_s']['target'], 1)}, "
        f"meltano {_num(full['cpu_s']['meltano'], 1)}, emulators {_num(full['cpu_s']['emulators'], 1)}"
        f" | raw floor {_num(raw['cpu_s'], 1)}, emulators {_num(raw['emulators_cpu_s'], 1)}",
        f"  incremental run, nothing changed: {_num(inc['wall_s'], 1)} s wall, "
        f"{inc['amplitude']['requests']} Amplitude requests (bar: 0), "
        f"{inc['salesforce_api_calls']} Salesforce API calls",
    ]


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per size and API: the figures docs/benchmarks.md's table shows."""
    out = []
    for size in result["sizes"]:
        for api, med in size["median"].items():
            full = med["full"]
            out.append(
                {
                    "rows": size["rows"],
                    "api": api,
                    "tap_s": med["tap_alone"]["wall_s"],
                    "query_floor_s": med["raw_query_floor"]["process_wall_s"],
                    "tap_ratio": med["ratios"]["tap_vs_query_floor"],
                    "run_s": full["wall_s"],
                    "run_rows_per_s": size["rows"] / full["wall_s"],
                    "job_floor_s": med["raw_floor"]["process_wall_s"],
                    "run_ratio": med["ratios"]["run_vs_job_floor"],
                    "rss_tap": full["peak_rss_tap_bytes"],
                    "rss_target": full["peak_rss_target_bytes"],
                    "rss_meltano": full["peak_rss_meltano_bytes"],
                    "requests": full["amplitude"]["requests"],
                    "fewest": full["amplitude"]["fewest_requests"],
                    "incremental_s": med["incremental"]["wall_s"],
                    "incremental_requests": med["incremental"]["amplitude"]["requests"],
                }
            )
    return out


def markdown(result: dict[str, Any], extra_tables: Sequence[str] = ()) -> str:
    """The summary as Markdown tables (what docs/benchmarks.md shows).

    The loopback sizes', then ``extra_tables`` (the latency runs').
    """
    parts = [_loopback_markdown(result)] if result["sizes"] else []
    return "\n\n".join([*parts, *extra_tables])


def _loopback_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| rows | API | tap alone | raw query floor | tap ÷ floor | `meltano run` (rows/s) | raw job floor "
        "| run ÷ floor | peak RSS tap / target / meltano | Amplitude requests (fewest) | incremental |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary_rows(result):
        lines.append(
            f"| {r['rows']:,} | {r['api']} | {r['tap_s']:.1f} s | {r['query_floor_s']:.1f} s | "
            f"**{r['tap_ratio']:.2f}** | {r['run_s']:.1f} s ({r['run_rows_per_s']:,.0f}) | "
            f"{r['job_floor_s']:.1f} s | **{r['run_ratio']:.2f}** | {_mb(r['rss_tap'])} / "
            f"{_mb(r['rss_target'])} / {_mb(r['rss_meltano'])} MB | {r['requests']:,} ({r['fewest']:,}) | "
            f"{r['incremental_s']:.1f} s, {r['incremental_requests']} requests |"
        )
    return "\n".join(lines)


def table(result: dict[str, Any], extra_blocks: Sequence[str] = (), extra_tables: Sequence[str] = ()) -> str:
    """The readable report; ``extra_blocks`` and ``extra_tables`` come from the latency runs."""
    p = result["parameters"]
    m = result["machine"]
    lines = [
        f"Benchmark {result['date']}: {p['fields']} mapped Account fields, rounds per size "
        f"{', '.join(f'{s:,}: {r}' for s, r in zip(p['sizes'], p['rounds'], strict=True))} (medians), "
        f"{m['cpu_count']} CPUs ({m.get('cpu_model', '?')}), Python {m['python']}",
    ]
    for size in result["sizes"]:
        for api in size["median"]:
            lines += _size_block(size, api)
    for block in extra_blocks:
        lines += ["", block]
    lines += ["", "== Summary (medians) ==", markdown(result, extra_tables)]
    lines += ["", "== Bars =="]
    for bar in result["bars"]:
        lines.append(f"  {'ok ' if bar['ok'] else 'BROKEN'} {bar['bar']} [{bar['where']}]: {bar['detail']}")
    return "\n".join(lines)
