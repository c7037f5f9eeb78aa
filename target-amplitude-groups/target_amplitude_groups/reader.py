"""Reading Singer messages: the SDK's msgspec reader, with the standard library where msgspec is stricter.

And the input's lines, with a tick while a pipe stays quiet, so the target can checkpoint then.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import select
import stat
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json


class FastSingerReader(MsgSpecReader):
    r"""Decodes each line with msgspec (numbers as decimals, as the SDK's default reader does).

    A line msgspec refuses but JSON allows, such as an escaped lone surrogate (``"\\ud800"``), is
    decoded as the SDK's default reader decodes it, so that the bad value reaches the target and
    is reported there instead of failing the whole run.
    """

    def deserialize_json(self, line: str) -> dict[str, Any]:
        """One message; a line msgspec refuses is decoded as the SDK's reader does."""
        try:
            message: dict[str, Any] = decoder.decode(line)
        except msgspec.DecodeError:
            try:
                message = deserialize_json(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputLine(f"Unable to parse line as JSON: {line[:200]}") from exc
        return message


def pipe_lines(source: Iterable[str], quiet_seconds: float, wake: int | None = None) -> Iterator[str | None]:
    r"""Each line of ``source``, and None each time no input came for ``quiet_seconds``.

    Only a pipe or a socket (a tap's output under Meltano) can go quiet while more will come: it
    is read in blocks straight from its file descriptor, so a wait for input can time out. Any
    other input (a file, a list in a test) is read as it is, without ticks. Lines keep their
    ``\n``, as a text file's iteration gives them; the input is UTF-8, as Singer's JSON is.
    A byte written to the ``wake`` descriptor (non-blocking) ends the wait at once with a None.
    """
    fd = _pipe_fd(source)
    if fd is None:
        yield from source
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    watched = [fd] if wake is None else [fd, wake]
    while True:
        ready, _, _ = select.select(watched, [], [], quiet_seconds)
        if wake is not None and wake in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake, 1 << 10)
            yield None
            if fd not in ready:
                continue
        if not ready:
            yield None
            continue
        block = os.read(fd, 1 << 16)
        if not block:
            break
        lines = (pending + decoder.decode(block)).split("\n")
        pending = lines.pop()
        for line in lines:
            yield line + "\n"
    if rest := pending + decoder.decode(b"", final=True):
        yield rest


def _pipe_fd(source: Iterable[str]) -> int | None:
    """The file descriptor of a pipe or socket, else None (nothing read it before: no buffered line is lost)."""
    try:
        fd = int(source.fileno())  # type: ignore[attr-defined]
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return None
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return None
    return fd
