"""Bulk API 2.0 CSV pages are read from their bytes as the csv module expects a file.

Salesforce writes RFC 4180 CSV: values in double quotes, quotes doubled, newlines allowed inside
quoted values, LF or CRLF line endings (``lineEnding`` of the job), UTF-8. Sources: "Get Results
for a Query Job" and "Line Ending Header" in the Bulk API 2.0 developer guide,
https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_get_job_results.htm
https://developer.salesforce.com/docs/platform/api-asynch/guide/bulk-api-2-0-line-ending-header.html
"""

from __future__ import annotations

import csv

import pytest

from tap_salesforce_groups.client import csv_lines


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_quoted_newlines_quotes_and_unicode_stay_in_their_values(eol: str) -> None:
    text = (
        eol.join(
            [
                '"Id","Name","Description"',
                '"001","Ann ""the"" Ö","line one' + eol + 'line two"',
                '"002","😀 e\u0301","a\u2028b\u0085c"',
                '"003","",""',
            ]
        )
        + eol
    )
    rows = list(csv.reader(csv_lines(text.encode("utf-8"))))
    assert rows == [
        ["Id", "Name", "Description"],
        ["001", 'Ann "the" Ö', "line one" + eol + "line two"],
        ["002", "😀 e\u0301", "a\u2028b\u0085c"],
        ["003", "", ""],
    ]


def test_bytes_that_are_not_utf8_are_replaced_not_fatal() -> None:
    rows = list(csv.reader(csv_lines(b'"Id","Name"\n"001","bad \xff byte"\n')))
    assert rows[1] == ["001", "bad \ufffd byte"]
