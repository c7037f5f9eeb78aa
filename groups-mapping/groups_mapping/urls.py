"""The URL rule both plugins apply to their settings: secrets travel over TLS only."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def insecure_url(key: str, url: str) -> str | None:
    """The one-line problem with a setting's URL, or None: https://, or http:// to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return None  # an emulator on this machine
    return f"{key} must be an https:// URL (http:// only for a loopback host), got {url!r}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
