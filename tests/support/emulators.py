"""The session's emulators: one CA for both, started by tests/conftest.py's ``emulators`` fixture.

Nothing starts at import of this module or of a conftest: the fixture starts them, except in
the two modules with the SDK's standard test classes, which list the tap's streams when the class
is built, at import (they call ``SESSION.start()`` first). ``SALESFORCE``, ``AMPLITUDE`` and ``CA`` stand for the running
objects (attribute access goes to them once the fixture has started them), so test modules can
name them at import; settings dicts that need their URLs (``tests.support.tap.CONFIG``,
``tests.support.target.BASE_CONFIG``) are filled in place when they start, which is also what
the SDK's standard test classes, built at import with those same dicts, see when they run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from emulators._server import LocalCA
from emulators.amplitude import AmplitudeEmulator
from emulators.salesforce import SalesforceEmulator


class Session:
    """The running emulators of this test session (None until :meth:`start`)."""

    def __init__(self) -> None:
        self.directory: Path | None = None  # the session's temporary folder
        self.ca: LocalCA | None = None
        self.salesforce: SalesforceEmulator | None = None
        self.amplitude: AmplitudeEmulator | None = None
        self.on_start: list[Callable[[Session], None]] = []

    def start(self, directory: Path | None = None) -> Session:
        """Start both emulators (once); REQUESTS_CA_BUNDLE names their CA.

        The CA goes to ``directory``, else to a temporary folder it removes when they stop.
        """
        if self.salesforce is not None:
            return self
        self.ca = LocalCA(directory / "ca" if directory is not None else None)
        self.directory = directory or self.ca.directory
        # Small pages so that paging is exercised.
        self.salesforce = SalesforceEmulator(ca=self.ca, accounts=300, page_size=200).start()
        self.amplitude = AmplitudeEmulator(ca=self.ca).start()
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.ca.ca_path)  # as a deployment would set it
        for fill in self.on_start:
            fill(self)
        return self

    def when_started(self, fill: Callable[[Session], None]) -> None:
        """Call ``fill`` once the emulators run (now, when they already do)."""
        self.on_start.append(fill)
        if self.salesforce is not None:
            fill(self)

    def stop(self) -> None:
        for server in (self.salesforce, self.amplitude):
            if server is not None:
                server.stop()


SESSION = Session()


class Running:
    """Stands for one of the session's running objects; raises when it is used before it started."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _object(self) -> Any:
        found = getattr(SESSION, object.__getattribute__(self, "_name"))
        if found is None:
            msg = "the emulators start in the `emulators` session fixture (tests/conftest.py), not at import"
            raise RuntimeError(msg)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._object(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._object(), name, value)


SALESFORCE = cast("SalesforceEmulator", Running("salesforce"))
AMPLITUDE = cast("AmplitudeEmulator", Running("amplitude"))
CA = cast("LocalCA", Running("ca"))
