"""The editor's connection to the org: who it runs as, and Connect when no credentials work.

Connect is the command line's flow (:mod:`tap_salesforce_groups.connect`) with the editor's own
server answering the callback on its own port: the same PKCE verifier, ``state`` check, code
exchange, identity read and ``.env`` write. Afterwards the editor logs in with the new refresh
token and serves the org's objects without a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tap_salesforce_groups.connect import ConnectError, Flow, store_refresh_token
from tap_salesforce_groups.editor.org import Org, OrgError

# Login failures that a new refresh token fixes: none configured, or the one configured is no
# longer accepted (expired, revoked). Anything else (a wrong secret, an unreachable host, TLS)
# would fail the same way after Connect, so the editor stops and says so instead.
_CONNECTABLE = ("no complete Salesforce credentials", "invalid_grant")


class NotConnected(Exception):
    """No working credentials yet: the page offers Connect to Salesforce."""


def connectable(problem: str) -> bool:
    """True when logging in failed in a way that Connect (a new refresh token) can fix."""
    return any(marker in problem for marker in _CONNECTABLE)


class EditorConnection:
    """The logged-in :class:`Org` (or why there is none) and the Connect flow in progress."""

    def __init__(
        self, settings: Mapping[str, Any], org: Org | None, problem: str | None, env_file: Path
    ) -> None:
        self.settings = dict(settings)
        self._org = org
        self.problem = problem
        self.env_file = env_file
        self._line: str | None = None
        self._flow: Flow | None = None
        self._lock = threading.Lock()

    @property
    def org(self) -> Org:
        """The logged-in org."""
        if self._org is None:
            raise NotConnected(f"not connected to Salesforce ({self.problem}): click Connect to Salesforce")
        return self._org

    def status(self) -> dict[str, Any]:
        """``{"connected", "line", "problem"}``; the line is read once per session (identity URL)."""
        org = self._org
        if org is None:
            return {"connected": False, "line": None, "problem": self.problem}
        if self._line is None:
            try:
                self._line = org.identity()
            except OrgError as exc:
                return {"connected": True, "line": None, "problem": str(exc)}
        return {"connected": True, "line": self._line, "problem": None}

    def start(self, redirect_uri: str) -> dict[str, str]:
        """A new flow (a new state and verifier); the page sends the browser to its URL."""
        try:
            flow = Flow(self.settings, redirect_uri)
        except ConnectError as exc:
            raise NotConnected(str(exc)) from None
        with self._lock:
            self._flow = flow
        return {"authorize_url": flow.authorize_url, "callback_url": redirect_uri}

    def finish(self, params: Mapping[str, str]) -> str:
        """The callback: check state, redeem the code, store the token, log in with it.

        Raises ``StateMismatch`` (refused, the flow goes on) or :class:`ConnectError`.
        """
        with self._lock:
            flow = self._flow
            if flow is None:
                raise ConnectError("no Connect in progress: click Connect to Salesforce in the editor first")
            flow.check_state(params)  # a wrong state leaves the flow waiting
            self._flow = None
            connection = flow.callback(params)
            try:
                store_refresh_token(self.env_file, connection.refresh_token)
            except OSError as exc:
                raise ConnectError(f"connected, but cannot write {self.env_file}: {exc.strerror}") from None
            settings = {**self.settings, "refresh_token": connection.refresh_token}
            try:
                org = Org(settings)
                org.login()
            except OrgError as exc:
                raise ConnectError(f"the new refresh token does not log in: {exc}") from None
            self.settings, self._org, self.problem = settings, org, None
            self._line = connection.line
            return connection.line
