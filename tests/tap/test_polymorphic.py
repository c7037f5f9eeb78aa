"""Issue 7, problem 4: polymorphic lookups read through the Name object, per row, on both paths.

The tap runs against the emulator, whose Case owners include queues (Group rows) and whose
Task rows relate (What) to Accounts, Subscriptions, Cases or nothing and concern (Who) a
Contact, a Lead or nobody. Sources:
- A polymorphic relationship is read through the Name object, which has only its own fields:
  https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_and_polymorph_keys.htm
- Task.WhoId (Contact or Lead, "Who") and Task.WhatId (objects with activities, "What"):
  https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_task.htm
"""

from __future__ import annotations

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_salesforce_groups.tap import TapSalesforceGroups
from tests.mappings import document, group
from tests.parents import parent_names
from tests.support.tap import CONFIG, run_tap, same_records

TASKS = document(
    group("Task", "task", "Id", (("Subject", "subject"), ("What.Name", "related to"), ("Who.Name", "person")))
)
CASES = document(
    group(
        "Case",
        "case",
        "Id",
        (("CaseNumber", "number"), ("Owner.Name", "owner"), ("Owner.FirstName", "first")),
    )
)


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_task_what_and_who_name_each_row_s_own_parent(salesforce, capsys, api_type):
    run = run_tap(capsys, mapping=TASKS, api_type=api_type)
    assert run.exit_code == 0
    names = parent_names(salesforce.org)
    tasks = {t["Id"]: t for t in salesforce.org.rows("Task")}
    records = run.records["Task"]
    assert len(records) == len(tasks)
    kinds = set()
    for record in records:
        task = tasks[record["Id"]]
        for path, ref in (("What.Name", task["WhatId"]), ("Who.Name", task["WhoId"])):
            kind, name = names[ref] if ref is not None else (None, None)
            assert record[path] == name, (record["Id"], path)
            kinds.add((path, kind))
    # Every kind of parent was read, including a Subscription__c and no parent at all.
    assert {("What.Name", "Subscription__c"), ("What.Name", "Account"), ("What.Name", None)} <= kinds
    assert {("Who.Name", "Contact"), ("Who.Name", "Lead"), ("Who.Name", None)} <= kinds


def test_task_records_are_byte_identical_rest_and_bulk(salesforce, capsys):
    rest = run_tap(capsys, mapping=TASKS, api_type="rest")
    bulk = run_tap(capsys, mapping=TASKS, api_type="bulk")
    assert same_records(rest.records, bulk.records)


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_queue_owned_cases_carry_the_queue_s_name(salesforce, capsys, api_type):
    run = run_tap(capsys, mapping=CASES, api_type=api_type)
    assert run.exit_code == 0
    names = parent_names(salesforce.org)
    users = {u["Id"]: u for u in salesforce.org.rows("User")}
    owners = {c["Id"]: c["OwnerId"] for c in salesforce.org.rows("Case")}
    queued = 0
    for record in run.records["Case"]:
        kind, name = names[owners[record["Id"]]]
        assert record["Owner.Name"] == name
        if kind == "Group":
            queued += 1
            assert record["Owner.FirstName"] is None  # a Name-object field a queue has no value for
        else:
            assert record["Owner.FirstName"] == users[owners[record["Id"]]]["FirstName"]
    assert queued >= 5


def test_case_records_are_byte_identical_rest_and_bulk(salesforce, capsys):
    rest = run_tap(capsys, mapping=CASES, api_type="rest")
    bulk = run_tap(capsys, mapping=CASES, api_type="bulk")
    assert same_records(rest.records, bulk.records)
    assert any(r["Owner.Name"] == "Support Queue" for r in rest.records["Case"])


@pytest.mark.parametrize(("path", "relationship"), [("What.Industry", "What"), ("Who.AccountId", "Who")])
def test_task_fields_outside_the_name_object_are_refused_at_verification(salesforce, path, relationship):
    mapping = document(group("Task", "task", "Id", ((path, "x"),)))
    with pytest.raises(ConfigValidationError) as exc:
        TapSalesforceGroups(config={**CONFIG, "mapping": mapping})
    (problem,) = exc.value.errors
    assert f"'{path}' goes through the polymorphic lookup {relationship} (" in problem
    assert ", ".join(DOCUMENTED_NAME_FIELDS) in problem
    if relationship == "What":
        assert "(Account or Case or Subscription__c)" in problem


# The Name object's fields, as the Object Reference ("Name") lists them; the tap and the
# emulator each have their own copy, written from that page.
DOCUMENTED_NAME_FIELDS = [
    "Alias",
    "Email",
    "FirstName",
    "Id",
    "IsActive",
    "LastName",
    "LastReferencedDate",
    "LastViewedDate",
    "MiddleName",
    "Name",
    "NameOrAlias",
    "Phone",
    "ProfileId",
    "RecordTypeId",
    "Title",
    "Type",
    "UserRoleId",
    "Username",
]


def test_tap_and_emulator_list_the_documented_name_fields():
    from emulators.salesforce.schema import NAME_OBJECT
    from tap_salesforce_groups.schema import NAME_OBJECT_FIELDS

    assert sorted(NAME_OBJECT_FIELDS) == DOCUMENTED_NAME_FIELDS
    assert sorted(f.name for f in NAME_OBJECT.fields) == DOCUMENTED_NAME_FIELDS


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_every_documented_name_field_reads_after_a_polymorphic_hop(salesforce, capsys, api_type):
    fields = [f"Owner.{name}" for name in DOCUMENTED_NAME_FIELDS]
    mapping = document(group("Case", "case", "Id", tuple((f, f) for f in fields)))
    run = run_tap(capsys, mapping=mapping, api_type=api_type)
    assert run.exit_code == 0
    assert set(fields) <= set(run.schemas["Case"]["schema"]["properties"])
    assert run.schemas["Case"]["schema"]["properties"]["Owner.LastViewedDate"]["format"] == "date-time"
    users = {u["Id"]: u for u in salesforce.org.rows("User")}
    cases = {c["Id"]: c for c in salesforce.org.rows("Case")}
    kinds = set()
    for record in run.records["Case"]:
        owner = cases[record["Id"]]["OwnerId"]
        user = users.get(owner)
        kinds.add(record["Owner.Type"])
        assert record["Owner.Id"] == owner
        assert record["Owner.NameOrAlias"] == record["Owner.Name"]
        assert record["Owner.Username"] == (user["Username"] if user else None)
        assert record["Owner.IsActive"] == (user["IsActive"] if user else None)
    assert {"User", "Queue"} <= kinds
