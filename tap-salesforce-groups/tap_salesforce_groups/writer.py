"""Writing Singer messages: the SDK's msgspec writer, with the SDK's JSON writer as a fallback."""

from __future__ import annotations

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib.encoding.simple import Message
from singer_sdk.singerlib.json import serialize_json


class FastSingerWriter(MsgSpecWriter):
    r"""Serialises each message with msgspec, in C.

    A string msgspec cannot write as UTF-8, such as a lone surrogate that Salesforce sent as
    ``"\\ud800"``, goes out as the SDK's default writer writes it (escaped), so that the target
    can report that value instead of the tap failing.
    """

    def serialize_message(self, message: Message) -> bytearray:
        """The message as one JSON line."""
        try:
            return super().serialize_message(message)
        except UnicodeEncodeError:
            return bytearray(serialize_json(message.to_dict()).encode("ascii") + b"\n")
