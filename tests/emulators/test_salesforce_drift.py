"""The emulated org drifts as real orgs do (issue 16): what each behaviour is and where it is from."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import pytest
import requests

from emulators.salesforce import SalesforceEmulator
from emulators.salesforce.bulk import Job

V = "/services/data/v62.0"


@pytest.fixture(scope="module")
def sf():
    with SalesforceEmulator(accounts=60) as emulator:
        yield emulator


@pytest.fixture
def http(sf):
    sf.reset()
    s = requests.Session()
    s.verify = str(sf.ca_path)
    s.trust_env = False
    s.headers["Authorization"] = f"Bearer {sf.new_session()}"
    yield s
    sf.reset()
    sf.bulk.on_chunk_rendered = None


def query(http, sf, soql: str) -> list[dict]:
    body = http.get(f"{sf.url}{V}/queryAll", params={"q": soql}).json()
    assert isinstance(body, dict), body
    return body["records"]


def test_the_date_header_and_stamps_follow_the_org_s_clock(sf, http):
    # Date is the server's clock (RFC 9110 §6.6.1); Salesforce stamps rows by its own clock.
    sf.clock_offset = -3 * 86400.0
    answer = http.get(f"{sf.url}{V}/sobjects")
    server = parsedate_to_datetime(answer.headers["Date"])
    assert abs((datetime.now(timezone.utc) - server).total_seconds() - 3 * 86400) < 5
    row_id = sf.org.rows("Account")[0]["Id"]
    sf.org.update("Account", row_id, Name="Skewed")
    stamp = sf.org.now()
    assert abs(stamp / 1000 - server.timestamp()) < 5
    job = http.post(f"{sf.url}{V}/jobs/query", json={"operation": "query", "query": "SELECT Id FROM Account"})
    created = datetime.fromisoformat(job.json()["createdDate"].replace("+0000", "+00:00"))
    assert abs((created - server).total_seconds()) < 5


def test_a_late_commit_carries_a_stamp_older_than_rows_already_visible(sf, http):
    # airbytehq/airbyte#27146: rows appear later with stamps below the saved cursor.
    rows = sf.org.rows("Account")
    sf.org.update("Account", rows[0]["Id"], Name="On time")
    earlier = sf.org.now() - 300_000
    sf.org.update_at(earlier, "Account", rows[1]["Id"], Name="Late")
    on_time = sf.org.get("Account", rows[0]["Id"])["SystemModstamp"]
    late = sf.org.get("Account", rows[1]["Id"])["SystemModstamp"]
    assert late < on_time
    assert late.startswith(time.strftime("%Y-%m-%dT", time.gmtime(earlier / 1000)))


def test_renaming_a_parent_restamps_no_child(sf, http):
    # A parent's change does not move the child's SystemModstamp (heroku/roadmap#319).
    account = next(r for r in query(http, sf, "SELECT Id, OwnerId, SystemModstamp FROM Account"))
    owner = account["OwnerId"]
    sf.org.update("User", owner, LastName="Renamed")
    again = [
        r
        for r in query(http, sf, "SELECT Id, Owner.Name, SystemModstamp FROM Account")
        if r["Id"] == account["Id"]
    ]
    assert again[0]["SystemModstamp"] == account["SystemModstamp"]
    assert again[0]["Owner"]["Name"].endswith("Renamed")
    changed = query(http, sf, f"SELECT Id FROM Account WHERE Owner.SystemModstamp >= {_soql_now(sf)}")
    assert account["Id"] in {r["Id"] for r in changed}


def test_a_formula_follows_its_parent_without_a_stamp(sf, http):
    # Cross-object formulas are computed when read; their changes move no stamp
    # (stitchdata/docs#195). Describe marks them calculated.
    describe = http.get(f"{sf.url}{V}/sobjects/Subscription__c/describe").json()
    field = next(f for f in describe["fields"] if f["name"] == "Account_Rating__c")
    assert field["calculated"] is True and field["calculatedFormula"] == "TEXT(Account__r.Rating)"
    sub = next(
        r
        for r in query(
            http, sf, "SELECT Id, Account__c, Account_Rating__c, SystemModstamp FROM Subscription__c"
        )
        if r["Account__c"]
    )
    sf.org.update(
        "Account", sub["Account__c"], Rating="Cold" if sub["Account_Rating__c"] != "Cold" else "Hot"
    )
    after = next(
        r
        for r in query(http, sf, "SELECT Id, Account_Rating__c, SystemModstamp FROM Subscription__c")
        if r["Id"] == sub["Id"]
    )
    assert after["Account_Rating__c"] != sub["Account_Rating__c"]
    assert after["SystemModstamp"] == sub["SystemModstamp"]


def test_children_of_given_parents_by_id_list(sf, http):
    owners = sorted({r["OwnerId"] for r in sf.org.rows("Account")})[:2]
    ids = ", ".join(f"'{o}'" for o in owners)
    rows = query(http, sf, f"SELECT Id, OwnerId FROM Account WHERE OwnerId IN ({ids})")
    assert rows and {r["OwnerId"] for r in rows} <= set(owners)
    short = ", ".join(f"'{o[:15]}'" for o in owners)  # 15-character ids compare equal
    assert len(query(http, sf, f"SELECT Id FROM Account WHERE OwnerId IN ({short})")) == len(rows)


def test_bulk_chunks_render_when_read_not_when_the_job_is_created(sf, http):
    # "Understanding Bulk API 2.0 Query" / "PK Chunking": each chunk is its own query, run at its
    # own time, so a job's output is not a snapshot.
    sf.bulk.pk_chunk_rows = 10
    try:
        job = http.post(
            f"{sf.url}{V}/jobs/query", json={"operation": "queryAll", "query": "SELECT Id, Name FROM Account"}
        ).json()
        assert http.get(f"{sf.url}{V}/jobs/query/{job['id']}").json()["state"] == "JobComplete"
        seen: list[int] = []

        def meanwhile(j: Job, chunk: int) -> None:
            seen.append(chunk)
            if chunk == 0:
                table = sf.org.tables["Account"]
                sf.org.update("Account", table.ids[j.rows[0]], Name="After its chunk")  # too late
                sf.org.update("Account", table.ids[j.rows[-1]], Name="Before its chunk")

        sf.bulk.on_chunk_rendered = meanwhile
        page = http.get(f"{sf.url}{V}/jobs/query/{job['id']}/results").text
    finally:
        sf.bulk.pk_chunk_rows = 100_000
    names = [r["Name"] for r in csv.DictReader(io.StringIO(page))]
    assert seen == list(range(len(seen))) and len(seen) > 1
    assert names[0] != "After its chunk"
    assert names[-1] == "Before its chunk"


def _soql_now(sf: SalesforceEmulator) -> str:
    seconds = sf.org.now() / 1000 - 60
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
