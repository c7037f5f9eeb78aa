"""An editor served in-process against the session's Salesforce emulator, on a free port."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tap_salesforce_groups.editor import EditorApp, EditorServer, Org, ProjectSchedule

OUTPUT_DIR = Path(__file__).resolve().parents[1] / "output" / "editor"
# The line the browser test prints for each screenshot it takes; tests/conftest.py lists them at
# the end of the run from the tests' captured output (which pytest-xdist's workers report too).
SCREENSHOT_LINE = re.compile(r"^screenshot: (?P<path>.+?) \((?P<what>.*)\)$", re.M)


@dataclass
class Editor:
    server: EditorServer
    mapping_file: Path
    org: Org

    @property
    def base(self) -> str:
        return f"http://{self.server.authority}"

    @property
    def token(self) -> str:
        return self.server.token

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        headers = {"X-Editor-Token": self.token, **kwargs.pop("headers", {})}
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        return requests.request(method, self.base + path, data=data, headers=headers, timeout=30, **kwargs)


def start_editor(settings: dict[str, Any], project_root: str | None = None) -> EditorServer:
    org = Org(settings)
    org.login()
    app = EditorApp(org, settings, ProjectSchedule(project_root))
    server = EditorServer(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server
