"""Reading Singer messages: the SDK's msgspec reader, with the standard library where msgspec is stricter."""

from __future__ import annotations

import json
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
