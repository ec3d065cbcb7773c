"""Webhook routes: the JWKS on the rest surface, and the controls under ``/_emulator/webhooks``."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.core.spec import JSONRejected, parse_json
from emulator.http.common import HTTPProblem, emulator_of, json_response, read_body
from emulator.http.routes.control import CONTROL_BODY_LIMIT, guard, handles
from emulator.webhooks import Mode

# Emulator-only header on submit: this request's webhook misbehaves in the named way.
MODE_HEADER = "x-emulator-webhook-mode"
_MODES = ", ".join(mode.value for mode in Mode)
CONTROL_SEGMENT = "_emulator"


def _invalid(loc: list[str], message: str, value: Any) -> HTTPProblem:
    return HTTPProblem(422, {"detail": [{"loc": loc, "msg": message, "type": "value_error", "input": value}]})


def parse_mode(value: Any, loc: list[str]) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        raise _invalid(loc, f"Input should be one of: {_MODES}", value) from None


def mode_header(request: Request) -> Mode | None:
    """The mode a submit asks for with ``x-emulator-webhook-mode``, if any; 422 for an unknown one."""
    value = request.headers.get(MODE_HEADER)
    return None if value is None else parse_mode(value.strip(), ["header", MODE_HEADER])


def refuse_control_target(url: str | None) -> None:
    """422 for a webhook URL under a control prefix (``/_emulator``), however its path is spelled.

    The emulator cannot know every name it is reached by, so the path alone decides, on any
    host: a webhook must not be able to drive an emulator (this one or another).
    """
    if url is None:
        return
    try:
        path = urlsplit(url).path
    except ValueError:
        return  # not a URL at all: its delivery fails and is recorded, as any unreachable target
    segments: list[str] = []
    for segment in unquote(path).split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    if any(segment.lower() == CONTROL_SEGMENT for segment in segments):
        raise _invalid(
            ["query", "fal_webhook"],
            "A webhook cannot target the emulator's control API (a path under /_emulator)",
            url,
        )


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await read_body(request, CONTROL_BODY_LIMIT)
    try:
        body = parse_json(raw) if raw.strip() else {}
    except JSONRejected as exc:
        raise HTTPProblem(422, {"detail": [exc.detail]}) from None
    if not isinstance(body, dict):
        raise _invalid(["body"], "Input should be a JSON object", body)
    return body


async def jwks(request: Request) -> Response:
    """The public keys that verify webhook signatures, as fal serves them at rest.fal.ai."""
    return json_response(emulator_of(request).webhooks.jwks(), headers={"cache-control": "no-cache"})


async def attempts(request: Request) -> Response:
    """``GET``: recorded attempts, oldest first (``?request_id=``, ``?limit=`` latest N); ``DELETE``: forget them."""
    webhooks = guard(request).webhooks
    if request.method == "DELETE":
        webhooks.reset(request.query_params.get("namespace"))
        return Response(status_code=204)
    limit = request.query_params.get("limit", "")
    if limit and not limit.isdigit():
        raise _invalid(["query", "limit"], "Input should be a whole number", limit)
    found = webhooks.attempts(request.query_params.get("request_id"))
    # ``limit`` keeps the most recent attempts: ``limit=0`` asks only for the pending count.
    listed = [attempt.to_json() for attempt in (found[max(0, len(found) - int(limit)) :] if limit else found)]
    return json_response({"attempts": listed, "pending": webhooks.dispatcher.pending()})


async def config(request: Request) -> Response:
    """``GET`` the delivery settings; ``PATCH {"mode": ..., "time_scale": ...}`` changes them."""
    webhooks = guard(request).webhooks
    if request.method == "PATCH":
        body = await _json_object(request)
        mode = parse_mode(body["mode"], ["body", "mode"]) if "mode" in body else None
        scale = body.get("time_scale", webhooks.dispatcher.time_scale)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale < float("inf"):
            raise _invalid(["body", "time_scale"], "Input should be a finite number, 0 or more", scale)
        webhooks.configure(mode=mode, time_scale=float(scale))
    return json_response(webhooks.config())


async def request_mode(request: Request) -> Response:
    """``PUT {"mode": ...}``: the mode for one request's webhook, before that request completes."""
    webhooks = guard(request).webhooks
    mode = parse_mode((await _json_object(request)).get("mode"), ["body", "mode"])
    request_id = request.path_params["request_id"]
    webhooks.set_mode(mode, request_id)
    return json_response({"request_id": request_id, "mode": mode.value})


async def flush(request: Request) -> Response:
    """Send every waiting retry and held delivery now (``?request_id=`` for one request's)."""
    released = guard(request).webhooks.dispatcher.flush(request.query_params.get("request_id"))
    return json_response({"released": released})


async def rotate(request: Request) -> Response:
    """Add a new signing key; the JWKS keeps publishing the old ones."""
    webhooks = guard(request).webhooks
    key = webhooks.rotate()
    return json_response({"kid": key.kid, **webhooks.jwks()})


# Under /_emulator, behind the control token like every other control endpoint.
control_routes = [
    Route("/webhooks", handles(attempts), methods=["GET", "DELETE"]),
    Route("/webhooks/config", handles(config), methods=["GET", "PATCH"]),
    Route("/webhooks/requests/{request_id}/mode", handles(request_mode), methods=["PUT"]),
    Route("/webhooks/flush", handles(flush), methods=["POST"]),
    Route("/webhooks/keys/rotate", handles(rotate), methods=["POST"]),
]
rest_routes = [Route("/.well-known/jwks.json", jwks, methods=["GET"])]
