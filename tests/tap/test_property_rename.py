"""A renamed property reaches every existing group on the next run, as a new one does.

The mapping's fields stay the same, so a record of the fields read alone cannot tell; the
stream's state also records what each field is sent as. Found by the convergence test
(tests/convergence, a "rename property" mapping edit): before, only rows that changed
afterwards carried the new property name.
"""

from __future__ import annotations

import pytest

from tests.mappings import document, group
from tests.support.tap import run_tap


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_renamed_property_is_sent_to_every_group_once(salesforce, capsys, api_type):
    before = document(group("Account", "org id", "Id", (("Name", "name"), ("Industry", "industry"))))
    after = document(group("Account", "org id", "Id", (("Name", "account name"), ("Industry", "industry"))))
    first = run_tap(capsys, mapping=before, api_type=api_type)
    assert first.state["bookmarks"]["Account"]["sent_as"] == [
        ["org id", "industry", "industry"],
        ["org id", "name", "name"],
    ]
    second = run_tap(capsys, state=first.state, mapping=after, api_type=api_type)
    rows = second.records.get("Account", [])
    assert len(rows) == len(salesforce.org.rows("Account"))
    assert all("Name" in r and "Industry" not in r for r in rows)  # only the renamed one's field
    assert run_tap(capsys, state=second.state, mapping=after, api_type=api_type).records == {}


def test_state_from_before_sent_as_reads_nothing_again(salesforce, capsys):
    mapping = document(group("Account", "org id", "Id", (("Name", "name"),)))
    first = run_tap(capsys, mapping=mapping, api_type="rest")
    del first.state["bookmarks"]["Account"]["sent_as"]
    assert run_tap(capsys, state=first.state, mapping=mapping, api_type="rest").records == {}
