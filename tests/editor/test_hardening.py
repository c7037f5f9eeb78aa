"""Issue 17, point 6: a deeply nested JSON body gets 400 with one line, not a server error."""

from __future__ import annotations


def test_a_deeply_nested_body_is_400(editor):
    deep = "[" * 100_000 + "]" * 100_000  # within the 1 MB limit; json.loads recurses per level
    answer = editor.call("POST", "/api/validate", deep)
    assert answer.status_code == 400
    assert answer.json() == {"error": "request body is not a mapping: JSON nested too deeply"}
    assert editor.call("GET", "/api/mapping").status_code == 200  # the editor still serves
