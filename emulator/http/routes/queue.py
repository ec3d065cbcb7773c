"""The queue surface (``queue.fal.run``): submit, status, status stream, result, cancel."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from emulator.core.errors import Problem, not_found
from emulator.core.service import Call, Emulator
from emulator.core.spec import Spec
from emulator.http.common import (
    authenticate,
    emulator_of,
    headers_of,
    method_not_allowed,
    problem_response,
    query_of,
    read_body,
    render,
)
from emulator.http.hosts import urls_of

_REQUEST_ACTIONS = {
    (): ("result", "GET"),
    ("status",): ("status", "GET"),
    ("status", "stream"): ("status_stream", "GET"),
    ("cancel",): ("cancel", "PUT"),
}


@dataclass(frozen=True, slots=True)
class Target:
    """What a queue path addresses: an endpoint to submit to, or one request's action."""

    action: str
    method: str
    endpoint: str
    request_id: str | None = None


# Paths already mapped, with the endpoints and app ids they were mapped against (the spec's sets,
# replaced whenever an endpoint is added): a client polls one request's status path many times,
# and submits to a handful of endpoints.
_parsed: dict[str, tuple[frozenset[str], frozenset[str], Target]] = {}
_PARSED_KEPT = 4096


def parse_path(path: str, spec: Spec) -> Target:
    """Map a path to its target; 404 for anything the document does not declare."""
    endpoints, app_ids = spec.endpoints, spec.app_ids
    found = _parsed.get(path)
    if found is not None and found[0] is endpoints and found[1] is app_ids:
        return found[2]
    target = _parse_path(path, spec)
    if len(_parsed) >= _PARSED_KEPT:
        _parsed.clear()
    _parsed[path] = (endpoints, app_ids, target)
    return target


def _parse_path(path: str, spec: Spec) -> Target:
    segments = path.strip("/").split("/")
    if "" in segments:
        segments = [s for s in segments if s]
    index = _index_of_requests(segments)
    if index:
        prefix = "/".join(segments[:index])
        rest = tuple(segments[index + 2 :])
        if (
            index + 1 < len(segments)
            and rest in _REQUEST_ACTIONS
            and (prefix in spec.app_ids or prefix in spec.endpoints)
        ):
            action, method = _REQUEST_ACTIONS[rest]
            return Target(action, method, prefix, segments[index + 1])
    endpoint = "/".join(segments)
    if endpoint in spec.endpoints:
        return Target("submit", "POST", endpoint)
    raise not_found(f"Application '{endpoint}' not found")


def _index_of_requests(segments: list[str]) -> int:
    """Where ``requests`` first stands after the app id's two segments; 0 when it does not."""
    if "requests" in segments:
        try:
            return segments.index("requests", 2)
        except ValueError:
            return 0
    return 0


def base_url(request: Request) -> str:
    """This server as the client reached it, so returned URLs lead back here."""
    scope = request.scope
    for key, value in scope["headers"]:
        if key == b"host":
            # What ``request.base_url`` gives with a Host header, without building URL objects.
            root = scope.get("app_root_path", scope.get("root_path", ""))
            return f"{scope.get('scheme', 'http')}://{value.decode('latin-1')}{root}".rstrip("/")
    return str(request.base_url).rstrip("/")


async def handle(request: Request) -> Response:
    return await answer(request, emulator_of(request))


async def answer(request: Request, emulator: Emulator) -> Response:
    """A queue call's answer, from ``emulator``."""
    try:
        target = parse_path(request.path_params.get("path", ""), emulator.spec)
        if request.method != target.method:
            raise method_not_allowed(target.method)
        # Positional (action, namespace, endpoint, request id, base URL, body, query, headers):
        # every poll builds one, and keywords cost a third more.
        call = Call(
            target.action,
            authenticate(request, emulator),
            target.endpoint,
            target.request_id,
            base_url(request),
            b"",
            query_of(request),
            headers_of(request),
        )
        if target.action == "submit":
            call.body = await read_body(request, emulator.settings.max_body_bytes)
            call.files_url = urls_of(request).cdn
        return render(await emulator.call(call))
    except Problem as problem:
        return problem_response(problem)
