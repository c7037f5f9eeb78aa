"""A REST query page tells where the next one is before its records are parsed.

Salesforce writes ``totalSize``, ``done`` and ``nextRecordsUrl`` before ``records`` (REST API
Developer Guide, "Execute a SOQL Query", example response; ../shared/reference/salesforce-api.md
§6), so the tap asks for the next page while the reader parses this one. Any other layout is
parsed at once, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tap_salesforce_groups.client import QueryPage
from tap_salesforce_groups.errors import SalesforceClientError

NEXT = "/services/data/v62.0/query/01gRO0000016PIAYA2-2000"
RECORD = {
    "attributes": {"type": "Account", "url": "/services/data/v62.0/sobjects/Account/001A"},
    "Id": "001A",
}


def chunked(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def test_the_rest_downloads_only_when_its_records_are_read() -> None:
    # The head arrives (a key split across chunks); the rest is read by whoever reads the records.
    read: list[int] = []
    body = json.dumps(
        {"totalSize": 3, "done": False, "nextRecordsUrl": NEXT, "records": [RECORD] * 3}
    ).encode()

    def arriving() -> Iterator[bytes]:
        for number, chunk in enumerate(chunked(body, 11)):
            read.append(number)
            yield chunk

    page = QueryPage(arriving())
    assert (page.done, page.next_url) == (False, NEXT)
    head_chunks = len(read)
    assert head_chunks < len(chunked(body, 11))
    assert page.records == [RECORD] * 3
    assert len(read) == len(chunked(body, 11))


def test_a_connection_lost_in_the_rest_of_a_page_fails_its_reader_with_one_line() -> None:
    def broken() -> Iterator[bytes]:
        yield (
            b'{"totalSize":4000,"done":false,"nextRecordsUrl":"' + NEXT.encode() + b'","records":[{"Id":"001'
        )
        raise requests.exceptions.ChunkedEncodingError(
            "Connection broken: IncompleteRead(10 bytes read)",
            request=requests.Request("GET", f"https://acme.my.salesforce.com{NEXT}").prepare(),
        )

    page = QueryPage(broken(), "queryAll (next page)")
    assert page.next_url == NEXT
    with pytest.raises(
        SalesforceClientError,
        match=r"^queryAll \(next page\): the connection to acme.my.salesforce.com broke while an answer "
        r"downloaded \(.*IncompleteRead",
    ) as raised:
        page.records
    assert "\n" not in str(raised.value)


def test_the_head_gives_done_and_the_next_url_and_the_records_wait_for_their_reader() -> None:
    # The records part is not even valid JSON: only reading the records parses it.
    body = b'{"totalSize":3222,"done":false,"nextRecordsUrl":"' + NEXT.encode() + b'","records":[{"Id": oops'
    page = QueryPage([body])
    assert (page.done, page.next_url) == (False, NEXT)
    with pytest.raises(json.JSONDecodeError):
        page.records


def test_a_salesforce_page_and_its_last_page() -> None:
    first = {"totalSize": 2001, "done": False, "nextRecordsUrl": NEXT, "records": [RECORD] * 3}
    page = QueryPage([json.dumps(first).encode()])
    assert (page.done, page.next_url, page.records) == (False, NEXT, [RECORD] * 3)
    last = QueryPage([json.dumps({"totalSize": 2001, "done": True, "records": [RECORD]}).encode()])
    assert (last.done, last.next_url, last.records) == (True, None, [RECORD])


def test_a_pretty_printed_page() -> None:
    # What X-PrettyPrint: 1 asks for (simple-salesforce sends it by default).
    body = {"totalSize": 2, "done": False, "nextRecordsUrl": NEXT, "records": [RECORD, RECORD]}
    page = QueryPage(chunked(json.dumps(body, indent=4).encode(), 7))
    assert (page.done, page.next_url, page.records) == (False, NEXT, [RECORD, RECORD])


@pytest.mark.parametrize(
    "body",
    [
        # records first: no head to read
        {"records": [RECORD], "totalSize": 2, "done": False, "nextRecordsUrl": NEXT},
        # done before the records, the next URL after them: not "no next page"
        {"totalSize": 2, "done": False, "records": [RECORD], "nextRecordsUrl": NEXT},
        # a child relationship's own paging inside a record, the page's own after the records
        {
            "done": False,
            "records": [
                {**RECORD, "Contacts": {"done": False, "nextRecordsUrl": "/child-2000", "records": []}}
            ],
            "nextRecordsUrl": NEXT,
        },
    ],
)
def test_any_other_layout_is_parsed_at_once(body: dict) -> None:
    page = QueryPage(chunked(json.dumps(body).encode(), 5))
    assert (page.done, page.next_url, page.records) == (False, NEXT, body["records"])


def test_an_escaped_next_url_is_parsed_not_cut() -> None:
    escaped = NEXT.replace("/", "\\/")  # JSON may escape a slash
    body = b'{"totalSize":3,"done":false,"nextRecordsUrl":"' + escaped.encode() + b'","records":[]}'
    page = QueryPage([body])
    assert (page.done, page.next_url, page.records) == (False, NEXT, [])
