"""A mapping edit takes effect on the very next `meltano run` (issue 16, item 5).

Meltano caches the discovered catalog under a key made of the settings, and `mapping_file` is a
path, so an edited file used to meet a stale catalog: a new object was skipped as deselected, a
new field failed the run. meltano.yml sets `use_cached_catalog: false` (meltano/meltano PR #8518),
and the tap backfills new fields to every existing group without a flag.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulators.pipeline import TAP_TARGET, Emulators, meltano
from tests.mappings import document, group

pytestmark = pytest.mark.e2e


def test_a_new_field_and_a_new_object_reach_amplitude_on_the_next_run(
    meltano_env: dict[str, str], tmp_path: Path
) -> None:
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(document(group("Account", "org id", "Id", (("Name", "name"),)))))
    with Emulators(accounts=40) as emu:
        env = {
            **meltano_env,
            **emu.env(),
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(mapping_file),
            "TARGET_AMPLITUDE_GROUPS_MAPPING_FILE": str(mapping_file),
        }

        def run() -> str:
            result = meltano("--environment=demo", "run", *TAP_TARGET, env=env, check=False)
            output = result.stdout + result.stderr
            assert result.returncode == 0, output[-3000:]
            assert "Skipping deselected stream" not in output
            return output

        run()
        org = emu.salesforce.org
        accounts = org.rows("Account", include_deleted=False)
        assert all(set(emu.amplitude.groups()["org id"][a["Id"]]) == {"name"} for a in accounts)

        # The editor's Save, `scaffold --write` or a hand edit: the same path, new content.
        mapping_file.write_text(
            json.dumps(
                document(
                    group("Account", "org id", "Id", (("Name", "name"), ("Industry", "industry"))),
                    group("Subscription__c", "subscription", "Name", (("Plan__c", "plan"),)),
                )
            )
        )
        run()
        groups = emu.amplitude.groups()
        for account in accounts:  # every existing group got the new property, no flag needed
            assert groups["org id"][account["Id"]].get("industry") == account["Industry"]
        subscriptions = org.rows("Subscription__c", include_deleted=False)
        assert {s["Name"] for s in subscriptions} <= set(groups["subscription"])

        before = len(emu.amplitude.requests)
        run()
        assert len(emu.amplitude.requests) == before  # and then nothing more to send
