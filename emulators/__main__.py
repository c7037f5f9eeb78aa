"""Both emulators in the foreground, sharing one CA: ``.venv/bin/python -m emulators``.

Once both listen, prints three ``export`` lines on stdout (and writes them to ``--env-file``
when given): the two base URLs the ``demo`` environment of meltano.yml reads, and
``REQUESTS_CA_BUNDLE`` pointing at the one CA file that signed both servers. Serves until
SIGINT or SIGTERM. Credentials and inspection endpoints are listed on stderr.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from emulators._server import LocalCA
from emulators.amplitude import API_KEY, AmplitudeEmulator
from emulators.salesforce import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, SalesforceEmulator


def main(argv: list[str] | None = None) -> int:
    """Start both emulators, print the environment to use them, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--salesforce-port", type=int, default=8443, help="0 picks a free port")
    parser.add_argument("--amplitude-port", type=int, default=8444, help="0 picks a free port")
    parser.add_argument("--accounts", type=int, default=250, help="Account rows to generate")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ca-dir", type=Path, help="where ca.pem is written (default: a new temp dir)")
    parser.add_argument("--env-file", type=Path, help="also write the export lines to this file")
    args = parser.parse_args(argv)
    if args.env_file is not None:
        # A file left by an emulator that was killed names ports nobody listens on: whoever
        # waits for the file (README: `until test -f emulators.env`) must wait for this run's.
        args.env_file.unlink(missing_ok=True)

    ca = LocalCA(args.ca_dir)
    salesforce = SalesforceEmulator(
        host=args.host, port=args.salesforce_port, ca=ca, accounts=args.accounts, seed=args.seed
    )
    amplitude = AmplitudeEmulator(host=args.host, port=args.amplitude_port, ca=ca)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    salesforce.start()
    amplitude.start()
    try:
        env = {
            "SALESFORCE_EMULATOR_URL": salesforce.url,
            "AMPLITUDE_EMULATOR_URL": amplitude.url,
            "REQUESTS_CA_BUNDLE": str(ca.ca_path),
        }
        lines = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        if args.env_file is not None:
            _write_whole(args.env_file, lines)
        sys.stdout.write(lines)
        sys.stdout.flush()
        print(
            f"Salesforce emulator {salesforce.url}: {args.accounts} accounts; OAuth client_id "
            f"{CLIENT_ID}, client_secret {CLIENT_SECRET}, refresh_token {REFRESH_TOKEN}; "
            f"inspect {salesforce.url}/__emulator/info\n"
            f"Amplitude emulator {amplitude.url}/groupidentify: api_key {API_KEY}; "
            f"inspect {amplitude.url}/__emulator/groups and /__emulator/requests\n"
            "Ctrl-C stops both.",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    finally:
        amplitude.stop()
        salesforce.stop()
        ca.close()
        if args.env_file is not None:
            args.env_file.unlink(missing_ok=True)
    return 0


def _write_whole(path: Path, text: str) -> None:
    """Write ``path`` so that it appears complete (a reader polling for it never sees half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
