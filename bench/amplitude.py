"""What reached the Amplitude emulator, and the fewest requests its limits allow for it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote_plus

from emulators.amplitude import API_KEY, MAX_BODY_BYTES, MAX_IDENTIFICATIONS, MAX_PROPERTIES_PER_REQUEST


def request_overhead(api_key: str = API_KEY) -> int:
    """Bytes of ``api_key=…&identification=[]``: what every request carries besides its groups."""
    return len(f"api_key={quote_plus(api_key)}&identification=") + len(quote_plus("[]"))


def fewest_requests(groups: int, properties: int, payload_bytes: int) -> int:
    """The lower bound the three per-request limits put on the request count."""
    return max(
        math.ceil(groups / MAX_IDENTIFICATIONS),
        math.ceil(properties / MAX_PROPERTIES_PER_REQUEST),
        math.ceil(payload_bytes / MAX_BODY_BYTES),
    )


def figures(entries: Iterable[dict[str, Any]], api_key: str = API_KEY) -> dict[str, Any]:
    """Request count, and what the accepted requests carried.

    Over the accepted requests: groups, properties, payload bytes and the fewest requests that
    could have carried them (``ratio`` = requests / fewest).
    """
    overhead = request_overhead(api_key)
    requests = accepted = groups = properties = payload = 0
    statuses: dict[str, int] = {}
    for entry in entries:
        requests += 1
        status = str(entry.get("status"))
        statuses[status] = statuses.get(status, 0) + 1
        if not entry.get("applied"):
            continue
        accepted += 1
        groups += entry.get("identifications") or 0
        properties += entry.get("properties") or 0
        payload += (entry.get("body_bytes") or 0) - overhead
    fewest = fewest_requests(groups, properties, payload)
    return {
        "requests": requests,
        "accepted": accepted,
        "statuses": statuses,
        "groups": groups,
        "properties": properties,
        "payload_bytes": payload,
        "fewest_requests": fewest,
        "ratio": round(requests / fewest, 4) if fewest else None,
    }
