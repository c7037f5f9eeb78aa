"""``python -m bench``: run the benchmark, print the table, write the JSON, exit 1 on a broken bar."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from bench.latency import (
    LATENCY_BAR_RULES,
    LatencyPlan,
    bench_latency,
    latency_bars,
    latency_markdown,
    latency_table,
)
from bench.report import BAR_RULES, bars, markdown, median_of, table
from bench.runner import MELTANO, bench_size
from emulators.pipeline import PROJECT_ROOT, meltano


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split(":")[1].strip())
    parser.add_argument("--accounts", type=int, default=200_000, help="Account rows (default 200000)")
    parser.add_argument(
        "--sizes", help="comma-separated Account row counts, e.g. 20000,200000 (overrides --accounts)"
    )
    parser.add_argument("--fields", type=int, default=12, help="mapped Account fields (default 12)")
    parser.add_argument(
        "--rounds",
        "--repeat",
        dest="rounds",
        default="1",
        help="rounds per size, medians reported; one number, or one per size (e.g. 3,1)",
    )
    parser.add_argument(
        "--bookmark-burst",
        type=int,
        help="live rows given the final SystemModstamp (default max(1000, rows/50))",
    )
    parser.add_argument(
        "--apis",
        "--api-type",
        dest="apis",
        default="rest,bulk",
        help="comma-separated api_type values to run, each with its own floors (default rest,bulk)",
    )
    parser.add_argument("--out", default="bench-results/bench.json", help="JSON results file")
    parser.add_argument(
        "--parts",
        default="loopback,latency,throttled",
        help="what to run: loopback (the sizes above), latency (latency-bound runs), throttled "
        "(a rate-limited run); default all three",
    )
    parser.add_argument("--latency-rows", type=int, default=100_000, help="Account rows of the latency runs")
    parser.add_argument("--latency-rounds", type=int, default=1, help="rounds of the latency runs (medians)")
    parser.add_argument(
        "--concurrencies", default="4,16", help="max_concurrency values of the latency runs (default 4,16)"
    )
    parser.add_argument("--page-latency", type=float, default=0.3, help="seconds per Salesforce query page")
    parser.add_argument("--request-latency", type=float, default=0.15, help="seconds per Amplitude request")
    parser.add_argument(
        "--jitter", type=float, default=0.1, help="latency jitter, a fraction of it either side (default 0.1)"
    )
    parser.add_argument(
        "--throttle-rate",
        type=float,
        default=3000,
        help="throttled run: Amplitude's limit in groups per second (at the largest max_concurrency)",
    )
    args = parser.parse_args(argv)
    args.size_list = (
        [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
        if args.sizes
        else [args.accounts]
    )
    try:
        rounds = [int(r) for r in str(args.rounds).split(",") if r.strip()]
    except ValueError:
        parser.error("--rounds takes a number or comma-separated numbers")
    if len(rounds) == 1:
        rounds *= len(args.size_list)
    if len(rounds) != len(args.size_list):
        parser.error("--rounds takes one number, or one per size")
    if (args.size_list and min(args.size_list) < 1) or args.fields < 1 or min(rounds) < 1:
        parser.error("sizes, --fields and --rounds must be positive")
    args.api_list = [a.strip() for a in args.apis.split(",") if a.strip()]
    if not args.api_list or not set(args.api_list) <= {"rest", "bulk"}:
        parser.error("--apis takes rest, bulk or both (the raw floors read one or the other)")
    args.part_list = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.part_list or not set(args.part_list) <= {"loopback", "latency", "throttled"}:
        parser.error("--parts takes loopback, latency and/or throttled")
    try:
        args.concurrency_list = tuple(int(c) for c in args.concurrencies.split(",") if c.strip())
    except ValueError:
        parser.error("--concurrencies takes comma-separated numbers")
    if (
        not args.concurrency_list
        or min(args.concurrency_list) < 1
        or min(args.latency_rows, args.latency_rounds) < 1
        or min(args.page_latency, args.request_latency, args.jitter) < 0
        or args.jitter > 1
        or args.throttle_rate <= 0
    ):
        parser.error("latency options must be positive (--jitter between 0 and 1)")
    if "loopback" not in args.part_list:
        args.size_list, rounds = [], []
    args.plan = sorted(zip(args.size_list, rounds, strict=True))
    args.size_list = [size for size, _ in args.plan]
    args.repeat = rounds
    return args


def _git_revision() -> str | None:
    """The checkout's commit, with ``+dirty`` when tracked files are modified."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the stack, so child processes are stopped and emulators shut down.
    sys.exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    print(f"meltano install ({MELTANO})…", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        meltano("install", env={"MELTANO_DATABASE_URI": f"sqlite:///{Path(tmp) / 'meltano.db'}"})
    sizes = []
    for accounts, repeat in args.plan:
        try:
            size = bench_size(accounts, args.fields, repeat, args.bookmark_burst, args.api_list)
        except (RuntimeError, ValueError) as exc:
            print(f"\nBenchmark failed at {accounts:,} rows: {exc}", file=sys.stderr)
            return 1
        size["median"] = {api: median_of([r[api] for r in size["rounds"]]) for api in args.api_list}
        sizes.append(size)
    latency = None
    if {"latency", "throttled"} & set(args.part_list):
        plan = LatencyPlan(
            rows=args.latency_rows,
            fields=args.fields,
            rounds=args.latency_rounds,
            concurrencies=args.concurrency_list if "latency" in args.part_list else (),
            page_latency=args.page_latency,
            request_latency=args.request_latency,
            jitter=args.jitter,
            throttle_rate=args.throttle_rate if "throttled" in args.part_list else 0,
            throttle_concurrency=max(args.concurrency_list),
        )
        try:
            latency = bench_latency(plan)
        except (RuntimeError, ValueError) as exc:
            print(f"\nBenchmark failed in the latency runs: {exc}", file=sys.stderr)
            return 1
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "memory_bytes": psutil.virtual_memory().total,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "git": _git_revision(),
        "parameters": {
            "sizes": args.size_list,
            "fields": args.fields,
            "rounds": [r for _, r in args.plan],
            "bookmark_burst": args.bookmark_burst,
            "apis": args.api_list,
            "parts": args.part_list,
            "latency_rows": args.latency_rows,
            "latency_rounds": args.latency_rounds,
            "concurrencies": list(args.concurrency_list),
            "page_latency_s": args.page_latency,
            "request_latency_s": args.request_latency,
            "jitter_fraction": args.jitter,
            "throttle_rate": args.throttle_rate,
        },
        "sizes": sizes,
        "latency": latency,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    result["bar_rules"] = {**BAR_RULES, **LATENCY_BAR_RULES}
    result["bars"] = bars(sizes) + (latency_bars(latency) if latency else [])
    result["ok"] = all(bar["ok"] for bar in result["bars"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    blocks = [latency_table(latency)] if latency else []
    tables = [latency_markdown(latency)] if latency else []
    print(table(result, blocks, tables))
    out.with_suffix(".md").write_text(markdown(result, tables) + "\n", encoding="utf-8")
    print(f"\nWrote {out} and {out.with_suffix('.md')}")
    broken = [f"{bar['bar']} [{bar['where']}]: {bar['detail']}" for bar in result["bars"] if not bar["ok"]]
    if broken:
        print("\nBar(s) broken:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
