"""The mapping editor served in-process against the session's Salesforce emulator, on a free port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tap_salesforce_groups.editor import EditorApp, EditorServer, ProjectSchedule
from tests.support.editor import Editor, start_editor
from tests.support.tap import CONFIG, MAPPING
from tests.support.tap import settings as tap_settings


@pytest.fixture
def editor_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[EditorServer] = []

    def make(file_mapping: Any = MAPPING, project_root: str | None = None, **overrides: Any) -> Editor:
        mapping_file = tmp_path / "mapping.json"
        if file_mapping is not None:
            mapping_file.write_text(json.dumps(file_mapping, indent=2))
        settings = {k: v for k, v in CONFIG.items() if k != "mapping"}
        settings |= {"mapping_file": str(mapping_file), **overrides}
        server = start_editor(settings, project_root)
        servers.append(server)
        return Editor(server, mapping_file, server.app.org)

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def editor(editor_factory: Any) -> Editor:
    return editor_factory()


@pytest.fixture
def disconnected(tmp_path):
    """An editor started without a refresh token, as run_editor starts it when none works."""
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(MAPPING))
    settings = tap_settings(**dict.fromkeys(("mapping", "refresh_token")))
    settings["mapping_file"] = str(mapping_file)
    env_file = tmp_path / ".env"
    app = EditorApp(
        None,
        settings,
        ProjectSchedule(str(tmp_path)),
        not_connected="no complete Salesforce credentials",
        env_file=env_file,
    )
    server = EditorServer(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield Editor(server, mapping_file, None), env_file  # type: ignore[arg-type]  # no Org yet
    server.shutdown()
    server.server_close()
