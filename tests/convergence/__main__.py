"""``make soak``: convergence histories for ``--minutes``, or the one history of ``--seed``."""

from __future__ import annotations

import argparse
import sys

from tests.convergence.harness import ConvergenceFailure, soak


def main(argv: list[str] | None = None) -> int:
    """Run histories; print each seed, then a summary line, or the failing history and exit 1."""
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to run histories (default 30)")
    parser.add_argument("--seed", type=int, default=None, help="replay the one history of this seed")
    parser.add_argument("--steps", type=int, default=12, help="steps per history (default 12)")
    parser.add_argument("--verbose", action="store_true", help="print each history as it passes")
    args = parser.parse_args(argv)
    try:
        summary = soak(
            seconds=args.minutes * 60,
            seed=args.seed,
            steps=args.steps,
            out=lambda s: print(s, flush=True),
            verbose=args.verbose,
        )
    except ConvergenceFailure as exc:
        print(exc, file=sys.stderr)
        return 1
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
