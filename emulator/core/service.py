"""The emulator as one object: the core wired together, and one call per route. No HTTP here.

A route parses its request into a ``Call`` and hands it to ``Emulator.call``, which owns
everything a call decides: fault rules, validation, limits, the webhook mode, durability and
the shared store's refresh. It answers with a ``Reply`` (or raises ``Problem``) that the route
serialises.
"""

from __future__ import annotations

import functools
import http
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from emulator.config import Settings
from emulator.core.catalog import load_spec
from emulator.core.clock import Clock, ManualClock, SystemClock
from emulator.core.errors import Problem, not_found, validation_problem
from emulator.core.events import Hub
from emulator.core.faults import HTTP_KINDS, Fault, Faults, Rule
from emulator.core.fixture_files import Fixtures, load_fixtures
from emulator.core.hosts import OPENAI_BASE_PATH
from emulator.core.ids import IdFactory
from emulator.core.journal import Journal
from emulator.core.lifecycle import PROFILES
from emulator.core.models import JSON, Failure, Priority, RequestRecord, State
from emulator.core.outputs import Dialect, Outputs
from emulator.core.queues import LocalQueue, SharedQueueStrategy
from emulator.core.scheduler import CancelResult, Scheduler, Submission
from emulator.core.spec import Operation, Spec
from emulator.core.storage import Storage
from emulator.core.streams import dropped_after, output_events, status_events
from emulator.core.wire import status_body
from emulator.endpoints.behaviour import GeneratedOutputs, InputFiles
from emulator.endpoints.documents import EndpointDocument, load_documents
from emulator.endpoints.registry import Endpoint, EndpointRegistry
from emulator.store import Backend, Store, StoreError, open_store
from emulator.webhooks import Webhooks
from emulator.webhooks.model import parse_mode, refuse_control_target

if TYPE_CHECKING:
    import httpx

_EMPTY: Mapping[str, str] = MappingProxyType({})
# Emulator-only header on submit: this request's webhook misbehaves in the named way.
WEBHOOK_MODE_HEADER = "x-emulator-webhook-mode"


class Call:
    """One queue or run call, parsed: what it addresses and what it carries."""

    __slots__ = (
        "action", "base_url", "body", "endpoint", "files_url", "headers", "namespace", "query", "request_id",
    )  # fmt: skip

    def __init__(
        self,
        action: str,  # submit, status, status_stream, result, cancel, run, run_stream
        namespace: str,
        endpoint: str,
        request_id: str | None = None,
        base_url: str = "",  # where the client reached this server, so the URLs handed back lead here
        body: bytes = b"",
        query: Mapping[str, str] = _EMPTY,
        headers: Mapping[str, str] = _EMPTY,
        files_url: str | None = None,  # the CDN base URL the client reaches, for generated files
    ) -> None:
        self.files_url = files_url
        self.action = action
        self.namespace = namespace
        self.endpoint = endpoint
        self.request_id = request_id
        self.base_url = base_url
        self.body = body
        self.query = query
        self.headers = headers


@dataclass(slots=True)
class Reply:
    """The answer to a call: status, JSON body and headers, or a stream of events."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: AsyncIterator[bytes] | None = None
    # A body or connection fault for the serialiser to apply (truncated, malformed, reset).
    fault: Fault | None = None
    # The serialiser's form of this reply, left here by it: a kept reply (``Kept``) is handed out
    # again unchanged, and so is its serialised form.
    rendered: object = field(default=None, compare=False, repr=False)


# Replies kept: a few clients poll their requests' status, and fetch their results, over and over.
KEPT_REPLIES = 1024
# A status reply with logs holds a copy of every line: kept only for a request with at most these.
KEPT_LOG_LINES = 32


class Kept:
    """The replies to status and result calls on completed requests, by what decides them.

    A completed request's answer changes only when the scheduler changes its record, which bumps
    the record's version: a reply is handed out again only for the very record it was built from
    (not one that replaced it after a reset, an expiry or a new submit) at that version. Bounded:
    past ``size`` replies the table starts again.
    """

    __slots__ = ("_replies", "size")

    def __init__(self, size: int = KEPT_REPLIES) -> None:
        self.size = size
        self._replies: dict[tuple[str, str, str, str, bool], tuple[RequestRecord, int, Reply]] = {}

    def get(self, key: tuple[str, str, str, str, bool], record: RequestRecord) -> Reply | None:
        found = self._replies.get(key)
        if found is not None and found[0] is record and found[1] == record.version:
            return found[2]
        return None

    def keep(self, key: tuple[str, str, str, str, bool], record: RequestRecord, reply: Reply) -> None:
        replies = self._replies
        if len(replies) >= self.size and key not in replies:
            replies.clear()
        replies[key] = (record, record.version, reply)

    def __len__(self) -> int:
        return len(self._replies)


_CANCEL_CODES = {CancelResult.REQUESTED: 202, CancelResult.ALREADY_COMPLETED: 400, CancelResult.NOT_FOUND: 404}
_CANCEL_DETAILS = {
    CancelResult.REQUESTED: "Cancellation requested",
    CancelResult.ALREADY_COMPLETED: "Request already completed",
    CancelResult.NOT_FOUND: "Request not found",
}


@dataclass
class Emulator:
    """Settings, spec, clock, store, outputs, scheduler, faults, journal, webhooks and files of one emulator."""

    settings: Settings
    spec: Spec
    clock: Clock
    backend: Backend
    outputs: Outputs
    scheduler: Scheduler
    faults: Faults
    journal: Journal
    webhooks: Webhooks
    files: Storage
    events: Hub
    endpoints: EndpointRegistry = field(default_factory=EndpointRegistry)
    kept: Kept = field(default_factory=Kept)
    # Per action: its operation, and whether that operation reads only optional query parameters.
    _silent: dict[str, tuple[Operation, bool]] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        spec: Spec | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> Emulator:
        """Wire the core from settings; every piece can be injected instead.

        Raises on bad fixtures, and ``DocumentError`` on an endpoint document that is not fal's shape.
        """
        if clock is None:
            clock = ManualClock() if settings.clock == "manual" else SystemClock()
        if store is None:
            backend = open_store(
                settings.store,
                retention_seconds=settings.retention_seconds,
                retention_count=settings.retention_count,
            )
        else:
            backend = Backend.of(store)
        spec = spec or load_spec(settings.spec_path, any_model=settings.any_model)
        # Uploaded files (the storage surfaces) live in the data directory; nothing is written until an upload.
        files = Storage(settings.data_dir / "storage", clock=clock, max_bytes=settings.max_upload_bytes)
        # The built-in endpoints first (the ones the spec was loaded with), then the loaded ones: a loaded
        # document for a built-in id replaces it. Each endpoint reaches the spec the same way.
        endpoints = EndpointRegistry(spec.documents)
        for document in load_documents(settings.endpoints):
            endpoints.add(document)
        for endpoint in endpoints:
            spec.add_endpoint(endpoint.document, endpoint.validator.operation)
        generated = GeneratedOutputs(
            endpoints, files, seed=settings.seed, default_files_url=f"http://{settings.host}:{settings.port}/cdn"
        )
        outputs = Outputs(
            Fixtures(settings.fixture_paths()),
            seed=settings.seed,
            checks=[InputFiles(endpoints, files, [settings.host], settings.file_inputs)],
            behaviour_for=generated.behaviour_for,
        )
        faults = Faults(settings.seed)
        shared = backend.shared
        scheduler = Scheduler(
            validate=functools.partial(_schema_errors, spec),
            clock=clock,
            store=backend.records,
            outputs=outputs,
            profile=PROFILES[settings.profile],
            runners=settings.runners,
            ids=IdFactory(clock, settings.seed),
            faults=faults,
            queue=LocalQueue() if shared is None else SharedQueueStrategy(shared),
        )
        scheduler.concurrency_limit = settings.concurrency_limit
        # fal's OpenAI-compatible ids answer in OpenAI's JSON over the same text, on either surface.
        outputs.dialect_for = _openai_dialect(settings, scheduler.ids, clock)
        journal = Journal(settings.journal_size, settings.journal_body_bytes)
        webhooks = Webhooks.build(
            settings.data_dir,
            clock=clock,
            senders=settings.webhook_senders,
            time_scale=settings.webhook_time_scale,
            http_client=http_client,
        )
        scheduler.on_complete.append(webhooks.on_complete)
        outbox = backend.outbox
        if outbox is not None:
            webhooks.dispatcher.on_settled.append(
                lambda delivery: outbox.webhook_settled(delivery.user_id, delivery.request_id)
            )
        scheduler.on_retry.append(functools.partial(_journal_retry, journal, clock))
        events = Hub()
        scheduler.on_change.append(events.publish)
        return cls(
            settings, spec, clock, backend, outputs, scheduler, faults, journal, webhooks, files, events, endpoints
        )

    @property
    def store(self) -> Store:
        return self.backend.records

    def load_endpoint(self, document: EndpointDocument) -> Endpoint:
        """Add (or replace) an endpoint from its document; its queue and run surfaces answer at once."""
        endpoint = self.endpoints.add(document)
        self.spec.add_endpoint(document, endpoint.validator.operation)
        return endpoint

    # -- the life of the process -------------------------------------------------------------

    async def start(self) -> None:
        """Start the senders and pick up where a durable or shared store's last run stopped."""
        await self.webhooks.start()
        await self.scheduler.queue.start(self.scheduler)
        outbox = self.backend.outbox
        if outbox is not None:
            for record in outbox.unsent_webhooks():
                self.webhooks.on_complete(record)

    async def stop(self) -> None:
        """Stop timers and senders, then write out and close the store."""
        self.scheduler.close()
        await self.scheduler.queue.stop()
        await self.webhooks.stop()
        if self.backend.durable is not None:
            self.backend.durable.close()

    # -- the queue and run surfaces: one call each -------------------------------------------

    async def call(self, call: Call) -> Reply:
        """Answer one queue or run call; raise ``Problem`` for an answer other than success."""
        # No rule at all (nearly every call): nothing to match, and no coroutine to await for it.
        fault = await self._fault(call, call.request_id) if self.faults.rules else None
        if call.action == "submit":
            reply = await self._submit(call)
            reply.fault = fault
            return reply
        if call.action in ("run", "run_stream"):
            return await self._run(call, fault)
        return await self._on_request(call, fault)

    async def _submit(self, call: Call) -> Reply:
        # fal's queue does not know the app's schema: a body that breaks it is accepted, and the
        # request fails with the app's 422 when it runs (unless the early check is asked for).
        params, body, invalid = self._checked(call)
        if invalid and self.settings.validate_at_submit:
            raise validation_problem(invalid)
        namespace = call.namespace
        max_length = params.get("fal_max_queue_length")
        scheduler = self.scheduler
        if isinstance(max_length, int):
            waiting = scheduler.queue_length(namespace)
            if waiting >= max_length:
                raise Problem(
                    429,
                    {"detail": f"Queue is full: {waiting} requests waiting, fal_max_queue_length is {max_length}"},
                )
        webhook = params.get("fal_webhook")
        refuse_control_target(webhook if isinstance(webhook, str) else None)
        mode = call.headers.get(WEBHOOK_MODE_HEADER)
        if not invalid:  # renders, if the endpoint makes files, happen in a worker thread
            await self.outputs.prepare(call.endpoint, body, call.files_url)
        record = scheduler.submit(
            namespace,
            Submission(
                endpoint=call.endpoint,
                input=body,
                priority=_priority(params),
                timeout=_timeout(params),
                webhook_url=webhook if isinstance(webhook, str) else None,
                webhook_mode=None if mode is None else parse_mode(mode.strip(), ["header", WEBHOOK_MODE_HEADER]).value,
                invalid=invalid or None,
                retries=0 if _no_retry(call.headers) else self.settings.queue_retries,
                files_url=call.files_url,
            ),
        )
        # Accepted means kept: a durable or shared store has the request before the client hears so.
        durable = self.backend.durable
        if durable is not None:
            writing = durable.durable()
            if writing is not None:
                await _stored(writing)
        envelope = status_body(record, call.base_url, position=scheduler.position(record), logs=None)
        return Reply(200, envelope, {"x-fal-request-id": record.id})

    async def _on_request(self, call: Call, fault: Fault | None) -> Reply:
        """Status, status stream, result and cancel: calls on one request."""
        assert call.request_id is not None
        shared = self.backend.shared
        if shared is not None:  # read the truth, which another process may have changed
            refreshing = shared.refresh(call.namespace, call.request_id)
            if refreshing is not None:
                await _stored(refreshing)
        record = self.scheduler.get(call.namespace, call.request_id)
        if record is not None and call.endpoint not in (record.app_id, record.endpoint):
            record = None
        if record is not None and record.rules:
            fault = fault or await self._fault(call, record.id, record.rules)
        action = call.action
        if action == "cancel":
            reply = self._cancel(call.namespace, record)
            reply.fault = fault
            return reply
        if record is None:
            raise not_found("Request not found")
        if action == "status_stream":
            params = self._parameters(call, "status_stream")
            events = status_events(
                self.scheduler,
                self.clock,
                record,
                call.base_url,
                with_logs=_wants_logs(params),
                keepalive=self.settings.keepalive_seconds,
            )
            return _stream(record, events, fault)
        with_logs = action == "status" and _wants_logs(self._parameters(call, "status"))
        if not record.done:
            if action != "status":
                raise Problem(400, {"detail": "Request is still in progress"}, {"x-fal-request-id": record.id})
            # Only a queued request's body names its position.
            position = self.scheduler.position(record) if record.state is State.IN_QUEUE else 0
            return _status_reply(record, call.base_url, position, with_logs, fault)
        # A completed request answers the same until its record changes: kept, unless a fault
        # spoils this answer, another process may change the record (a shared store), or its logs
        # would make the reply large.
        if fault is not None or shared is not None or (with_logs and len(record.logs) > KEPT_LOG_LINES):
            return _done_reply(record, action, call.base_url, with_logs, fault)
        key = (call.namespace, record.id, action, call.base_url, with_logs)
        kept = self.kept.get(key, record)
        if kept is None:
            kept = _done_reply(record, action, call.base_url, with_logs, None)
            self.kept.keep(key, record, kept)
        return kept

    def _cancel(self, namespace: str, record: RequestRecord | None) -> Reply:
        outcome = CancelResult.NOT_FOUND if record is None else self.scheduler.cancel(namespace, record.id)
        headers = {} if record is None else {"x-fal-request-id": record.id}
        return Reply(_CANCEL_CODES[outcome], {"status": outcome.value, "detail": _CANCEL_DETAILS[outcome]}, headers)

    async def _run(self, call: Call, fault: Fault | None) -> Reply:
        """A synchronous run: the output when it completes, or its output streamed as it is written.

        fal runs these without its queue: the input is checked at once, a key over its concurrency
        limit is refused, and a failed run is not tried again.
        """
        params, body, invalid = self._checked(call)
        if invalid:
            raise self._refused(call, invalid)
        submission = Submission(
            endpoint=call.endpoint,
            input=body,
            priority=_priority(params),
            timeout=_timeout(params),
            action=call.action,
            files_url=call.files_url,
        )
        record = await self.start_run(call.namespace, submission)
        scheduler = self.scheduler
        if fault is None and record.rules:
            # Rules a fixture attached to this very request exist only once it is accepted.
            fault = await self._fault(call, record.id, record.rules, scoped_only=True)
        if call.action == "run":
            await scheduler.wait_done(record)
            reply = output_reply(record)
            reply.fault = fault
            return reply
        # Wait for the run to start; a run that fails before starting answers as JSON.
        while record.state is State.IN_QUEUE:
            await scheduler.wait(record, record.version)
        if record.plan is not None and not record.plan.tokens:
            # Nothing to stream (the run is planned to fail): answer once it ends, as JSON.
            await scheduler.wait_done(record)
        if record.failure is not None:
            reply = failure_reply(record, record.failure)
            reply.fault = fault
            return reply
        return _stream(record, output_events(scheduler, record), fault)

    async def start_run(self, namespace: str, submission: Submission) -> RequestRecord:
        """Accept a synchronous run as a request (refused while the key is at its concurrency limit).

        The run surface and the OpenAI-compatible surface both start their calls here: each is a
        request like a queued one (its record, its journal link, its place in the dashboard).
        """
        self._check_concurrency(namespace)
        await self.outputs.prepare(submission.endpoint, submission.input, submission.files_url)
        return self.scheduler.submit(namespace, submission)

    # -- what every call shares ------------------------------------------------------------

    async def _fault(
        self, call: Call, request_id: str | None, scoped: list[Rule] | None = None, *, scoped_only: bool = False
    ) -> Fault | None:
        """Apply the fault rule matching this call, if any.

        Latency waits (on the emulator's clock) and lets the call go on; an HTTP error is raised
        as its answer; body and connection faults are returned for the reply to carry.
        """
        if not scoped and not self.faults.rules:  # no rule at all: nearly every call
            return None
        fault = self.faults.match(
            call.action,
            call.namespace,
            endpoint=call.endpoint,
            request_id=request_id,
            kinds=HTTP_KINDS,
            scoped=scoped,
            scoped_only=scoped_only,
        )
        if fault is None:
            return None
        if fault.kind == "latency":
            await self.clock.sleep(fault.seconds)
            return None
        if fault.kind == "http_error":
            media_type, body = fault.http_body()
            headers = {}
            if fault.with_request_id:
                headers["x-fal-request-id"] = request_id or self.scheduler.ids.new()
            if fault.retry_after is not None:
                headers["retry-after"] = f"{fault.retry_after:g}"
            if fault.error_type is not None:
                headers["x-fal-error-type"] = fault.error_type
            raise Problem(fault.status or 500, None, headers, raw=(media_type, body))
        return fault

    def _operation(self, action: str, endpoint: str | None = None) -> Operation:
        operation = self.spec.operation(action, endpoint)
        assert operation is not None, f"openapi.yaml declares no {action} operation for {endpoint}"
        return operation

    def _checked(self, call: Call) -> tuple[JSON, JSON, list[JSON]]:
        """Parameters and body of a submit or run, checked against the document.

        Bad parameters, or a body that is no JSON object, answer 422 at once; the body's schema
        errors are returned, for the caller to refuse now or when the request runs. An accepted body
        may be shared with earlier requests that sent the same bytes: a request's input is read only.
        """
        operation = self._operation(call.action, call.endpoint)
        params, errors = operation.validate_parameters(call.query, call.headers)
        body, body_errors = operation.shared_body(call.body)
        if errors or any(_whole_body(error) for error in body_errors):
            raise self._refused(call, errors + body_errors)
        return params, body, body_errors

    def _refused(self, call: Call, errors: list[JSON]) -> Problem:
        """fal's 422 for a call's input; a run's names a request id, as fal's gateway names every call it
        answers (a queued submit refused at once has no request yet)."""
        named = call.action in ("run", "run_stream")
        return validation_problem(errors, request_id=self.scheduler.ids.new() if named else None)

    def _parameters(self, call: Call, action: str) -> JSON:
        operation = self.spec.operation(action)
        if operation is None:
            return {}
        if not call.query:
            # Nearly every poll has no query string: when the operation reads no header and requires
            # nothing, there is nothing to read and nothing can be missing.
            known = self._silent.get(action)
            if known is None or known[0] is not operation:
                known = self._silent[action] = (operation, _reads_only_optional_query(operation))
            if known[1]:
                return {}
        params, errors = operation.validate_parameters(call.query, call.headers)
        if errors:
            raise validation_problem(errors)
        return params

    def _check_concurrency(self, namespace: str) -> None:
        """fal's per-key concurrency limit for a sync run: 429 while this key has that many requests in
        flight (queued requests wait their turn instead)."""
        limit = self.settings.concurrency_limit
        if limit and self.scheduler.in_flight(namespace) >= limit:
            raise Problem(
                429,
                {"detail": f"Concurrency limit of {limit} requests in flight reached for this key"},
                {"retry-after": "1"},
            )

    # -- the control API's calls -------------------------------------------------------------

    def configure(
        self,
        *,
        profile: str | None = None,
        runners: int | None = None,
        concurrency_limit: int | None = None,
        faults: list[Rule] | None = None,
        namespace: str | None = None,
    ) -> None:
        """Change the running emulator: timing profile, runners, concurrency limit, a namespace's fault rules."""
        if profile is not None:
            self.scheduler.profile = PROFILES[profile]
        if runners is not None:
            self.scheduler.set_runners(runners)
        if concurrency_limit is not None:
            self.settings = self.settings.replace(concurrency_limit=concurrency_limit)
            self.scheduler.set_concurrency_limit(concurrency_limit)
        if faults is not None:
            self.faults.replace(faults, namespace)

    def find(self, request_id: str, namespace: str | None = None) -> RequestRecord | None:
        """A request by id, in one namespace or in whichever has it."""
        if namespace:
            return self.store.get(namespace, request_id)
        for record in self.store.records():
            if record.id == request_id:
                return record
        return None

    def act(self, record: RequestRecord, action: str, failure: Failure | None = None) -> None:
        """Drive one request by hand: start, complete, fail, hold or release (TransitionError if it cannot)."""
        actions: dict[str, Callable[[RequestRecord], None]] = {
            "start": self.scheduler.start,
            "complete": self.scheduler.complete,
            "hold": self.scheduler.hold,
            "release": self.scheduler.release,
        }
        if action == "fail":
            assert failure is not None
            self.scheduler.fail(record, failure)
            return
        actions[action](record)

    def reset(self, namespace: str | None = None) -> None:
        """Forget requests, journal entries, fault rules and fixture sequences (all, or one namespace's)."""
        self.scheduler.reset(namespace)
        self.journal.clear(namespace)
        self.faults.clear(namespace)
        self.outputs.reset_counts(namespace)
        self.webhooks.reset(namespace)
        self.events.reset(namespace)

    def reload_fixtures(self) -> int:
        """Read the fixture files again; keep the old ones if a file is bad. Returns the count."""
        fixtures = load_fixtures(self.settings.fixture_paths())
        self.outputs.fixtures = fixtures
        return len(fixtures)


REQUEST_ACTIONS = frozenset({"start", "complete", "fail", "hold", "release"})


# Error types fal's toolkit raises from inside an app (fal.toolkit.exceptions); it sends each
# with X-Fal-Retryable, false for these input errors. FastAPI's own 422s carry no such header.
TOOLKIT_ERROR_TYPES = frozenset(
    {
        "file_download_error",
        "image_load_error",
        "file_too_large",
        "image_too_small",
        "image_too_large",
        "image_aspect_ratio_error",
    }
)


def failure_reply(record: RequestRecord, failure: Failure) -> Reply:
    """A failed request's answer: the app's status code and body."""
    headers = {"x-fal-request-id": record.id}
    if failure.error_type is not None:
        headers["x-fal-error-type"] = failure.error_type
    if failure.error_type == "request_timeout":
        # Tells the clients this was the caller's own start deadline: do not retry.
        headers["x-fal-request-timeout-type"] = "user"
    if failure.status_code == 422:
        headers["x-fal-billable-units"] = "0"  # an input the app refused is not billed
    if isinstance(failure.detail, list) and any(
        isinstance(item, dict) and item.get("type") in TOOLKIT_ERROR_TYPES for item in failure.detail
    ):
        headers["x-fal-retryable"] = "false"
    body = failure.body()
    if not _has_reason_phrase(failure.status_code):
        # 499 has no standard reason phrase, so the status line carries none, and the JS client
        # builds ApiError.message from body.message or that phrase: give it the message.
        body["message"] = failure.message
    return Reply(failure.status_code, body, headers)


def _has_reason_phrase(status_code: int) -> bool:
    try:
        http.HTTPStatus(status_code)
    except ValueError:
        return False
    return True


def _status_reply(record: RequestRecord, base_url: str, position: int, with_logs: bool, fault: Fault | None) -> Reply:
    body = status_body(record, base_url, position=position, logs=list(record.logs) if with_logs else None)
    return Reply(200 if record.done else 202, body, {"x-fal-request-id": record.id}, fault=fault)


def _done_reply(record: RequestRecord, action: str, base_url: str, with_logs: bool, fault: Fault | None) -> Reply:
    """A completed request's status or result."""
    if action == "status":
        return _status_reply(record, base_url, 0, with_logs, fault)
    reply = output_reply(record)
    reply.fault = fault
    return reply


def output_reply(record: RequestRecord) -> Reply:
    """A completed request's answer: its output, or its failure."""
    if record.failure is not None:
        return failure_reply(record, record.failure)
    headers = {"x-fal-request-id": record.id, "x-fal-billable-units": str(record.billable_units)}
    return Reply(200, record.output, headers)


def _stream(record: RequestRecord, events: AsyncIterator[bytes], fault: Fault | None) -> Reply:
    if fault is not None and fault.kind == "drop_stream":
        events = dropped_after(events, fault.after_events)
    headers = {"x-fal-request-id": record.id, "cache-control": "no-cache"}
    return Reply(200, None, headers, events=events, fault=fault)


async def _stored(pending: Awaitable[None]) -> None:
    """Wait for the store; a store that is down answers 503."""
    try:
        await pending
    except StoreError as exc:
        raise Problem(503, {"detail": f"Store unavailable: {exc}"}) from exc


def _priority(params: JSON) -> Priority:
    return Priority.LOW if params.get("x-fal-queue-priority") == "low" else Priority.NORMAL


def _timeout(params: JSON) -> float | None:
    value = params.get("x-fal-request-timeout")
    return float(value) if isinstance(value, (int, float)) else None


def _reads_only_optional_query(operation: Operation) -> bool:
    """Whether ``validate_parameters`` of an empty query answers ``({}, [])`` whatever the headers."""
    return all(
        param.location == "path" or (param.location == "query" and not param.required) for param in operation.parameters
    )


def _wants_logs(params: JSON) -> bool:
    return params.get("logs") in ("1", "true")


def _openai_dialect(settings: Settings, ids: IdFactory, clock: Clock) -> Callable[[str], Dialect | None]:
    """The OpenAI dialect for fal's OpenAI-compatible ids, its module imported with the first such call."""
    prefix = OPENAI_BASE_PATH + "/"
    made: list[Callable[[str], Dialect | None]] = []

    def dialect_for(endpoint: str) -> Dialect | None:
        if not endpoint.startswith(prefix):
            return None
        if not made:
            from emulator.core.openai_compat.answers import OpenAIDialect

            made.append(OpenAIDialect(seed=settings.seed, ids=ids, clock=clock).dialect_for)
        return made[0](endpoint)

    return dialect_for


def _whole_body(error: JSON) -> bool:
    """An error about the body as a whole (not JSON, not an object, missing), not one of its fields."""
    return error["type"] == "json_invalid" or len(error["loc"]) < 2


_YES = frozenset({"1", "true", "yes"})


def _no_retry(headers: Mapping[str, str]) -> bool:
    """``x-fal-no-retry: 1|true|yes`` turns the queue's retries off for one request."""
    return headers.get("x-fal-no-retry", "").strip().lower() in _YES


def _schema_errors(spec: Spec, endpoint: str, data: JSON) -> list[JSON] | None:
    """A stored input checked against its endpoint's schema again (a restored or claimed request)."""
    operation = spec.operation("submit", endpoint)
    if operation is None:
        return None
    _, errors = operation.validate_body(json.dumps(data).encode())
    return errors or None


def _journal_retry(journal: Journal, clock: Clock, record: RequestRecord, failure: Failure) -> None:
    """The journal shows each run the queue tried again, with the gateway request id of the next attempt."""
    if not journal.enabled:
        return
    body = json.dumps({"error": failure.message, "next_gateway_request_id": record.gateway_request_id}).encode()
    entry = journal.record(
        time=clock.now(),
        namespace=record.namespace,
        method="RETRY",
        path=f"/{record.endpoint}/requests/{record.id}",
        query="",
        headers={},
        body=body,
    )
    entry.status = failure.status_code
    entry.request_id = record.id
