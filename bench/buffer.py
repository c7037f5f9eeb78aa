"""``python -m bench.buffer``.

Meltano's own peak memory with the project's ``elt.buffer_size`` and with Meltano's default, one full REST run
each at the same size.

    python -m bench.buffer --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.mapping import pick_fields, write_mapping
from bench.runner import MELTANO, BenchEmulators, Context, meltano_run
from emulators.pipeline import meltano

MB = 1024 * 1024
MELTANO_DEFAULT = 104_857_600  # 100 MiB, Meltano's own default for elt.buffer_size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.buffer", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Account rows (default 1000000)")
    parser.add_argument("--out", default="bench-results/buffer.json", help="JSON results file")
    args = parser.parse_args(argv)
    print(f"meltano install ({MELTANO})…", flush=True)
    results = {}
    with BenchEmulators(accounts=args.rows) as emu, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        meltano("install", env={"MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}"})
        mapping = write_mapping(workdir / "mapping.json", pick_fields(12, emu.salesforce.org.describe))
        env = {
            **emu.env(),
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(mapping),
            "TARGET_AMPLITUDE_GROUPS_MAPPING_FILE": str(mapping),
            "TAP_SALESFORCE_GROUPS_API_TYPE": "rest",
        }
        for label, size in (("meltano.yml (8 MiB)", None), ("Meltano's default (100 MiB)", MELTANO_DEFAULT)):
            override = {"MELTANO_ELT_BUFFER_SIZE": str(size)} if size else {}
            ctx = Context(emu, {**env, **override}, mapping, workdir, timeout=max(900.0, args.rows / 50))
            emu.amplitude.reset()
            print(f"  {args.rows:,} rows, elt.buffer_size {label}: full run…", flush=True)
            run = meltano_run(ctx, "buffer", "--full-refresh")
            results[label] = {
                key: run[key]
                for key in ("wall_s", "peak_rss_tap_bytes", "peak_rss_target_bytes", "peak_rss_meltano_bytes")
            }
            print(
                f"    wall {run['wall_s']:.0f} s, peak RSS meltano {run['peak_rss_meltano_bytes'] / MB:.0f} MB, "
                f"tap {run['peak_rss_tap_bytes'] / MB:.0f} MB, target {run['peak_rss_target_bytes'] / MB:.0f} MB",
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": args.rows, "runs": results}, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
