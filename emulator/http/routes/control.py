"""The control surface under ``/_emulator``: the emulator's own API, not fal's.

Documented in ``control-openapi.yaml`` and the README; kept out of ``openapi.yaml``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.core.clock import ManualClock, check_advance
from emulator.core.faults import KNOWN_ERRORS, Fault, FaultError, Rule
from emulator.core.fixture_files import FixtureError
from emulator.core.lifecycle import PROFILES
from emulator.core.models import JSON, Failure, RequestRecord
from emulator.core.scheduler import TransitionError
from emulator.core.service import REQUEST_ACTIONS, Emulator
from emulator.core.spec import JSONRejected, parse_json
from emulator.core.wire import log_entry
from emulator.http.common import CONTROL_BODY_LIMIT, HTTPProblem, emulator_of, guard, handles, json_response, read_body


def _bad(message: str) -> HTTPProblem:
    return HTTPProblem(400, {"detail": message})


async def _json_body(request: Request) -> JSON:
    raw = await read_body(request, CONTROL_BODY_LIMIT)
    if not raw.strip():
        return {}
    try:
        data = parse_json(raw)
    except JSONRejected as exc:
        raise _bad(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad("body must be a JSON object")
    return data


def _namespace(request: Request, body: JSON | None = None) -> str | None:
    value = (body or {}).get("namespace", request.query_params.get("namespace"))
    if value is not None and not isinstance(value, str):
        raise _bad("'namespace' must be a string")
    return value


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise _bad(f"'{name}' must be an integer, not {raw!r}") from exc


async def health(request: Request) -> Response:
    emulator = emulator_of(request)
    durable = emulator.backend.durable
    failure = None if durable is None else durable.failure()
    if failure is not None:
        # A store that can write nothing more fails the health check: submits would only answer 503.
        return json_response({"status": "unavailable", "detail": failure}, 503)
    return json_response({"status": "ok", "profile": emulator.scheduler.profile.name, "requests": len(emulator.store)})


async def reset(request: Request) -> Response:
    emulator = guard(request)
    namespace = _namespace(request, await _json_body(request))
    emulator.reset(namespace)
    return json_response({"reset": namespace or "all"})


def _config(emulator: Emulator) -> JSON:
    scheduler = emulator.scheduler
    return {
        "profile": scheduler.profile.name,
        "runners": scheduler.runners,
        "paused": scheduler.paused,
        "concurrency_limit": emulator.settings.concurrency_limit,
        "clock": "manual" if isinstance(emulator.clock, ManualClock) else "system",
        "now": emulator.clock.now(),
        "faults": [rule.describe() for rule in emulator.faults.rules],
        "journal": emulator.journal.describe(),
        "fixtures": len(emulator.outputs.fixtures),
    }


async def get_config(request: Request) -> Response:
    return json_response(_config(guard(request)))


async def patch_config(request: Request) -> Response:
    emulator = guard(request)
    body = await _json_body(request)
    unknown = set(body) - {"profile", "runners", "faults", "concurrency_limit", "namespace"}
    if unknown:
        raise _bad(f"unknown setting(s): {', '.join(sorted(unknown))}")
    if "profile" in body and (not isinstance(body["profile"], str) or body["profile"] not in PROFILES):
        raise _bad(f"profile must be one of {', '.join(PROFILES)}")
    if "runners" in body and (not _whole(body["runners"]) or body["runners"] < 1):
        raise _bad("runners must be a positive integer")
    limit = body.get("concurrency_limit", 0)
    if not _whole(limit) or limit < 0:
        raise _bad("concurrency_limit must be a non-negative integer")
    rules = None
    if "faults" in body:
        if not isinstance(body["faults"], list):
            raise _bad("faults must be a list of rules")
        rules = [_rule(raw, _namespace(request, body)) for raw in body["faults"]]
    emulator.configure(
        profile=body.get("profile"),
        runners=body.get("runners"),
        concurrency_limit=limit if "concurrency_limit" in body else None,
        faults=rules,
        namespace=_namespace(request, body),
    )
    return json_response(_config(emulator))


def _whole(value: Any) -> bool:
    """A JSON integer (true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _rule(raw: Any, namespace: str | None) -> Rule:
    try:
        return Rule.parse(raw, namespace=namespace)
    except FaultError as exc:
        raise _bad(str(exc)) from exc


async def journal(request: Request) -> Response:
    emulator = guard(request)
    status = _int_param(request, "status")
    entries = emulator.journal.entries(
        namespace=request.query_params.get("namespace"),
        method=request.query_params.get("method"),
        path=request.query_params.get("path"),
        status=status,
        request_id=request.query_params.get("request_id"),
        since=_int_param(request, "since"),
        limit=_int_param(request, "limit"),
    )
    return json_response({"entries": [e.as_json() for e in entries], **emulator.journal.describe()})


def _describe(emulator: Emulator, record: RequestRecord) -> JSON:
    body: JSON = {
        "request_id": record.id,
        "namespace": record.namespace,
        "endpoint": record.endpoint,
        "status": record.state.value,
        "held": emulator.scheduler.is_held(record),
        "priority": record.priority.name.lower(),
        "submitted_at": record.submitted_at,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "input": record.input,
        "logs": [log_entry(line) for line in record.logs],
        "webhook_url": record.webhook_url,
    }
    if not record.done:
        body["queue_position"] = emulator.scheduler.position(record) if record.started_at is None else None
    if record.failure is not None:
        body["error"] = record.failure.body()
        body["status_code"] = record.failure.status_code
    elif record.output is not None:
        body["output"] = record.output
    return body


async def list_requests(request: Request) -> Response:
    emulator = guard(request)
    state = request.query_params.get("status")
    records = [
        r
        for r in emulator.store.records(request.query_params.get("namespace"))
        if state is None or r.state.value == state.upper()
    ]
    records.sort(key=lambda r: r.seq)
    return json_response({"requests": [_describe(emulator, r) for r in records]})


def _find(emulator: Emulator, request_id: str, namespace: str | None) -> RequestRecord:
    record = emulator.find(request_id, namespace)
    if record is None:
        raise HTTPProblem(404, {"detail": f"No request {request_id!r}"})
    return record


async def request_action(request: Request) -> Response:
    emulator = guard(request)
    body = await _json_body(request)
    record = _find(emulator, request.path_params["request_id"], _namespace(request, body))
    action = request.path_params["action"]
    if action not in REQUEST_ACTIONS:
        raise HTTPProblem(404, {"detail": f"Unknown action {action!r}: start, complete, fail, hold or release"})
    try:
        emulator.act(record, action, _failure(body) if action == "fail" else None)
    except TransitionError as exc:
        raise HTTPProblem(409, {"detail": str(exc)}) from exc
    return json_response(_describe(emulator, record))


def _failure(body: JSON) -> Failure:
    spec = {k: v for k, v in body.items() if k in ("status", "detail", "error_type")}
    if not spec:
        return KNOWN_ERRORS["runner_disconnected"]
    try:
        return Fault.parse({"kind": "complete_with_error", **spec}).failure()
    except (FaultError, TypeError) as exc:
        raise _bad(str(exc)) from exc


async def pause(request: Request) -> Response:
    guard(request).scheduler.pause()
    return json_response({"paused": True})


async def resume(request: Request) -> Response:
    guard(request).scheduler.resume()
    return json_response({"paused": False})


async def clock_advance(request: Request) -> Response:
    emulator = guard(request)
    body = await _json_body(request)
    seconds = body.get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise _bad("'seconds' must be a number >= 0")
    try:
        # A JSON number too large for a float (1e400) arrives as infinity: refused here too.
        check_advance(emulator.clock.now(), float(seconds))
    except (ValueError, OverflowError) as exc:
        raise HTTPProblem(422, {"detail": f"'seconds': {exc}"}) from exc
    fired = emulator.clock.advance(float(seconds))
    return json_response({"now": emulator.clock.now(), "timers_fired": fired})


async def clock_now(request: Request) -> Response:
    return json_response({"now": guard(request).clock.now()})


async def next_calls(request: Request) -> Response:
    """ "The next N matching calls answer X": a fault rule that fires ``count`` times."""
    emulator = guard(request)
    body = await _json_body(request)
    count = body.pop("count", 1)
    if not _whole(count) or count < 1:
        raise _bad("'count' must be a positive integer")
    namespace = _namespace(request, body)
    body.pop("namespace", None)
    rule = emulator.faults.add(_rule({**body, "times": count}, namespace))
    return json_response(rule.describe(), 201)


async def list_faults(request: Request) -> Response:
    emulator = guard(request)
    return json_response({"faults": [rule.describe() for rule in emulator.faults.rules]})


async def add_fault(request: Request) -> Response:
    emulator = guard(request)
    body = await _json_body(request)
    namespace = _namespace(request, body)
    body.pop("namespace", None)
    return json_response(emulator.faults.add(_rule(body, namespace)).describe(), 201)


async def clear_faults(request: Request) -> Response:
    emulator = guard(request)
    emulator.faults.clear(_namespace(request))
    return json_response({"faults": [rule.describe() for rule in emulator.faults.rules]})


async def reload_fixtures(request: Request) -> Response:
    emulator = guard(request)
    try:
        count = emulator.reload_fixtures()
    except FixtureError as exc:
        raise HTTPProblem(422, {"detail": f"fixtures not reloaded, the old ones stay: {exc}"}) from exc
    return json_response({"fixtures": count})


routes = [
    Route("/health", handles(health), methods=["GET"]),
    Route("/reset", handles(reset), methods=["POST"]),
    Route("/config", handles(get_config), methods=["GET"]),
    Route("/config", handles(patch_config), methods=["PATCH"]),
    Route("/journal", handles(journal), methods=["GET"]),
    Route("/requests", handles(list_requests), methods=["GET"]),
    Route("/requests/{request_id}/{action}", handles(request_action), methods=["POST"]),
    Route("/pause", handles(pause), methods=["POST"]),
    Route("/resume", handles(resume), methods=["POST"]),
    Route("/clock", handles(clock_now), methods=["GET"]),
    Route("/clock/advance", handles(clock_advance), methods=["POST"]),
    Route("/next", handles(next_calls), methods=["POST"]),
    Route("/faults", handles(list_faults), methods=["GET"]),
    Route("/faults", handles(add_fault), methods=["POST"]),
    Route("/faults", handles(clear_faults), methods=["DELETE"]),
    Route("/fixtures/reload", handles(reload_fixtures), methods=["POST"]),
]


async def info(request: Request) -> Response:
    """How this server was started, for ``any-llm-emulator env``: ports, CA bundle, data dir, auth."""
    settings = guard(request).settings
    bundle = settings.ca_bundle
    return json_response(
        {
            "host": settings.host,
            "port": settings.port,
            "tls_port": settings.tls_port,
            "ca_bundle": None if bundle is None else str(bundle),
            "data_dir": str(settings.data_dir),
            "require_auth": settings.require_auth,
            "server": settings.server,
            # The loop this call runs on, which ``--loop`` chooses for ``serve``.
            "loop": "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio",
            "store": settings.store.split("://", 1)[0],
        }
    )


routes.append(Route("/info", handles(info), methods=["GET"]))
