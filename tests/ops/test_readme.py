"""README.md is the user's manual, and docs/ holds the rest of it.

The ```sh blocks of README.md, then of each of DOCS, run in order in one shell, in a fresh copy of the
project, against the emulators the README itself starts. A command that stops working fails this test.

Blocks fenced ```sh run as written. Blocks fenced ```sh placeholders hold the steps for a real
org; they run with PLACEHOLDERS below filled in with the emulators' values, plus AMPLITUDE_URL
(the one setting a real Amplitude project does not need). The browser's part of `connect` is
played by CONNECT (the command runs as written, with --no-browser and a free port; a script logs
in on the emulator's login page and follows the redirect, as the user would). The first steps
must leave meltano.yml as it was: a copy is taken after the first placeholders block. Blocks fenced ```yaml meltano.yml are
merged into the copy's meltano.yml where they appear, as the README asks the reader to do.
Blocks fenced ```sh postgres need a PostgreSQL server of their own (Debian's `postgresql`, which
.ci/run installs): where it is missing they are left out, and the test says so in one line.
Indented blocks are examples and do not run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from emulators.postgres import LocalPostgres, PostgresUnavailable
from tests.support.project import install_orchestrate

pytestmark = pytest.mark.e2e

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.M | re.S)
# The manual's parts, in the order their blocks run (docs/ continue where README.md stops).
DOCS = (
    "README.md",
    "docs/mapping.md",
    "docs/data.md",
    "docs/operations.md",
    "docs/benchmarks.md",
    "docs/development.md",
)
PLACEHOLDERS = {
    "<consumer key>": "emulator-client-id",
    "<consumer secret>": "emulator-client-secret",
    "<refresh token>": "emulator-refresh-token",
    "<login, test or My Domain host>": '"${SALESFORCE_EMULATOR_URL#https://}"',
    "<Amplitude API key>": "emulator-api-key",
    "<us or eu>": "us",
}
AMPLITUDE_URL = 'export TARGET_AMPLITUDE_GROUPS_API_URL="$AMPLITUDE_EMULATOR_URL/groupidentify"\n'
CONNECT_LINE = ".venv/bin/meltano invoke tap-salesforce-groups-mapping:connect\n"
CONNECT = """.venv/bin/meltano invoke tap-salesforce-groups-mapping:connect --no-browser --port 0 2> connect.log &
.venv/bin/python - <<'PY'
import html.parser, pathlib, re, time, requests
from emulators.salesforce import PASSWORD, USERNAME
for _ in range(600):
    found = re.search(r"Log in to Salesforce at: (\\S+)", pathlib.Path("connect.log").read_text())
    if found:
        break
    time.sleep(0.2)
page = requests.get(found.group(1), timeout=30)
fields = dict(re.findall(r'name="(\\w+)" value="([^"]*)"', page.text))
fields = {k: html.unescape(v) for k, v in fields.items()}
base = found.group(1).split("/services/")[0]
login = requests.post(base + "/services/oauth2/authorize", timeout=30, allow_redirects=False,
                      data={**fields, "username": USERNAME, "pw": PASSWORD, "action": "allow"})
requests.get(login.headers["Location"], timeout=30).raise_for_status()
PY
wait $!
cat connect.log >&2
"""
FIRST_STEPS_COPY = "cp meltano.yml .meltano-after-first-steps.yml\n"
MERGE = """.venv/bin/python - <<'PY'
import yaml
from pathlib import Path
path = Path("meltano.yml")
project = yaml.safe_load(path.read_text())
for kind, plugins in yaml.safe_load('''{block}''')["plugins"].items():
    project["plugins"].setdefault(kind, []).extend(plugins)
path.write_text(yaml.safe_dump(project, sort_keys=False))
PY
"""


def postgres_missing() -> str | None:
    """Why a ```sh postgres block cannot run here, or None."""
    try:
        LocalPostgres()
    except PostgresUnavailable as exc:
        return str(exc)
    return None


def readme_script(readme: str, postgres: bool = True) -> str:
    """One bash script from the README's runnable blocks, in order."""
    parts = [
        "set -euo pipefail\n",
        # The README starts the emulators in the background; stop them however the script ends.
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    ]
    for info, body in FENCE.findall(readme):
        if info == "sh" or (info == "sh postgres" and postgres):
            parts.append(body)
        elif info == "sh placeholders":
            filled = body
            for placeholder, value in PLACEHOLDERS.items():
                filled = filled.replace(placeholder, value)
            assert "<" not in re.sub(r"<<'?\w+'?", "", filled), f"unfilled placeholder in:\n{filled}"
            assert CONNECT_LINE in filled, "the first steps connect"
            parts += [AMPLITUDE_URL, filled.replace(CONNECT_LINE, CONNECT, 1)]
            parts.append(FIRST_STEPS_COPY)
        elif info == "yaml meltano.yml":
            parts.append(MERGE.format(block=body))
    return "".join(parts)


def test_every_readme_shell_block_runs(project_copy: Path):
    install_orchestrate()  # in the checkout first: the docs run it in the copy, which shares .venv
    readme = "\n".join((project_copy / name).read_text(encoding="utf-8") for name in DOCS)
    infos = [info for info, _ in FENCE.findall(readme)]
    assert infos.count("sh") >= 4 and "sh placeholders" in infos and "yaml meltano.yml" in infos
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_", "MELTANO_"))}
    env.pop("REQUESTS_CA_BUNDLE", None)  # the README's emulators bring their own CA
    missing = postgres_missing()
    if missing:
        print(f"the ```sh postgres blocks are left out: {missing}")
    original = (project_copy / "meltano.yml").read_text(encoding="utf-8")  # as checked out
    result = subprocess.run(
        ["bash", "-c", readme_script(readme, postgres=missing is None)],
        cwd=project_copy,
        env={**env, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    # The steps did what the README says they do.
    assert "Mapping OK: 2 mappings, 13 group properties." in result.stdout  # the demo mapping
    assert "Added 'Account -> org id' (3 properties) to mapping.json" in output  # scaffold from nothing
    assert "Mapping OK: 1 mappings, 3 group properties." in result.stdout
    assert output.count("Mapping verified against the org: OK") >= 2
    summaries = re.findall(r"Summary: (\d+) groups sent", output)
    # docs/operations.md "Scaling out": one shard per object of the mapping the tap reads (the
    # first steps' .env names mapping.json, which outranks the demo environment's).
    shards = re.findall(
        r"^(\w+)\tAccount\tdemo:tap-salesforce-groups-to-target-amplitude-groups:\1$", result.stdout, re.M
    )
    assert shards == ["account"], result.stdout[-2000:]
    # demo, prod, tap-jsonl; each shard one by one, then again under Dagster (a new database)
    assert len(summaries) == 3 + len(shards) * (2 if missing is None else 1), summaries
    assert all(int(n) > 0 for n in summaries), summaries
    assert "salesforce-to-amplitude" in result.stdout and "@hourly" in result.stdout  # schedule list
    assert (project_copy / "mapping.json").exists()
    # connect logged in through the emulator's login page and stored the refresh token.
    assert "Connected to 127.0.0.1 as integration@emulator.example" in output
    assert "TAP_SALESFORCE_GROUPS_REFRESH_TOKEN=" in (project_copy / ".env").read_text()
    # The first steps wrote .env only: meltano.yml is byte for byte what was checked out.
    assert (project_copy / ".meltano-after-first-steps.yml").read_text(encoding="utf-8") == original
    assert output.count("shard account: ") >= 1  # run one by one
    if missing is None:  # `dagster job execute` of every shard, then their state ids in Postgres
        assert "RUN_SUCCESS" in output
        assert result.stdout.count("demo:tap-salesforce-groups-to-target-amplitude-groups:account") >= 3
