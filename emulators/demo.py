"""`make demo`: emulators up, two real `meltano run`s (full, then incremental), what Amplitude got.

``python -m emulators.demo --editor`` instead opens the mapping editor under Meltano against a
demo Salesforce emulator, on a copy of the demo mapping, until Ctrl-C. Everything runs in this
process or as its children, so nothing is left running afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators, sealed_environ
from emulators.pipeline import meltano as run_meltano

EDITOR_COMMAND = ".venv/bin/python -m emulators.demo --editor"


def _summary(output: str) -> str:
    match = re.search(r"Summary[^\n]*", output)
    return match.group(0).split(" cmd_type=")[0] if match else "(no summary line)"


def _cell(value: Any, width: int = 30) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def print_groups(
    groups: dict[str, dict[str, dict[str, Any]]], only: set[tuple[str, str]] | None = None
) -> None:
    for group_type, members in sorted(groups.items()):
        shown = {v: p for v, p in members.items() if only is None or (group_type, v) in only}
        if not shown:
            continue
        print(f"\n  group type '{group_type}': {len(shown)} groups")
        columns = sorted({k for props in shown.values() for k in props})
        print("    " + " | ".join(["group_value", *columns]))
        for value, props in sorted(shown.items()):
            print("    " + " | ".join([value, *(_cell(props.get(c, "∅")) for c in columns)]))


def main() -> int:
    with Emulators(accounts=12) as emu, tempfile.TemporaryDirectory(prefix="demo-") as tmp:
        # Sealed: the demo can only reach the emulators. Meltano reads an empty env file instead
        # of the project's .env, and no TAP_/TARGET_/MELTANO_ variable of this shell reaches it,
        # so real credentials or URLs set for production can never be used by the demo.
        empty_env_file = Path(tmp) / "demo.env"
        empty_env_file.write_text("")
        sealed = sealed_environ()
        # A private system database: the demo starts from an empty bookmark every time.
        env = {**emu.env(), "MELTANO_DATABASE_URI": f"sqlite:///{Path(tmp) / 'meltano.db'}"}

        def meltano(*args: str, env: dict[str, str]) -> Any:
            return run_meltano(f"--env-file={empty_env_file}", *args, env=env, base_env=sealed)

        print(f"Salesforce emulator: {emu.salesforce.url}   Amplitude emulator: {emu.amplitude.url}")
        print(
            "Each Salesforce row becomes an Amplitude group: an Account is the group 'org id' = its Id,\n"
            "a Subscription__c the group 'subscription' = its Name; demo/mapping.json picks the fields\n"
            "that become the group's properties. In the tables, ∅ means the group has no such property."
        )
        print("Installing the plugins (meltano install)…")
        meltano("install", env={"MELTANO_DATABASE_URI": env["MELTANO_DATABASE_URI"]})

        print("\n== Run 1: full sync ==")
        run = meltano("--environment=demo", "run", *TAP_TARGET, env=env)
        print("  " + _summary(run.stderr + run.stdout))
        print_groups(emu.amplitude.groups())

        org = emu.salesforce.org
        accounts = org.rows("Account", include_deleted=False)
        changed = accounts[:2]
        org.update("Account", changed[0]["Id"], Name="Renamed Ltd — demo", AnnualRevenue=4242.0)
        org.update("Account", changed[1]["Id"], Industry=None)
        org.soft_delete("Account", accounts[2]["Id"])
        new_id = org.insert(
            "Account", {"Name": "Brand New Co", "Industry": "Energy", "OwnerId": accounts[0]["OwnerId"]}
        )
        print("\n== Changed in Salesforce ==")
        print(
            f"  renamed {changed[0]['Id']}, cleared Industry of {changed[1]['Id']}, "
            f"soft-deleted {accounts[2]['Id']}, inserted {new_id}"
        )

        before = len(emu.amplitude.requests)
        print("\n== Run 2: incremental ==")
        run = meltano("--environment=demo", "run", *TAP_TARGET, env=env)
        print("  " + _summary(run.stderr + run.stdout))
        sent = {
            (i["group_type"], i["group_value"])
            for r in emu.amplitude.requests[before:]
            for i in (r.get("payload") or [])
        }
        print(f"  groups sent by the incremental run: {len(sent)}")
        print(
            "  Only rows changed since the bookmark were read and sent: the renamed account, the one\n"
            "  whose Industry was cleared (sent as $unset, hence ∅), and the new one. The soft-deleted\n"
            "  account was read but left as it was in Amplitude: deleted_records is 'ignore' by default\n"
            "  ('unset' clears its properties, 'flag' sets deleted = true)."
        )
        print_groups(emu.amplitude.groups(), only=sent)

        state = meltano(
            "--environment=demo",
            "state",
            "get",
            "demo:tap-salesforce-groups-to-target-amplitude-groups",
            env=env,
        )
        print("\n== Bookmarks kept by Meltano ==")
        for stream, bookmark in json.loads(state.stdout)["singer_state"]["bookmarks"].items():
            print(f"  {stream}: {bookmark.get('replication_key')} >= {bookmark.get('replication_key_value')}")
    print("\nDemo finished; emulators stopped.")
    print(
        f"\nOpen the mapping editor against a demo Salesforce emulator (Ctrl-C stops it):\n  {EDITOR_COMMAND}"
    )
    return 0


def scratch_project(tmp: Path) -> Path:
    """A Meltano project in ``tmp`` with the checkout's meltano.yml and installed plugins.

    The editor's Sync cadence control writes the meltano.yml of the project it runs in; the demo
    must leave the checkout's own untouched, so it runs in this copy.
    """
    project = tmp / "project"
    (project / ".meltano").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "meltano.yml", project / "meltano.yml")
    for kind in ("extractors", "loaders"):
        (project / ".meltano" / kind).symlink_to(PROJECT_ROOT / ".meltano" / kind)
    return project


def editor(args: list[str]) -> int:
    """The mapping editor under Meltano against a demo emulator, sealed like the demo, until Ctrl-C."""
    with Emulators(accounts=12) as emu, tempfile.TemporaryDirectory(prefix="demo-editor-") as tmp:
        empty_env_file = Path(tmp) / "demo.env"
        empty_env_file.write_text("")
        mapping = Path(tmp) / "mapping.json"
        shutil.copy(PROJECT_ROOT / "demo" / "mapping.json", mapping)
        env = {
            **sealed_environ(),
            **emu.env(),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{Path(tmp) / 'meltano.db'}",
            "TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(mapping),
        }
        meltano = [str(Path(sys.executable).with_name("meltano")), f"--env-file={empty_env_file}"]
        if not (PROJECT_ROOT / ".meltano" / "extractors" / "tap-salesforce-groups").exists():
            print("Installing the tap (meltano install)…", flush=True)
            run_meltano(*meltano[1:], "install", "extractor", "tap-salesforce-groups", env=env, base_env=env)
        project = scratch_project(Path(tmp))
        print(
            f"Salesforce emulator: {emu.salesforce.url}; editing a copy of demo/mapping.json; "
            f"the Sync cadence changes a scratch copy of meltano.yml ({project / 'meltano.yml'})",
            flush=True,
        )
        command = [*meltano, "--environment=demo", "invoke", "tap-salesforce-groups:editor", *args]
        process = subprocess.Popen(command, cwd=project, env=env)
        interrupted = False
        while True:
            try:
                process.wait()
                break
            except KeyboardInterrupt:
                interrupted = True  # the editor got the same Ctrl-C: wait for it to stop
    print("Editor demo finished; emulator stopped.")
    return 0 if interrupted else process.returncode


def entry(argv: list[str]) -> int:
    if argv[:1] == ["--editor"]:
        return editor(argv[1:])
    return main()


if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
