"""The editor's JSON API through real HTTP, against the Salesforce emulator (docs/SPEC.md §8a)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from groups_mapping import validate
from tap_salesforce_groups.mapping_cli import main
from tap_salesforce_groups.schema import NAME_OBJECT_FIELDS
from tests.mappings import document, group
from tests.support.emulators import SALESFORCE
from tests.support.tap import CONFIG, MAPPING

BIN = Path(sys.executable).parent


def test_objects_lists_only_queryable_objects(editor):
    # The global describe lists every sObject with a "queryable" flag; only those can be a FROM.
    # https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_describeGlobal.htm
    response = editor.call("GET", "/api/objects")
    assert response.status_code == 200
    names = [o["name"] for o in response.json()["objects"]]
    assert {"Account", "Subscription__c", "User"} <= set(names)
    assert "AggregateResult" not in names  # describable, but queryable is false
    subscription = next(o for o in response.json()["objects"] if o["name"] == "Subscription__c")
    assert subscription == {"name": "Subscription__c", "label": "Subscription", "custom": True}


def test_fields_offer_one_hop_paths_labels_and_name_warnings(editor):
    response = editor.call("GET", "/api/objects/Account/fields")
    assert response.status_code == 200
    fields = {f["path"]: f for f in response.json()["fields"]}
    # Direct fields, then one hop through each lookup (relationshipName + referenceTo).
    assert fields["Name"]["property"] == "Account Name"
    assert fields["Owner.Name"]["property"] == "Owner Full Name"
    assert fields["Owner.Name"]["relationship"] is True
    assert fields["Parent.Industry"]["property"] == "Parent Industry"
    assert not any(p.count(".") > 1 for p in fields)  # one hop only
    # The tap's own group name rule: an id never warns, a nillable or non-unique field does.
    assert fields["Id"]["name_warnings"] == []
    assert fields["Industry"]["name_warnings"] == [
        "group name field 'Industry' can be empty; rows without a value are skipped",
        "group name field 'Industry' is not unique; rows sharing a value update one group",
    ]
    document_fields = {f["path"] for f in editor.call("GET", "/api/objects/Document/fields").json()["fields"]}
    assert "Name" in document_fields
    assert "Body" not in document_fields  # base64: the tap cannot import it


def test_fields_through_a_polymorphic_lookup_are_the_name_objects(editor):
    # Case.OwnerId is a Group (queue) or a User; SOQL reads Owner.* through the Name object only.
    # https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm
    response = editor.call("GET", "/api/objects/Case/fields")
    assert response.status_code == 200
    owner = [f["path"] for f in response.json()["fields"] if f["path"].startswith("Owner.")]
    assert owner == [f"Owner.{name}" for name in NAME_OBJECT_FIELDS]
    # Offered paths pass verification, one-row read included. (Only those the emulator's User has:
    # it reads a polymorphic hop through User, which lacks Alias, Phone, Type, UserRoleId, ProfileId.)
    chosen = ("Owner.Name", "Owner.Email", "Owner.IsActive")
    document_ = document(group("Case", "case", "Id", tuple((p, p) for p in chosen)))
    assert editor.call("POST", "/api/verify", document_).json()["problems"] == []


def test_fields_of_an_unknown_or_malformed_object(editor):
    missing = editor.call("GET", "/api/objects/Nothing__c/fields")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Nothing__c: no such object, or not visible to this user"}
    malformed = editor.call("GET", "/api/objects/Account;DROP/fields")
    assert malformed.status_code == 400
    assert "not a Salesforce object name" in malformed.json()["error"]


def test_validate_returns_exactly_what_the_validate_command_prints(editor, tmp_path):
    broken = document(
        group("Account", "org id", "Id", (("Name", "name"), ("Industry", "name"), ("Name", "again"))),
        group("", "", "Id", ()),
    )
    response = editor.call("POST", "/api/validate", broken)
    assert response.status_code == 200
    problems = response.json()["problems"]
    assert len(problems) == 5
    assert problems == validate(broken)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**CONFIG, "mapping": broken}))
    printed = CliRunner().invoke(main, ["validate", "--config", str(config)]).output.splitlines()
    assert printed[1:] == [f"  - {p}" for p in problems]
    assert editor.call("POST", "/api/validate", MAPPING).json() == {"problems": []}


def test_verify_runs_the_same_checks_as_the_verify_command(editor, tmp_path):
    broken = document(
        group("Account", "org id", "Id", (("Name", "name"), ("Nope__c", "nope"), ("Owner.Nope", "x"))),
        group("Subscription__c", "subscription", "Name", (("Plan__c", "plan"),)),
        group("Nothing__c", "thing", "Id", (("Name", "name"),)),
    )
    response = editor.call("POST", "/api/verify", broken)
    assert response.status_code == 200
    result = response.json()
    assert result["problems"] == [
        "Account: no field 'Nope__c' on Account",
        "Account: no field 'Nope' on User (in 'Owner.Nope')",
        "Nothing__c: no such object, or not visible to this user",
    ]
    assert result["warnings"] == [
        "2: Subscription__c -> subscription: group name field 'Name' is not unique; "
        "rows sharing a value update one group"
    ]
    # The `verify` command (tap-salesforce-groups-mapping verify) reports the same lines.
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**CONFIG, "mapping": broken}))
    run = subprocess.run(
        [str(BIN / "tap-salesforce-groups-mapping"), "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
        check=False,
    )
    assert run.returncode == 1
    assert (
        run.stderr.splitlines()[-3:]
        == [
            "mapping does not match the Salesforce org:",
            *[f"  - {p}" for p in result["problems"]],
        ][-3:]
    )
    assert result["warnings"][0] in run.stderr

    SALESFORCE.clear_requests()
    ok = editor.call("POST", "/api/verify", MAPPING).json()
    assert ok["problems"] == []
    assert ok["summary"] == "Mapping verified against the org: OK (2 objects, one row of each read)."
    # Like `verify`, it reads one row of each object (the tap's connection test).
    queried = [r["query"] for r in SALESFORCE.requests if "/query" in r["path"]]
    assert any("FROM Account" in (q or "") for q in queried)
    assert any("FROM Subscription__c" in (q or "") for q in queried)


def test_verify_reports_mapping_problems_too(editor):
    result = editor.call("POST", "/api/verify", {"version": 1, "mappings": []}).json()
    assert result["problems"] == ["mapping: 'mappings' must be a non-empty list of group mappings"]


def test_get_mapping_reads_the_file_with_its_problems(editor_factory):
    editor = editor_factory()
    got = editor.call("GET", "/api/mapping").json()
    assert got == {
        "mapping": MAPPING,
        "mapping_file": str(editor.mapping_file),
        "exists": True,
        "problems": [],
    }
    editor.mapping_file.write_text('{"version": 1, "mappings": [')
    broken = editor.call("GET", "/api/mapping").json()
    assert broken["mapping"] is None
    assert broken["problems"] == ["not valid JSON: Expecting value at line 1 column 29"]


def test_get_mapping_of_a_new_file(editor_factory):
    editor = editor_factory(file_mapping=None)
    got = editor.call("GET", "/api/mapping").json()
    assert got["exists"] is False
    assert got["mapping"] == {"version": 1, "mappings": []}
    assert got["problems"] == ["mapping: 'mappings' must be a non-empty list of group mappings"]


def test_put_mapping_saves_atomically_and_keeps_a_backup(editor):
    before = editor.mapping_file.read_text()
    changed = document(group("Account", "org id", "Id", (("Name", "account name"), ("Industry", "  "))))
    changed["mappings"][0]["properties"][1] = {"field": "Industry"}  # property defaults to the field
    tag = editor.call("GET", "/api/mapping").headers["ETag"]
    response = editor.call("PUT", "/api/mapping", changed, headers={"If-Match": tag})
    assert response.status_code == 200, response.text
    expected = document(
        group("Account", "org id", "Id", (("Name", "account name"), ("Industry", "Industry")))
    )
    assert response.json() == {
        "saved": str(editor.mapping_file),
        "backup": str(editor.mapping_file) + ".bak",
        "mapping": expected,
    }
    assert json.loads(editor.mapping_file.read_text()) == expected  # normalised, as `export` prints
    assert Path(str(editor.mapping_file) + ".bak").read_text() == before
    assert sorted(p.name for p in editor.mapping_file.parent.iterdir()) == [
        "mapping.json",
        "mapping.json.bak",
    ]  # no temporary file left behind
    assert editor.call("GET", "/api/mapping").json()["mapping"] == expected


def test_put_invalid_mapping_is_422_and_leaves_the_file_untouched(editor):
    before = editor.mapping_file.read_bytes()
    stamp = editor.mapping_file.stat().st_mtime_ns
    bad = document(group("Account", "", "Id", ()))
    tag = editor.call("GET", "/api/mapping").headers["ETag"]
    response = editor.call("PUT", "/api/mapping", bad, headers={"If-Match": tag})
    assert response.status_code == 422
    assert response.json()["problems"] == validate(bad)
    assert "the file was not changed" in response.json()["error"]
    assert editor.mapping_file.read_bytes() == before
    assert editor.mapping_file.stat().st_mtime_ns == stamp
    assert not Path(str(editor.mapping_file) + ".bak").exists()


def test_put_with_an_inline_mapping_setting_is_refused(editor_factory):
    editor = editor_factory(file_mapping=None, mapping_file=None, mapping=MAPPING)
    got = editor.call("GET", "/api/mapping").json()
    assert got["mapping"] == MAPPING
    assert got["mapping_file"] is None
    response = editor.call("PUT", "/api/mapping", MAPPING)
    assert response.status_code == 409
    assert "set 'mapping_file' to save from the editor" in response.json()["error"]


def test_put_mapping_needs_the_version_it_replaces(editor):
    # RFC 9110 §13.1.1 (If-Match), RFC 6585 §3 (428 Precondition Required): a save names the
    # version it was based on, so two tabs, or a tab and `scaffold --write` or a `git pull`,
    # cannot silently overwrite each other.
    got = editor.call("GET", "/api/mapping")
    tag = got.headers["ETag"]
    assert tag == '"' + hashlib.sha256(editor.mapping_file.read_bytes()).hexdigest()[:32] + '"'
    assert editor.call("HEAD", "/api/mapping").headers["ETag"] == tag
    before = editor.mapping_file.read_bytes()
    mine = document(group("Account", "org id", "Id", (("Name", "mine"),)))

    missing = editor.call("PUT", "/api/mapping", mine)
    assert missing.status_code == 428
    assert missing.json()["error"].startswith("PUT /api/mapping needs If-Match with the ETag of GET")
    assert editor.mapping_file.read_bytes() == before

    # Another writer (a second tab's save, `scaffold --write`, a `git pull`) changes the file.
    theirs = document(group("Account", "org id", "Id", (("Name", "theirs"),)))
    editor.mapping_file.write_text(json.dumps(theirs))
    stale = editor.call("PUT", "/api/mapping", mine, headers={"If-Match": tag})
    assert stale.status_code == 412
    assert json.loads(editor.mapping_file.read_text()) == theirs  # untouched
    assert not Path(f"{editor.mapping_file}.bak").exists()
    body = stale.json()
    assert "changed since this page read it" in body["error"]
    assert body["current"] == editor.call("GET", "/api/mapping").json()  # to reload or merge
    assert body["current"]["mapping"] == theirs
    assert stale.headers["ETag"] == body["etag"] == editor.call("GET", "/api/mapping").headers["ETag"]

    saved = editor.call("PUT", "/api/mapping", mine, headers={"If-Match": body["etag"]})
    assert saved.status_code == 200
    assert json.loads(editor.mapping_file.read_text()) == mine
    assert saved.headers["ETag"] == editor.call("GET", "/api/mapping").headers["ETag"] != body["etag"]
    # The old tag no longer matches; a list with the current one does; W/ tags never (strong).
    assert editor.call("PUT", "/api/mapping", mine, headers={"If-Match": tag}).status_code == 412
    weak = editor.call("PUT", "/api/mapping", mine, headers={"If-Match": f"W/{saved.headers['ETag']}"})
    assert weak.status_code == 412
    listed = editor.call("PUT", "/api/mapping", mine, headers={"If-Match": f'"x", {saved.headers["ETag"]}'})
    assert listed.status_code == 200
    assert editor.call("PUT", "/api/mapping", mine, headers={"If-Match": "*"}).status_code == 200
    # If-None-Match: * creates a file only where there is none.
    assert editor.call("PUT", "/api/mapping", mine, headers={"If-None-Match": "*"}).status_code == 412


def test_two_tabs_cannot_overwrite_each_other(editor):
    first = editor.call("GET", "/api/mapping").headers["ETag"]
    second = editor.call("GET", "/api/mapping").headers["ETag"]
    a = document(group("Account", "org id", "Id", (("Name", "from tab a"),)))
    b = document(group("Account", "org id", "Id", (("Name", "from tab b"),)))
    assert editor.call("PUT", "/api/mapping", a, headers={"If-Match": first}).status_code == 200
    lost = editor.call("PUT", "/api/mapping", b, headers={"If-Match": second})
    assert lost.status_code == 412
    assert lost.json()["current"]["mapping"] == a
    assert json.loads(editor.mapping_file.read_text()) == a


def test_a_new_file_is_created_with_if_none_match(editor_factory):
    editor = editor_factory(file_mapping=None)
    got = editor.call("GET", "/api/mapping")
    assert "ETag" not in got.headers  # no file, no version
    assert editor.call("PUT", "/api/mapping", MAPPING, headers={"If-Match": "*"}).status_code == 412
    created = editor.call("PUT", "/api/mapping", MAPPING, headers={"If-None-Match": "*"})
    assert created.status_code == 200
    assert json.loads(editor.mapping_file.read_text()) == MAPPING
    assert created.headers["ETag"] == editor.call("GET", "/api/mapping").headers["ETag"]
