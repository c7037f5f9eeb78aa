"""Salesforce REST errors (rendered as the real JSON array) and the JSON response helper."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response


class ApiError(Exception):
    """A Salesforce API error: HTTP status, ``errorCode`` and message (and optional ``fields``)."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        """The response body: Salesforce always wraps REST errors in a JSON array."""
        error: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            error["fields"] = self.fields
        return [error]


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON response as Salesforce sends it (UTF-8, not ASCII-escaped)."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return Response(text, status=status, content_type="application/json;charset=UTF-8")
