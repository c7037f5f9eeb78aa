"""Bulk API 2.0 query jobs: create, poll, read CSV results page by page, delete."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from .data import Org, format_datetime, make_ids
from .errors import ApiError, json_response, not_found
from .query import Getter, compile_query

# Bulk queries cannot read binary (base64) fields. The failure seen in the wild is Bulk 1.0's
# "Batch failed: FeatureNotEnabled : Binary field not supported" (Data Loader exporting
# ContentVersion or Attachment with Body): the query is accepted and fails while it runs. A
# Bulk 2.0 job is emulated the same way: created normally, then Failed with that errorMessage.
BINARY_FIELD_ERROR = "FeatureNotEnabled : Binary field not supported"
DEFAULT_MAX_RECORDS = 50_000  # a results page when the client gives no maxRecords
MAX_JOBS = 100  # jobs kept; the oldest are forgotten (as if deleted after 7 days)

# Bulk API 2.0 splits a big query into primary-key (Id range) chunks by itself, for custom
# objects and the standard objects listed in "Understanding Bulk API 2.0 Query"
# (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/queries.htm);
# PK chunking makes 100,000 to 250,000 record chunks. ORDER BY or LIMIT turns chunking off:
# "Use of ORDER BY in a Bulk 2.0 query disables PKChunking for the query. With PKChunking
# disabled, the query takes longer to execute, and potentially results in query timeouts"
# (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/bulk_api_2_0_troubleshoot_query_timeouts.htm).
# Chunks run in parallel, so a chunked job's rows come chunk by chunk in no promised order:
# the emulator hands the chunks back last first, so a reader that assumes any order is caught.
# Nor is the output a snapshot: "the remaining results are fetched with extra queries" (Bulk
# API Developer Guide, "PK Chunking"), each chunk at its own time. The emulator selects a job's
# rows when the job is created and renders them (values, stamps included) as the results pages
# read them, chunk after chunk, so a row changed after its chunk was read comes out old while a
# later-changed row of a later chunk comes out new (airbytehq/airbyte#21500). Page by page, not a
# whole chunk at once: each results request costs what a page costs, as on a real org.
PK_CHUNK_ROWS = 100_000
PK_CHUNKED_STANDARD_OBJECTS = frozenset(
    {"Account", "Campaign", "CampaignMember", "Case", "Contact", "Lead", "Opportunity", "Task", "User"}
)


@dataclass
class Job:
    """A query job: its rows are chosen at creation; results render them as CSV on demand."""

    id: str
    operation: str
    sobject: str
    version: str
    created_ms: int
    ready_at: float
    rows: list[int]
    header: list[str]
    cells: list[Callable[[int], str]]
    state: str = "UploadComplete"
    error: str | None = None
    chunk_rows: int = 0  # rows per chunk (0: one chunk); chunk k holds rows[k*n:(k+1)*n]
    rendered: set[int] = field(default_factory=set)  # chunks read at least once

    def info(self, user_id: str, detail: bool = False) -> dict[str, Any]:
        """The job as the API describes it; ``detail`` adds the fields of ``GET jobs/query/{id}``."""
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": user_id,
            "createdDate": format_datetime(self.created_ms),
            "systemModstamp": format_datetime(self.created_ms),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
            "jobType": "V2Query",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if detail:
            done = self.state == "JobComplete"
            body["numberRecordsProcessed"] = len(self.rows) if done else 0
            body["retries"] = 0
            body["totalProcessingTime"] = 42 if done else 0
            body["isPkChunkingSupported"] = True
            if self.error:
                body["errorMessage"] = self.error
        return body


class BulkApi:
    """The ``/jobs/query`` resources of one emulator. ``delay`` seconds pass before a job completes."""

    def __init__(self, org: Org, delay: float = 0.0) -> None:
        self.org = org
        self.delay = delay
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._serial = 40_000
        self.query_timeout_rows: int | None = None
        self.pk_chunk_rows = PK_CHUNK_ROWS
        # Called with (job, chunk number) right after a chunk is rendered: tests change rows
        # there, between two chunks of one job, as a busy org does.
        self.on_chunk_rendered: Callable[[Job, int], None] | None = None

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()

    def fail_next_poll(self, job_id: str | None, message: str) -> None:
        """Make a job (the newest when ``job_id`` is None) end in state Failed."""
        with self._lock:
            job = self._jobs.get(job_id) if job_id else next(reversed(self._jobs.values()), None)
            if job is not None and job.state not in ("Aborted", "JobComplete"):
                job.state, job.error = "Failed", message

    # -- routing ---------------------------------------------------------------------------------
    def handle(self, request: Request, version: str, parts: list[str]) -> Response:
        """``parts`` follow ``jobs/query``: [], [id] or [id, "results"]."""
        method = request.method
        user = self.org.integration_user_id
        if not parts:
            if method == "POST":
                return json_response(self._create(request, version).info(user))
            raise _not_allowed(method, "POST")  # listing jobs: no plugin does
        job = self._job(parts[0])
        if len(parts) == 1:
            if method in ("GET", "HEAD"):
                return json_response(self._poll(job).info(user, detail=True))
            if method == "DELETE":
                # "You can only delete a job if its state is JobComplete, Aborted, or Failed"
                # (Bulk API 2.0 Developer Guide, "Delete a Query Job"): a running job is aborted first.
                with self._lock:
                    if self._poll_locked(job).state not in ("JobComplete", "Aborted", "Failed"):
                        raise ApiError(
                            400,
                            "API_ERROR",
                            "Error encountered when deleting the job because the job is not terminated",
                        )
                    self._jobs.pop(job.id, None)
                return Response(status=204)
            if method == "PATCH":
                return json_response(self._abort(request, job).info(user))
            raise _not_allowed(method, "GET, PATCH, DELETE")
        if parts[1:] == ["results"] and method in ("GET", "HEAD"):
            return self._results(request, job, version)
        raise not_found()

    def _job(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise not_found()
        return job

    # -- operations ------------------------------------------------------------------------------
    def _create(self, request: Request, version: str) -> Job:
        if request.mimetype != "application/json":
            raise ApiError(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"Content-Type header specified in HTTP request is not supported: {request.mimetype}",
            )
        try:
            body = json.loads(request.get_data(as_text=True))
        except ValueError:
            raise ApiError(400, "JSON_PARSER_ERROR", "Unexpected character in request body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", f"Invalid operation for a query job: {operation}")
        if body.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "INVALIDJOB", "Only CSV is supported for query jobs")
        if (body.get("columnDelimiter", "COMMA"), body.get("lineEnding", "LF")) != ("COMMA", "LF"):
            # Real jobs accept TAB, PIPE, … and CRLF; the plugins use the defaults only.
            raise ApiError(400, "INVALIDJOB", "only columnDelimiter COMMA and lineEnding LF are emulated")
        compiled = compile_query(self.org, str(body.get("query") or ""))
        q = compiled.query
        if not compiled.root.table.obj.bulk_queryable:
            # Salesforce's answer for objects Bulk cannot query (airbytehq/airbyte#13088).
            name = compiled.root.table.obj.name
            raise ApiError(400, "INVALIDENTITY", f"Entity '{name}' is not supported by the Bulk API.")
        if q.count:
            raise ApiError(400, "INVALIDJOB", "Aggregate queries are not supported by Bulk API 2.0 query")
        cells: list[Callable[[int], str]] = []
        header: list[str] = []
        error: str | None = None
        for path in q.fields:
            resolved = compiled.resolve(path)
            if resolved.field.type == "address":
                raise ApiError(
                    400,
                    "FUNCTIONALITY_NOT_ENABLED",
                    "Selecting compound data not supported in Bulk Query",
                )
            if resolved.field.type == "base64":
                error = BINARY_FIELD_ERROR
            header.append(
                ".".join((*(f.relationship or f.name for f in resolved.chain), resolved.field.name))
            )
            cells.append(_csv_cell(compiled.getter(resolved), resolved.field.type))
        rows: list[int] = []
        chunk_rows = 0
        if error is None:
            with self.org.lock:
                rows = compiled.run(include_deleted=operation == "queryAll")
            limit = q.limit
            obj = compiled.obj
            chunked = (
                not q.order and limit is None and (obj.custom or obj.name in PK_CHUNKED_STANDARD_OBJECTS)
            )
            too_many = self.query_timeout_rows is not None and len(rows) > self.query_timeout_rows
            chunk_rows = 0
            if chunked:  # Id order within a chunk (rows are stored in Id order), chunks reversed
                size = chunk_rows = self.pk_chunk_rows
                rows = [
                    row for start in reversed(range(0, len(rows), size)) for row in rows[start : start + size]
                ]
            elif too_many and (limit is None or limit > (self.query_timeout_rows or 0)):
                error, rows = "QUERY_TIMEOUT: Your query request was running for too long.", []
        with self._lock:
            self._serial += 1
            job = Job(
                id=make_ids("750", self._serial, 1)[0],
                operation=operation,
                sobject=compiled.obj.name,
                version=version,
                created_ms=self.org.now(),
                ready_at=time.monotonic() + self.delay,
                rows=rows,
                header=header,
                cells=cells,
                error=error,  # a job with an error ends Failed on its first poll
                chunk_rows=chunk_rows,
            )
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS:
                self._jobs.popitem(last=False)
        return job

    def _poll(self, job: Job) -> Job:
        with self._lock:
            return self._poll_locked(job)

    @staticmethod
    def _poll_locked(job: Job) -> Job:
        if job.state in ("UploadComplete", "InProgress"):
            if job.error:
                job.state = "Failed"
            else:
                job.state = "JobComplete" if time.monotonic() >= job.ready_at else "InProgress"
        return job

    def _abort(self, request: Request, job: Job) -> Job:
        """``PATCH {"state": "Aborted"}`` ("Abort a Query Job", Bulk API 2.0 Developer Guide).

        Only a job in UploadComplete or InProgress can be aborted.
        """
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise ApiError(400, "INVALIDJOB", 'The request body must be {"state": "Aborted"}')
        with self._lock:
            if self._poll_locked(job).state not in ("UploadComplete", "InProgress"):
                raise ApiError(400, "INVALIDJOBSTATE", f"Job {job.id} cannot be aborted in state {job.state}")
            job.state = "Aborted"
        return job

    def _results(self, request: Request, job: Job, version: str) -> Response:
        if version != job.version:
            raise ApiError(
                409,
                "INVALIDJOB",
                f"The job was created with API version {job.version}; read it with the same version",
            )
        if self._poll(job).state != "JobComplete":
            raise ApiError(400, "JOB_NOT_COMPLETE", f"Job {job.id} is not complete: {job.state}")
        locator = request.args.get("locator") or ""
        offset = _decode_locator(locator) if locator else 0
        max_records = request.args.get("maxRecords", str(DEFAULT_MAX_RECORDS))
        if not max_records.isdigit() or int(max_records) < 1:
            raise ApiError(400, "INVALIDJOB", f"Invalid maxRecords: {max_records}")
        end = min(len(job.rows), offset + int(max_records))
        lines = [",".join(f'"{name}"' for name in job.header)]
        size = job.chunk_rows or max(1, len(job.rows))
        position = offset
        while position < end:
            chunk = position // size
            stop = min(end, (chunk + 1) * size)
            with self.org.lock:  # this page's part of the chunk, from the rows as they are now
                lines.extend(",".join(cell(row) for cell in job.cells) for row in job.rows[position:stop])
            self._reached(job, chunk)
            position = stop
        text = "\n".join(lines) + "\n"
        next_locator = _encode_locator(end) if end < len(job.rows) else "null"
        return Response(
            text,
            content_type="text/csv; charset=UTF-8",
            headers={"Sforce-NumberOfRecords": str(end - offset), "Sforce-Locator": next_locator},
        )

    def _reached(self, job: Job, chunk: int) -> None:
        """Call ``on_chunk_rendered`` the first time a results page reaches ``chunk``."""
        with self._lock:
            first = chunk not in job.rendered
            job.rendered.add(chunk)
        hook = self.on_chunk_rendered
        if first and hook is not None:
            hook(job, chunk)


def _csv_cell(get: Getter, type_: str) -> Callable[[int], str]:
    """Row -> one CSV field: empty for null, otherwise quoted with quotes doubled."""

    def text(value: Any) -> str:
        if type_ == "datetime":
            return format_datetime(value).replace("+0000", "Z")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def cell(row: int) -> str:
        value = get(row)
        if value is None:
            return ""
        return '"' + text(value).replace('"', '""') + '"'

    return cell


def _encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_locator(locator: str) -> int:
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit():
        raise ApiError(400, "INVALIDLOCATOR", f"Invalid locator: {locator}")
    return int(text)


def _not_allowed(method: str, allowed: str) -> ApiError:
    return ApiError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}")
