"""From records to identifications: typed values, nulls, deletions, skips, last write wins."""

import datetime as dt
import decimal
import logging

import pytest

from groups_mapping import parse_mapping
from target_amplitude_groups.identify import BadValue, IdentificationBuilder, Options, Skip, to_amplitude
from tests.mappings import document, group

MAPPING = parse_mapping(
    document(
        group(
            "Account",
            "org id",
            "Id",
            (
                ("Name", "name"),
                ("CreatedDate", "date"),
                ("AnnualRevenue", "revenue"),
                ("IsActive__c", "active"),
                ("Owner.Name", "owner"),
            ),
        )
    )
).mappings


def builder(**options):
    return IdentificationBuilder(Options(**options), logging.getLogger("test"))


def test_values_keep_their_types_and_dates_become_iso_strings():
    record = {
        "Id": "001A",
        "Name": "Ünïcødé 東京",
        "CreatedDate": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "AnnualRevenue": decimal.Decimal("1250000.50"),
        "IsActive__c": False,
        "Owner.Name": None,
    }
    ident = builder().build(MAPPING[0], record)
    assert ident == {
        "group_type": "org id",
        "group_value": "001A",
        "group_properties": {
            "$set": {
                "name": "Ünïcødé 東京",
                "date": "2025-01-02T03:04:05.000+00:00",
                "revenue": 1250000.5,
                "active": False,
            },
            "$unset": {"owner": "-"},
        },
    }


def test_null_values_skip_sends_no_unset():
    ident = builder(null_values="skip").build(MAPPING[0], {"Id": "1", "Name": "A"})
    assert ident["group_properties"] == {"$set": {"name": "A"}}


def test_to_amplitude_conversions():
    assert to_amplitude(dt.date(2025, 5, 1)) == "2025-05-01"
    assert to_amplitude(dt.datetime(2025, 5, 1, 1, 2, 3)) == "2025-05-01T01:02:03.000+00:00"
    assert to_amplitude(decimal.Decimal(3)) == 3
    assert to_amplitude({"city": "Paris", "state": None}) == {"city": "Paris"}
    assert to_amplitude(decimal.Decimal("1E+20")) == 10**20  # integers stay exact
    assert to_amplitude(2**70) == 2**70


# Issue 6, point 15 and 19: values with no faithful JSON form are refused one by one.
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (decimal.Decimal("NaN"), "not a finite number"),
        (decimal.Decimal("1e5000"), "too large"),
        (decimal.Decimal("1e999999999"), "too large"),  # int() of it would run for minutes
        ("bad \ud800 surrogate", "lone surrogate"),
        ({"city": "\udfff"}, "lone surrogate"),
    ],
)
def test_values_with_no_json_form_are_refused(value, reason):
    with pytest.raises(BadValue, match=reason):
        to_amplitude(value)


def test_a_bad_value_is_left_out_and_the_rest_of_the_group_sent():
    b = builder()
    ident = b.build(
        MAPPING[0], {"Id": "1", "Name": "ok", "AnnualRevenue": float("nan"), "Owner.Name": "\ud800"}
    )
    assert ident["group_properties"] == {"$set": {"name": "ok"}}
    assert [(p.group_value, p.property) for p in b.bad_values] == [("1", "revenue"), ("1", "owner")]


def test_missing_keys_are_left_alone_and_only_explicit_nulls_unset():
    # Issue 6, point 14: Singer records may omit keys; absent is not null.
    ident = builder().build(MAPPING[0], {"Id": "1", "Name": "B", "Owner.Name": None})
    assert ident["group_properties"] == {"$set": {"name": "B"}, "$unset": {"owner": "-"}}
    assert builder().build(MAPPING[0], {"Id": "1"}) is None


def test_later_records_of_a_group_merge_over_earlier_ones():
    records = [
        {"Id": "a1", "Name": "A", "AnnualRevenue": 7, "Owner.Name": None},
        {"Id": "a1", "Name": "B", "Owner.Name": "Ann"},
    ]
    (ident,), _, _ = builder().build_all(MAPPING, records, "Account")
    assert ident["group_properties"] == {"$set": {"name": "B", "revenue": 7, "owner": "Ann"}}


def test_group_values_are_written_as_json_writes_them():
    assert builder().build(MAPPING[0], {"Id": True, "Name": "x"})["group_value"] == "true"
    with pytest.raises(Skip, match="not a finite number"):
        builder().build(MAPPING[0], {"Id": float("nan"), "Name": "x"})


def test_long_strings_are_truncated_and_counted():
    b = builder()
    ident = b.build(MAPPING[0], {"Id": "1", "Name": "x" * 5000})
    assert len(ident["group_properties"]["$set"]["name"]) == 1024
    assert b.truncated == 1


@pytest.mark.parametrize("value", [None, "", "  ", "x" * 1025])
def test_records_without_a_usable_group_value_are_skipped(value):
    with pytest.raises(Skip):
        builder().build(MAPPING[0], {"Id": value, "Name": "A"})


def test_deleted_records_modes():
    deleted = {"Id": "9", "Name": "Gone", "IsDeleted": True}
    live = {"Id": "1", "Name": "Here", "IsDeleted": False}
    idents, skipped, ignored = builder().build_all(MAPPING, [deleted, live], "Account")
    assert [i["group_value"] for i in idents] == ["1"] and ignored == 1 and skipped == []
    idents, _, _ = builder(deleted_records="unset").build_all(MAPPING, [deleted], "Account")
    assert idents[0]["group_properties"] == {
        "$unset": dict.fromkeys(["name", "date", "revenue", "active", "owner"], "-")
    }
    idents, _, _ = builder(deleted_records="flag", null_values="skip").build_all(
        MAPPING, [deleted, live], "Account"
    )
    assert [i["group_properties"]["$set"]["deleted"] for i in idents] == [True, False]


def test_last_write_per_group_wins_within_a_batch():
    records = [{"Id": "1", "Name": "old"}, {"Id": "2", "Name": "b"}, {"Id": "1", "Name": "new"}, {"Id": None}]
    idents, skipped, _ = builder(null_values="skip").build_all(MAPPING, records, "Account")
    assert [(i["group_value"], i["group_properties"]["$set"]["name"]) for i in idents] == [
        ("1", "new"),
        ("2", "b"),
    ]
    assert skipped == ["Account record {'Id': None}: no value in group name field 'Id'"]
