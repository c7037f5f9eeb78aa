"""Where a rotated OAuth refresh token is kept between logins (Salesforce refresh token rotation).

With rotation on, each refresh answers with a new ``refresh_token`` and invalidates the one
sent; sending an invalidated one again revokes every token of that authorization (Salesforce
Help 005316711, "Refresh Token Rotation"). ``meltano run`` logs in at least twice (discovery,
then sync), so the new token has to outlive the process: it goes to a JSON file (mode 0600),
keyed by a SHA-256 of the configured ``refresh_token`` it descends from. A configured token
with no entry (a new one, from ``connect`` or by hand) is used as configured, so a newly
configured token always wins; environments or projects with different tokens share the file
without touching each other's entries. An exclusive lock covers read, refresh and write, so
parallel runs on one machine (shards) never send the same single-use token twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from groups_mapping import write_atomically
from tap_salesforce_groups.errors import SalesforceAuthError

DEFAULT_REFRESH_TOKEN_FILE = ".meltano/tap-salesforce-groups/refresh-token.json"  # noqa: S105 (a path)


def lineage(configured: str) -> str:
    """The key of a configured refresh token: its SHA-256, never the token itself."""
    return hashlib.sha256(configured.encode()).hexdigest()


class RefreshTokenStore:
    """The JSON file of rotated refresh tokens: ``{sha256(configured): {"refresh_token", "rotated_at"}}``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # Relative to the Meltano project (Meltano sets MELTANO_PROJECT_ROOT for its plugins,
        # whichever directory `meltano run` was started in), else to the working directory.
        self.path = Path(os.environ.get("MELTANO_PROJECT_ROOT") or ".") / path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (a sibling ``.lock`` file) across read, refresh and write."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            # A read-only project (a container image, say) logs in fine without rotation; with
            # rotation on, save() fails loudly instead, naming the file.
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def current(self, configured: str) -> str | None:
        """The latest token rotated from ``configured``, or ``None`` when there is none."""
        entry = self._read().get(lineage(configured))
        token = entry.get("refresh_token") if isinstance(entry, dict) else None
        return token if isinstance(token, str) and token else None

    def save(self, configured: str, token: str) -> None:
        """Keep ``token`` as the current descendant of ``configured`` (atomic, mode 0600)."""
        entries = self._read()
        entries[lineage(configured)] = {
            "refresh_token": token,
            "rotated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
        try:
            write_atomically(self.path, text, mode=0o600)
        except OSError as exc:
            # The new token is the only valid one now: losing it means connecting again.
            msg = f"refresh_token_file {self.path}: cannot keep the rotated refresh token: {exc.strerror}"
            raise SalesforceAuthError(msg) from exc

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SalesforceAuthError(
                f"refresh_token_file {self.path}: cannot read it: {exc.strerror}"
            ) from exc
        try:
            entries = json.loads(text)
        except ValueError:
            entries = None
        if not isinstance(entries, dict):
            msg = f"refresh_token_file {self.path}: not a JSON object of rotated tokens; move it away and log in again"
            raise SalesforceAuthError(msg)
        return entries
