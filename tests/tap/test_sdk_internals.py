"""The SDK internals the tap relies on (tap_salesforce_groups/sdk.py), checked against the SDK itself.

A toy tap with one unsorted stream runs through the real SDK: if an upgrade renames the state
key or rewords the warning, these fail before any run moves a bookmark wrongly.
"""

from __future__ import annotations

import ast
import copy
import inspect
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import pytest
from singer_sdk import Stream, Tap
from singer_sdk.target_base import Target

from tap_salesforce_groups.sdk import (
    PROGRESS_MARKERS,
    SDK_LOGGER,
    UNSORTED_WARNING,
    HideUnsortedWarning,
)

SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "updated": {"type": "string", "format": "date-time"}},
}


class Unsorted(Stream):
    name = "unsorted"
    replication_key = "updated"
    is_sorted = False

    def __init__(self, tap: Tap, seen: list[dict[str, Any]]) -> None:
        super().__init__(tap=tap, schema=SCHEMA, name=self.name)
        self.seen = seen

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        yield {"id": 1, "updated": "2025-01-02T00:00:00+00:00"}
        self.seen.append(copy.deepcopy(self.get_context_state(context)))  # the SDK counted row 1
        yield {"id": 2, "updated": "2025-01-01T00:00:00+00:00"}


class Toy(Tap):
    name = "tap-toy"
    config_jsonschema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

    seen: list[dict[str, Any]]

    def discover_streams(self) -> list[Stream]:
        self.seen = []
        return [Unsorted(self, self.seen)]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(str(record.msg))


@pytest.fixture
def sdk_log() -> Iterator[Collect]:
    """What the SDK logs on its own logger, with the tap's filter lifted for the test."""
    logger = logging.getLogger(SDK_LOGGER)
    ours = [f for f in logger.filters if isinstance(f, HideUnsortedWarning)]
    for f in ours:
        logger.removeFilter(f)
    handler = Collect()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    for f in ours:
        logger.addFilter(f)


def test_the_sdk_keeps_an_unsorted_stream_s_mark_under_progress_markers(sdk_log, capsys):
    tap = Toy(config={}, state={})
    tap.sync_all()
    capsys.readouterr()
    (state,) = tap.seen
    assert PROGRESS_MARKERS in state  # what streams.drop_sdk_progress_marker removes
    assert state[PROGRESS_MARKERS]["replication_key_value"] == "2025-01-02T00:00:00+00:00"


def test_the_sdk_warns_of_every_unsorted_stream_in_the_words_the_filter_hides(sdk_log, capsys):
    Toy(config={}, state={}).sync_all()
    capsys.readouterr()
    warned = [m for m in sdk_log.messages if m.startswith(UNSORTED_WARNING)]
    assert warned, sdk_log.messages
    record = logging.LogRecord(SDK_LOGGER, logging.WARNING, __file__, 0, warned[0], (), None)
    assert not HideUnsortedWarning().filter(record)


def test_the_filter_is_installed_by_the_tap_not_at_import():
    code = (
        "import logging, tap_salesforce_groups.streams, tap_salesforce_groups.tap, tap_salesforce_groups.mapping_cli;"
        f"print(logging.getLogger({SDK_LOGGER!r}).filters)"
    )
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"
    code = (
        "import logging; from tap_salesforce_groups.tap import TapSalesforceGroups;"
        "TapSalesforceGroups(config={}, validate_config=False, setup_mapper=False);"
        f"print([type(f).__name__ for f in logging.getLogger({SDK_LOGGER!r}).filters])"
    )
    built = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert built.stdout.strip().splitlines()[-1] == "['HideUnsortedWarning']"


def _calls(function: Any) -> set[str]:
    """The names a function's body calls (``tap.sync_all()`` → ``sync_all``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "?"))
    return names


@pytest.mark.parametrize(
    ("sdk_invoke", "steps"),
    [
        (
            Tap.invoke,
            {"super", "invoke", "print_version", "_ConfigInput", "cls", "load_json", "read", "sync_all"},
        ),
        (Target.invoke, {"super", "invoke", "print_version", "_ConfigInput", "cls", "listen"}),
    ],
    ids=["Tap", "Target"],
)
def test_the_sdk_invoke_does_only_the_steps_our_invoke_repeats(sdk_invoke, steps):
    """Our invoke repeats these steps to keep the instance (its run's exit status, the target's report).

    A step the SDK adds would be skipped silently, so a new one fails here.
    """
    assert _calls(sdk_invoke) == steps
