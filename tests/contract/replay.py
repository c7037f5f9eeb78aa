"""An HTTPS server that answers with recorded fixtures, in order, per route (no logic of its own)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.wrappers import Request, Response

from emulators._server import BackgroundServer, LocalCA

FIXTURES = Path(__file__).parent / "fixtures" / "salesforce"
LIMIT_INFO = "api-usage=25/5000"  # REST API Developer Guide, "Limit Info Header"


@dataclass
class Answer:
    """One recorded response: a fixture file (or literal text), a status and headers."""

    fixture: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def body(self) -> str:
        return (FIXTURES / self.fixture).read_text(encoding="utf-8") if self.fixture else self.text

    @property
    def content_type(self) -> str:
        suffix = Path(self.fixture or "").suffix
        return {".json": "application/json;charset=UTF-8", ".csv": "text/csv", ".xml": "text/xml"}.get(
            suffix, "text/plain"
        )


class ReplayServer(BackgroundServer):
    """Routes ``(method, path regex)`` to answers given in order; the last answer repeats."""

    def __init__(self, ca: LocalCA) -> None:
        super().__init__(ca=ca)
        self.routes: list[tuple[str, re.Pattern[str], list[Answer]]] = []
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def on(self, method: str, path: str, *answers: Answer) -> ReplayServer:
        self.routes.append((method, re.compile(path), list(answers)))
        return self

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.log.append((request.method, request.path))
            for method, pattern, answers in self.routes:
                if method == request.method and pattern.fullmatch(request.path):
                    answer = answers.pop(0) if len(answers) > 1 else answers[0]
                    break
            else:
                return Response(f"no recording for {request.method} {request.path}", status=599)
        response = Response(answer.body(), status=answer.status, content_type=answer.content_type)
        response.headers.update(answer.headers)
        if request.path.startswith("/services/data/"):
            response.headers["Sforce-Limit-Info"] = LIMIT_INFO
        return response
