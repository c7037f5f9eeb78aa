"""The shard and Dagster tests' fixture: a PostgreSQL server of a test's own (helpers: tests/support/shards.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.postgres import LocalPostgres, PostgresUnavailable


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    """A Debian PostgreSQL server of the test's own: Meltano's system database for shards."""
    try:
        server = LocalPostgres().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for this test: {exc}")
    try:
        yield server
    finally:
        server.stop()
