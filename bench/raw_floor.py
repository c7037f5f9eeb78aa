r"""The raw floors: the pipeline's work as one plain script, no Singer and no Meltano.

It logs in with the refresh-token grant and reads one SOQL query, either through REST
(``/queryAll`` pages, following ``nextRecordsUrl``, JSON parsed) or through Bulk API 2.0 (a
``queryAll`` job, polled, its CSV results paged by locator in pages of 10,000 rows and parsed,
each column typed from one describe call as the tap types it).

``--mode query`` stops there: the floor for the tap alone. ``--mode job`` (the default) also
turns each live row into the identification the target would send (``$set`` of the mapped
values, relationship paths flattened, datetimes in ISO 8601 with a colon in the offset, whole
floats as integers, strings cut to 1024 characters, ``$unset`` for nulls), packs full requests
within Amplitude's three limits and posts them form-encoded, up to ``--concurrency`` in flight:
the floor for the whole run. It prints one JSON object with what it measured.

    python -m bench.raw_floor --login-url https://127.0.0.1:8443 --api bulk \\
        --amplitude-url https://127.0.0.1:8444/groupidentify --mapping mapping.json
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import requests
from requests.adapters import HTTPAdapter

MAX_IDENTIFICATIONS = 1024
MAX_PROPERTIES = 1024
MAX_BODY_BYTES = 1_000_000
MAX_STRING = 1024
SEPARATOR = quote_plus(",")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class Field:
    """One mapped field: its path split into hops, and its property name."""

    def __init__(self, path: str, prop: str) -> None:
        self.path = path
        self.hops = path.split(".")
        self.prop = prop

    def value(self, record: dict[str, Any]) -> Any:
        node: Any = record
        for hop in self.hops:
            node = node.get(hop) if isinstance(node, dict) else None
        return node


def load_mapping(path: Path) -> tuple[str, str, str, list[Field]]:
    """Object, group type, group name field and fields of the mapping's first entry."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    m = doc["mappings"][0]
    fields = [Field(p["field"], p.get("property") or p["field"]) for p in m["properties"]]
    return m["object"], m["group_type"], m["group_name_field"], fields


def default_soql(obj: str, name_field: str, fields: list[Field], api: str) -> str:
    """The tap's query: sorted on REST; unsorted on Bulk, where ORDER BY turns PK chunking off."""
    names = dict.fromkeys(["Id", name_field, *(f.path for f in fields), "SystemModstamp", "IsDeleted"])
    order = "" if api == "bulk" else " ORDER BY SystemModstamp ASC, Id ASC"
    return f"SELECT {', '.join(names)} FROM {obj}{order}"  # noqa: S608


def amplitude_value(value: Any) -> Any:
    """A Salesforce JSON value as the target sends it."""
    if isinstance(value, str):
        if len(value) == 28 and value[10] == "T" and value[23] in "+-":
            return value[:26] + ":" + value[26:]  # REST: ...000+0000 -> ...000+00:00
        if len(value) == 24 and value[10] == "T" and value[23] == "Z":
            return value[:23] + "+00:00"  # Bulk CSV: ...000Z -> ...000+00:00
        return value[:MAX_STRING]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the target reads JSON numbers as decimals and sends whole ones as integers
    return value


def _bulk_cast(sf_type: str) -> Any:
    """A CSV cell of one describe type as the tap types it ("" is null)."""
    if sf_type in {"int", "long"}:
        return lambda v: int(float(v)) if v else None
    if sf_type in {"double", "currency", "percent"}:
        return lambda v: float(v) if v else None
    if sf_type == "boolean":
        return lambda v: v.lower() == "true" if v else None
    return lambda v: v if v else None


def column_types(
    session: requests.Session, instance: str, version: str, obj: str, columns: list[str]
) -> list[str]:
    """The describe type of each CSV column (relationship paths followed one describe per hop)."""
    cache: dict[str, dict[str, dict[str, Any]]] = {}

    def fields(name: str) -> dict[str, dict[str, Any]]:
        if name not in cache:
            url = f"{instance}/services/data/v{version}/sobjects/{name}/describe"
            response = session.get(url, timeout=60)
            response.raise_for_status()
            cache[name] = {f["name"].lower(): f for f in response.json()["fields"]}
        return cache[name]

    types = []
    for column in columns:
        *hops, last = column.split(".")
        current = obj
        for hop in hops:
            ref = next(
                f
                for f in fields(current).values()
                if (f.get("relationshipName") or "").lower() == hop.lower()
            )
            current = ref["referenceTo"][0]
        types.append(fields(current)[last.lower()]["type"])
    return types


class Sender:
    """Packs quoted identifications into full requests and posts them, a few in flight."""

    def __init__(self, url: str, api_key: str, concurrency: int) -> None:
        self.url = url
        self.prefix = f"api_key={quote_plus(api_key)}&identification={quote_plus('[')}"
        self.suffix = quote_plus("]")
        self.overhead = len(self.prefix) + len(self.suffix)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
        self.session.mount("https://", adapter)
        self.pool = ThreadPoolExecutor(max_workers=concurrency)
        self.slots = threading.BoundedSemaphore(concurrency)
        self.errors: list[BaseException] = []
        self.parts: list[str] = []
        self.props = 0
        self.bytes = 0
        self.requests = 0
        self.groups = 0
        self.properties = 0
        self.payload_bytes = 0

    def add(self, quoted: str, props: int) -> None:
        size = len(quoted) + (len(SEPARATOR) if self.parts else 0)
        if self.parts and (
            len(self.parts) == MAX_IDENTIFICATIONS
            or self.props + props > MAX_PROPERTIES
            or self.overhead + self.bytes + size > MAX_BODY_BYTES
        ):
            self.flush()
            size = len(quoted)
        if props > MAX_PROPERTIES or self.overhead + size > MAX_BODY_BYTES:
            raise ValueError("one identification alone exceeds a request's limits")
        self.parts.append(quoted)
        self.props += props
        self.bytes += size

    def flush(self) -> None:
        if not self.parts:
            return
        body = (self.prefix + SEPARATOR.join(self.parts) + self.suffix).encode("ascii")
        self.requests += 1
        self.groups += len(self.parts)
        self.properties += self.props
        self.payload_bytes += self.bytes
        self.parts, self.props, self.bytes = [], 0, 0
        self.slots.acquire()
        future = self.pool.submit(self._post, body)
        future.add_done_callback(self._done)

    def _post(self, body: bytes) -> None:
        response = self.session.post(self.url, data=body, headers=FORM, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"Amplitude answered HTTP {response.status_code}: {response.text[:200]}")

    def _done(self, future: Future[None]) -> None:
        self.slots.release()
        if future.exception() is not None:
            self.errors.append(future.exception())  # type: ignore[arg-type]

    def close(self) -> None:
        self.flush()
        self.pool.shutdown(wait=True)
        self.session.close()
        if self.errors:
            raise self.errors[0]


def login(session: requests.Session, args: argparse.Namespace) -> tuple[str, str]:
    response = session.post(
        f"{args.login_url.rstrip('/')}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": args.client_id,
            "client_secret": args.client_secret,
            "refresh_token": args.refresh_token,
        },
        timeout=60,
    )
    response.raise_for_status()
    body = response.json()
    return body["access_token"], body["instance_url"].rstrip("/")


def rest_pages(
    session: requests.Session, instance: str, version: str, soql: str, counter: list[int]
) -> Iterator[list[dict[str, Any]]]:
    """Each page of records of ``soql`` via queryAll; ``counter[0]`` counts API calls."""
    response = session.get(f"{instance}/services/data/v{version}/queryAll", params={"q": soql}, timeout=300)
    while True:
        counter[0] += 1
        response.raise_for_status()
        body = response.json()
        yield body["records"]
        if body.get("done", True) or not body.get("nextRecordsUrl"):
            return
        response = session.get(instance + body["nextRecordsUrl"], timeout=300)


BULK_PAGE_ROWS = 10_000  # as the tap pages Bulk results


def bulk_csv_pages(
    session: requests.Session, instance: str, version: str, soql: str, counter: list[int]
) -> Iterator[str]:
    """Each CSV results page of a Bulk API 2.0 queryAll job of ``soql``."""
    base = f"{instance}/services/data/v{version}/jobs/query"
    response = session.post(base, json={"operation": "queryAll", "query": soql}, timeout=60)
    counter[0] += 1
    response.raise_for_status()
    job = response.json()["id"]
    while True:
        response = session.get(f"{base}/{job}", timeout=60)
        counter[0] += 1
        response.raise_for_status()
        state = response.json()["state"]
        if state == "JobComplete":
            break
        if state in ("Failed", "Aborted"):
            raise RuntimeError(f"Bulk job {job} ended {state}")
        time.sleep(0.1)
    locator = ""
    while True:
        params = {"maxRecords": str(BULK_PAGE_ROWS), **({"locator": locator} if locator else {})}
        response = session.get(f"{base}/{job}/results", params=params, timeout=300)
        counter[0] += 1
        response.raise_for_status()
        response.encoding = "utf-8"
        yield response.text
        locator = response.headers.get("Sforce-Locator") or "null"
        if locator == "null":
            return


def bulk_pages(
    session: requests.Session, instance: str, version: str, soql: str, counter: list[int], *, obj: str
) -> Iterator[list[dict[str, Any]]]:
    """Bulk results as pages of records shaped like the REST ones (typed, relationships nested)."""
    casts: list[Any] | None = None
    paths: list[list[str]] = []
    for text in bulk_csv_pages(session, instance, version, soql, counter):
        rows = csv.reader(io.StringIO(text))
        header = next(rows)
        if casts is None:
            casts = [_bulk_cast(t) for t in column_types(session, instance, version, obj, header)]
            counter[0] += 1  # describe (cached per object; one call in the benchmark)
            paths = [c.split(".") for c in header]
        page = []
        for row in rows:
            record: dict[str, Any] = {}
            for hops, cast, cell in zip(paths, casts, row, strict=True):
                node = record
                for hop in hops[:-1]:
                    node = node.setdefault(hop, {})
                node[hops[-1]] = cast(cell)
            page.append(record)
        yield page


def query_only(
    args: argparse.Namespace, session: requests.Session, instance: str, soql: str
) -> tuple[int, int]:
    """Rows and API calls of reading ``soql`` and parsing it, nothing else (the tap's floor)."""
    calls = [0]
    rows = 0
    if args.api == "bulk":
        for text in bulk_csv_pages(session, instance, args.api_version, soql, calls):
            rows += sum(1 for _ in csv.reader(io.StringIO(text))) - 1
    else:
        for page in rest_pages(session, instance, args.api_version, soql, calls):
            rows += len(page)
    return rows, calls[0]


def peak_rss() -> int:
    """This process's peak resident bytes. ``VmHWM`` first.

    ``ru_maxrss`` can carry the high-water mark of the process that spawned this one (it survives exec).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    obj, group_type, name_field, fields = load_mapping(Path(args.mapping))
    soql = args.soql or default_soql(obj, name_field, fields, args.api)
    session = requests.Session()
    token, instance = login(session, args)
    session.headers["Authorization"] = f"Bearer {token}"
    if args.mode == "query":
        try:
            rows, api_calls = query_only(args, session, instance, soql)
        finally:
            session.close()
        wall = time.perf_counter() - started
        return {
            "mode": "query",
            "api": args.api,
            "wall_s": round(wall, 3),
            "rows": rows,
            "rows_per_s": round(rows / wall, 1) if wall else None,
            "salesforce_api_calls": api_calls,
            "peak_rss_bytes": peak_rss(),
            "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 2),
            "soql": soql,
        }
    sender = Sender(args.amplitude_url, args.api_key, args.concurrency)
    calls = [0]
    rows = skipped = 0
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    pages = (
        bulk_pages(session, instance, args.api_version, soql, calls, obj=obj)
        if args.api == "bulk"
        else rest_pages(session, instance, args.api_version, soql, calls)
    )
    try:
        for page in pages:
            rows += len(page)
            for record in page:
                group_value = record.get(name_field)
                if record.get("IsDeleted") is True or group_value is None:
                    skipped += 1
                    continue
                set_: dict[str, Any] = {}
                unset: dict[str, str] = {}
                for field in fields:
                    value = field.value(record)
                    if value is None:
                        unset[field.prop] = "-"
                    else:
                        set_[field.prop] = amplitude_value(value)
                ops: dict[str, dict[str, Any]] = {}
                if set_:
                    ops["$set"] = set_
                if unset:
                    ops["$unset"] = unset
                identification = {
                    "group_type": group_type,
                    "group_value": str(group_value),
                    "group_properties": ops,
                }
                sender.add(quote_plus(dumps(identification)), len(set_) + len(unset))
    finally:
        sender.close()
        session.close()
    wall = time.perf_counter() - started
    return {
        "mode": "job",
        "api": args.api,
        "wall_s": round(wall, 3),
        "rows": rows,
        "rows_per_s": round(rows / wall, 1) if wall else None,
        "groups": sender.groups,
        "rows_not_sent": skipped,
        "salesforce_api_calls": calls[0],
        "amplitude_requests": sender.requests,
        "properties": sender.properties,
        "payload_bytes": sender.payload_bytes,
        "peak_rss_bytes": peak_rss(),
        "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 2),
        "soql": soql,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_floor", description=__doc__.splitlines()[0])
    parser.add_argument("--login-url", required=True, help="Salesforce login host (the emulator)")
    parser.add_argument("--mode", choices=("job", "query"), default="job", help="whole job, or query only")
    parser.add_argument(
        "--api", choices=("rest", "bulk"), default="rest", help="REST queryAll or Bulk API 2.0"
    )
    parser.add_argument("--amplitude-url", help="full /groupidentify URL (required with --mode job)")
    parser.add_argument("--mapping", required=True, help="mapping JSON (its first mapping is used)")
    parser.add_argument("--soql", help="the query to page (default: built from the mapping)")
    parser.add_argument("--api-version", default="62.0")
    parser.add_argument("--api-key", default="emulator-api-key")
    parser.add_argument("--client-id", default="emulator-client-id")
    parser.add_argument("--client-secret", default="emulator-client-secret")
    parser.add_argument("--refresh-token", default="emulator-refresh-token")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight (the target's default)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "job" and not args.amplitude_url:
        print("--amplitude-url is required with --mode job", file=sys.stderr)
        return 2
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
