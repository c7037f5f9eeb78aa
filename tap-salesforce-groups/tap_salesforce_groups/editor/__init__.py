"""The mapping editor: Amplitude's Salesforce V2 mapping screen as a local page (docs/SPEC.md §8a).

``server`` serves the page and the JSON API, ``org`` is the one door into the tap (login,
describe, verification), ``schedule`` sets the Meltano schedule's cadence, ``static/`` holds
the page itself (plain HTML, CSS and JavaScript).
"""

from __future__ import annotations

import contextlib
import errno
import html
import ipaddress
import os
import tempfile
import webbrowser
from pathlib import Path
from typing import Any

import click

from tap_salesforce_groups.editor.connection import connectable
from tap_salesforce_groups.editor.org import Org, OrgError
from tap_salesforce_groups.editor.schedule import ProjectSchedule
from tap_salesforce_groups.editor.server import EditorApp, EditorServer
from tap_salesforce_groups.interrupt import signals_deferred

__all__ = ["EditorApp", "EditorServer", "Org", "OrgError", "ProjectSchedule", "launcher_file", "run_editor"]

LAUNCHER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url={url}"><title>{title}</title></head>
<body><p>Opening {what}… If nothing happens, <a href="{url}">open it here</a>.</p></body></html>
"""


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def launcher_file(url: str, what: str = "the mapping editor") -> Path:
    """A private (0600) HTML file that takes the browser to ``url``, token included.

    The browser is opened on this file, so the launcher's argv (which any local user can read
    with ``ps``) names a path, never the token: what Jupyter does (``jupyter-*-open.html``).
    """
    fd, name = tempfile.mkstemp(prefix="mapping-editor-", suffix=".html")  # mkstemp: mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        title = html.escape(what[:1].upper() + what[1:].removeprefix("the "))
        handle.write(
            LAUNCHER_PAGE.format(url=html.escape(url, quote=True), title=title, what=html.escape(what))
        )
    return Path(name)


def run_editor(
    settings: dict[str, Any], host: str, port: int, open_browser: bool, env_file: Path | None = None
) -> int:
    """Log in, serve until stopped, return the exit status; errors are one line.

    When no credentials work (none set, or a refresh token no longer accepted), the editor
    starts anyway and its page offers Connect to Salesforce. Ctrl-C and SIGTERM reach the
    caller as :class:`~tap_salesforce_groups.interrupt.Interrupted` (the mapping command line
    exits 130/143 with one line), after the server is closed.
    """
    address = _address(host)
    if address is not None and address.is_unspecified:
        # Browsers send the address they were given as Host, never 0.0.0.0: nothing would pass.
        click.echo(
            f"Cannot start the mapping editor on {host}: give one address to listen on (the Host "
            "header is checked against it), e.g. --host 127.0.0.1",
            err=True,
        )
        return 2
    org: Org | None = None
    problem = None
    try:
        org = Org(settings)
        org.login()
    except OrgError as exc:
        if not connectable(str(exc)):
            click.echo(f"Cannot start the mapping editor: {exc}", err=True)
            return 1
        org, problem = None, str(exc)
        click.echo(f"Not connected to Salesforce ({exc}): use Connect to Salesforce on the page.", err=True)
    app = EditorApp(org, settings, ProjectSchedule(), not_connected=problem, env_file=env_file)
    try:
        server = EditorServer(app, host, port)
    except OSError as exc:
        reason = "the port is in use (pass --port)" if exc.errno == errno.EADDRINUSE else exc.strerror
        click.echo(f"Cannot start the mapping editor on {host}:{port}: {reason}", err=True)
        return 1
    if not (address.is_loopback if address is not None else host == "localhost"):
        click.echo(
            f"Warning: listening on {host}, not loopback: anyone who can reach it and has the "
            "token can change the mapping.",
            err=True,
        )
    click.echo(f"Mapping editor: {server.url}", nl=True)
    click.echo("Press Ctrl-C to stop.", err=True)
    launcher = None
    try:
        if open_browser:
            launcher = launcher_file(server.url)
            webbrowser.open(launcher.as_uri())
        server.serve_forever(poll_interval=0.2)
    finally:
        with signals_deferred():  # Meltano passes the terminal's Ctrl-C on too: finish cleaning up
            server.server_close()
            if launcher is not None:
                with contextlib.suppress(OSError):
                    launcher.unlink()
    return 0
