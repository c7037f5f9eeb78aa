"""Both emulators plus the real `meltano` CLI.

What `make demo`, the end-to-end tests and `make bench` share.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from emulators._server import LocalCA
from emulators.amplitude import AmplitudeEmulator
from emulators.salesforce import SalesforceEmulator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TAP_TARGET = ("tap-salesforce-groups", "target-amplitude-groups")


class Emulators:
    """A Salesforce and an Amplitude emulator on loopback, sharing one generated CA."""

    def __init__(
        self, *, accounts: int = 40, seed: int = 7, page_size: int = 2000, **sf_options: Any
    ) -> None:
        self.ca = LocalCA()
        self.salesforce = SalesforceEmulator(
            ca=self.ca, accounts=accounts, seed=seed, page_size=page_size, **sf_options
        )
        self.amplitude = AmplitudeEmulator(ca=self.ca)

    def __enter__(self) -> Emulators:
        self.salesforce.start()
        self.amplitude.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.amplitude.stop()
        self.salesforce.stop()
        self.ca.close()

    def env(self) -> dict[str, str]:
        """Variables the `demo` environment of meltano.yml reads, plus the CA for `requests`."""
        return {
            "SALESFORCE_EMULATOR_URL": self.salesforce.url,
            "AMPLITUDE_EMULATOR_URL": self.amplitude.url,
            "REQUESTS_CA_BUNDLE": str(self.ca.ca_path),
        }


PLUGIN_ENV_PREFIXES = ("TAP_SALESFORCE_GROUPS_", "TARGET_AMPLITUDE_GROUPS_", "MELTANO_")


def sealed_environ() -> dict[str, str]:
    """This process's environment without any variable that could configure Meltano or the plugins."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(PLUGIN_ENV_PREFIXES)}


def meltano(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    base_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the `meltano` of this virtualenv in the project root; output is captured.

    ``base_env`` replaces this process's environment (default: inherited) under ``env``.
    """
    executable = Path(sys.executable).with_name("meltano")
    inherited = os.environ if base_env is None else base_env
    full_env = {**inherited, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **(env or {})}
    result = subprocess.run(
        [str(executable), *args],
        cwd=PROJECT_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        msg = f"meltano {' '.join(args)} exited {result.returncode}:\n{tail}"
        raise RuntimeError(msg)
    return result
