"""Medians over rounds, the bars of docs/SPEC.md §8, and the printed table."""

from __future__ import annotations

import statistics
from typing import Any

MB = 1024 * 1024
REQUEST_EXCESS_PERCENT = 1  # Amplitude requests at most 1% above the fewest the limits allow
RSS_GROWTH_BAR = 1.20  # peak RSS at the largest size at most 20% above that at the smallest
BAR_RULES = {
    "amplitude_requests_within_1pct": "full run: requests <= ceil(1.01 x fewest), fewest = "
    "max(ceil(groups/1024), ceil(properties/1024), ceil(payload bytes/1,000,000))",
    "every_live_row_delivered": "full run: every live row accepted as a group, no request refused",
    "incremental_unchanged_sends_nothing": "incremental run with nothing changed: 0 Amplitude requests",
    "tap_memory_flat / target_memory_flat": f"with --sizes: peak RSS at the largest size <= "
    f"{RSS_GROWTH_BAR} x that at the smallest",
}


def median_of(rounds: list[Any]) -> Any:
    """Field-wise median of equally shaped results (non-numbers: the last round's value)."""
    first = rounds[-1]
    if isinstance(first, dict):
        return {key: median_of([r.get(key) for r in rounds]) for key in first}
    numbers = [r for r in rounds if isinstance(r, (int, float)) and not isinstance(r, bool)]
    if numbers and len(numbers) == len(rounds):
        value = statistics.median(numbers)
        return round(value, 4) if isinstance(value, float) else value
    return first


def allowed_requests(fewest: int) -> int:
    """1% above the fewest, rounded up to a whole request (integer arithmetic)."""
    return (fewest * (100 + REQUEST_EXCESS_PERCENT) + 99) // 100


def bars(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each bar with whether it holds and the figures behind it."""
    out: list[dict[str, Any]] = []
    for size in sizes:
        n = f"{size['accounts']:,} rows"
        for index, rnd in enumerate(size["rounds"], start=1):
            tag = f"{n}, round {index}"
            full = rnd["full"]["amplitude"]
            allowed = allowed_requests(full["fewest_requests"])
            out.append(
                {
                    "bar": "amplitude_requests_within_1pct",
                    "where": tag,
                    "ok": full["requests"] <= allowed,
                    "detail": f"{full['requests']} requests, fewest possible {full['fewest_requests']} "
                    f"(ratio {full['ratio']}), at most {allowed} allowed",
                }
            )
            sent = full["groups"]
            out.append(
                {
                    "bar": "every_live_row_delivered",
                    "where": tag,
                    "ok": sent == size["live_rows"] and full["accepted"] == full["requests"],
                    "detail": f"{sent} groups accepted of {size['live_rows']} live rows; "
                    f"{full['accepted']}/{full['requests']} requests accepted",
                }
            )
            inc = rnd["incremental"]["amplitude"]["requests"]
            out.append(
                {
                    "bar": "incremental_unchanged_sends_nothing",
                    "where": tag,
                    "ok": inc == 0,
                    "detail": f"{inc} Amplitude requests with {size['rows_at_bookmark']} rows at the bookmark",
                }
            )
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for role in ("tap", "target"):
            key = f"peak_rss_{role}_bytes"
            a, b = small["median"]["full"][key], large["median"]["full"][key]
            out.append(
                {
                    "bar": f"{role}_memory_flat",
                    "where": f"{small['accounts']:,} -> {large['accounts']:,} rows",
                    "ok": bool(a) and b <= a * RSS_GROWTH_BAR,
                    "detail": f"peak RSS {a / MB:.1f} MB -> {b / MB:.1f} MB "
                    f"(x{b / a if a else float('nan'):.2f}, bar x{RSS_GROWTH_BAR})",
                }
            )
    return out


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _mb(value: Any) -> str:
    return "-" if not value else f"{value / MB:,.1f}"


def table(result: dict[str, Any]) -> str:
    """The readable report."""
    p = result["parameters"]
    m = result["machine"]
    lines = [
        f"Benchmark {result['date']}: {p['fields']} mapped Account fields, {p['repeat']} round(s) "
        f"per size (medians), {m['cpu_count']} CPUs, Python {m['python']}",
    ]
    for size in result["sizes"]:
        med = size["median"]
        full, inc, raw = med["full"], med["incremental"], med["raw_floor"]
        fa, ra = full["amplitude"], raw["amplitude"]
        lines += [
            "",
            f"== {size['rows']:,} Account rows ({size['live_rows']:,} live; "
            f"{size['rows_at_bookmark']:,} share the final bookmark) ==",
            f"  {'':34}{'meltano run':>20}{'raw floor':>20}",
            f"  {'wall time (s)':34}{_num(full['wall_s'], 1):>20}{_num(raw['process_wall_s'], 1):>20}",
            f"  {'  tap+target processes alive (s)':34}{_num(full['plugins_wall_s'], 1):>20}"
            f"{_num(raw['wall_s'], 1):>20}",
            f"  {'  tap / target alive (s)':34}"
            f"{_num(full['tap_alive_s'], 1) + ' / ' + _num(full['target_alive_s'], 1):>20}{'':>20}",
            f"  {'rows/s (rows / wall time)':34}{_num(full['rows_per_s']):>20}"
            f"{_num(size['rows'] / raw['process_wall_s']):>20}",
            f"  {'peak RSS tap (MB)':34}{_mb(full['peak_rss_tap_bytes']):>20}{_mb(raw['peak_rss_bytes']):>20}",
            f"  {'peak RSS target (MB)':34}{_mb(full['peak_rss_target_bytes']):>20}{'(same process)':>20}",
            f"  {'peak RSS meltano (MB)':34}{_mb(full['peak_rss_meltano_bytes']):>20}{'-':>20}",
            f"  {'Salesforce API calls':34}{_num(full['salesforce_api_calls']):>20}"
            f"{_num(raw['salesforce_api_calls_seen']):>20}",
            f"  {'Amplitude requests':34}{_num(fa['requests']):>20}{_num(ra['requests']):>20}",
            f"  {'  fewest the limits allow':34}{_num(fa['fewest_requests']):>20}{_num(ra['fewest_requests']):>20}",
            f"  {'  ratio (bar: +1%)':34}{_num(fa['ratio'], 4):>20}{_num(ra['ratio'], 4):>20}",
            f"  {'  groups / properties sent':34}{_num(fa['groups']) + ' / ' + _num(fa['properties']):>20}"
            f"{_num(ra['groups']) + ' / ' + _num(ra['properties']):>20}",
            f"  CPU seconds: tap {_num(full['cpu_s']['tap'], 1)}, target {_num(full['cpu_s']['target'], 1)}, "
            f"meltano {_num(full['cpu_s']['meltano'], 1)}, emulators {_num(full['cpu_s']['emulators'], 1)}"
            f" | raw floor {_num(raw['cpu_s'], 1)}, emulators {_num(raw['emulators_cpu_s'], 1)}",
            f"  incremental run, nothing changed: {_num(inc['wall_s'], 1)} s wall, "
            f"{inc['amplitude']['requests']} Amplitude requests (bar: 0), "
            f"{inc['salesforce_api_calls']} Salesforce API calls",
            f"  throughput vs raw floor: {100 * full['rows_per_s'] * raw['process_wall_s'] / size['rows']:.0f}%"
            f" (tap+target alone: {100 * raw['process_wall_s'] / full['plugins_wall_s']:.0f}%)"
            if full["plugins_wall_s"]
            else "",
        ]
    if len(result["sizes"]) > 1:
        lines += [
            "",
            "== Peak RSS by size (MB) ==",
            f"  {'rows':>10}{'tap':>10}{'target':>10}{'meltano':>10}{'raw floor':>11}{'rows/s':>10}",
        ]
        for size in result["sizes"]:
            full, raw = size["median"]["full"], size["median"]["raw_floor"]
            lines.append(
                f"  {size['rows']:>10,}{_mb(full['peak_rss_tap_bytes']):>10}"
                f"{_mb(full['peak_rss_target_bytes']):>10}{_mb(full['peak_rss_meltano_bytes']):>10}"
                f"{_mb(raw['peak_rss_bytes']):>11}{_num(full['rows_per_s']):>10}"
            )
    lines += ["", "== Bars =="]
    for bar in result["bars"]:
        lines.append(f"  {'ok ' if bar['ok'] else 'BROKEN'} {bar['bar']} [{bar['where']}]: {bar['detail']}")
    return "\n".join(lines)
