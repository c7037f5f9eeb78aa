"""The session's emulators, started here (not at import): tests.support.emulators holds them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.emulators import SESSION, Session


@pytest.fixture(scope="session", autouse=True)
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Both emulators, one CA in REQUESTS_CA_BUNDLE, for the whole session."""
    SESSION.start(tmp_path_factory.mktemp("emulators"))
    yield SESSION
    SESSION.stop()
