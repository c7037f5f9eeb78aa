"""Side files (rejected, dry run, report): private to their owner (0600), secrets redacted."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from groups_mapping import write_atomically
from target_amplitude_groups.errors import RunFailure

PRIVATE = 0o600  # they hold customer data


def _open_private(path: Path, flags: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, flags | os.O_CREAT, PRIVATE)
    os.chmod(path, PRIVATE)  # an existing file keeps its mode on open: tighten it
    return fd


class JsonLines:
    """A JSONL file appended to from several threads; created on first write."""

    def __init__(self, path: str | Path, redact: Callable[[str], str]) -> None:
        self.path = Path(path)
        self.redact = redact
        self.lines = 0
        self._lock = threading.Lock()

    def write(self, objects: Iterable[Any]) -> None:
        """Append the objects, one JSON line each, secrets redacted."""
        text = "".join(self.redact(json.dumps(o, ensure_ascii=False)) + "\n" for o in objects)
        if not text:
            return
        with self._lock:
            try:
                fd = _open_private(self.path, os.O_WRONLY | os.O_APPEND)
                with os.fdopen(fd, "a", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:  # a full disk: the run fails, and what was not recorded is resent
                raise RunFailure(f"cannot write {self.path}: {exc.strerror or exc}") from exc
            self.lines += text.count("\n")


def write_json(path: str | Path, data: Any, redact: Callable[[str], str]) -> None:
    """Replace a JSON file atomically and privately (a reader never sees half a report).

    On failure (a full disk) the temporary file is removed and the error raised.
    """
    write_atomically(path, redact(json.dumps(data, indent=2, ensure_ascii=False)) + "\n", mode=PRIVATE)
