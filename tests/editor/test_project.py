"""Issue 17, point 2: the editor's validation panel and Save check the project's mappings together."""

from __future__ import annotations

from tests.mappings import document, group
from tests.tap.test_project_mappings import ACCOUNTS, SEGMENT, project  # noqa: F401 (a fixture)


def test_the_editor_checks_the_mapping_with_the_projects_others(editor_factory, project):  # noqa: F811
    editor = editor_factory(ACCOUNTS, mapping_file=str(project / "mappings" / "accounts.json"))
    answer = editor.call("POST", "/api/validate", ACCOUNTS)
    assert answer.status_code == 200
    assert answer.json()["problems"] == [
        "tap-salesforce-groups-plans (mappings/plans.json): 1: Subscription__c -> org id: "
        f"{SEGMENT.replace('mappings/accounts.json', str(project / 'mappings' / 'accounts.json'))}"
    ]
    # The file being edited counts as the new version: its old content on disk is no clash.
    swapped = document(group("Account", "org id", "Id", (("Industry", "account name"), ("Name", "title"))))
    assert editor.call("POST", "/api/validate", swapped).json()["problems"] == []
    saved = editor.call("PUT", "/api/mapping", ACCOUNTS, headers={"If-Match": "*"})
    assert saved.status_code == 422
    assert "mappings/plans.json" in saved.json()["problems"][0]
