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
    if not args.size_list or min(args.size_list) < 1 or args.fields < 1 or min(rounds) < 1:
        parser.error("sizes, --fields and --rounds must be positive")
    args.api_list = [a.strip() for a in args.apis.split(",") if a.strip()]
    if not args.api_list or not set(args.api_list) <= {"rest", "bulk"}:
        parser.error("--apis takes rest, bulk or both (the raw floors read one or the other)")
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
        },
        "sizes": sizes,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    result["bar_rules"] = BAR_RULES
    result["bars"] = bars(sizes)
    result["ok"] = all(bar["ok"] for bar in result["bars"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    print(table(result))
    out.with_suffix(".md").write_text(markdown(result) + "\n", encoding="utf-8")
    print(f"\nWrote {out} and {out.with_suffix('.md')}")
    broken = [f"{bar['bar']} [{bar['where']}]: {bar['detail']}" for bar in result["bars"] if not bar["ok"]]
    if broken:
        print("\nBar(s) broken:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
