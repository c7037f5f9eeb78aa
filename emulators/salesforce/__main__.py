"""Run the Salesforce emulator in the foreground: ``python -m emulators.salesforce --port 8443``.

Prints the base URL on stdout (one line, flushed) once the server listens, then serves until
SIGINT or SIGTERM. The CA certificate clients must trust is written to ``CA_DIR/ca.pem``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .._server import LocalCA
from .app import SalesforceEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.salesforce", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--accounts", type=int, default=250, help="Account rows to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--page-size", type=int, default=2000, help="records per query page")
    parser.add_argument("--api-max", type=int, default=1_000_000, help="daily API request limit")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each query page")
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="± seconds around --latency")
    parser.add_argument("--ca-dir", type=Path, default=None, help="where to write ca.pem")
    parser.add_argument("--jwt-key-out", type=Path, default=None, help="write the JWT signing key (PEM) here")
    args = parser.parse_args(argv)

    emulator = SalesforceEmulator(
        host=args.host,
        port=args.port,
        ca=LocalCA(args.ca_dir),
        accounts=args.accounts,
        seed=args.seed,
        page_size=args.page_size,
        api_max=args.api_max,
    )
    emulator.set_latency(args.latency, args.latency_jitter)
    if args.jwt_key_out is not None:
        args.jwt_key_out.unlink(missing_ok=True)  # created private, never readable by others a moment
        with os.fdopen(os.open(args.jwt_key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as key:
            key.write(emulator.jwt_private_key_pem)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emulator.start()
    try:
        print(emulator.url, flush=True)
        print(
            f"salesforce emulator: {args.accounts} accounts, CA {emulator.ca_path}",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    finally:
        emulator.stop()
        emulator.ca.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
