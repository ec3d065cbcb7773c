"""Webhook routes: the JWKS on the rest surface, and the controls under ``/_emulator/webhooks``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.core.spec import JSONRejected, parse_json
from emulator.http.common import CONTROL_BODY_LIMIT, HTTPProblem, emulator_of, guard, handles, json_response, read_body
from emulator.webhooks.model import parse_mode


def _invalid(loc: list[str], message: str, value: Any) -> HTTPProblem:
    return HTTPProblem(422, {"detail": [{"loc": loc, "msg": message, "type": "value_error", "input": value}]})


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
    if limit and not (limit.isascii() and limit.isdigit()):
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
    emulator = guard(request)
    body = await _json_object(request)
    mode = parse_mode(body.get("mode"), ["body", "mode"])
    request_id = request.path_params["request_id"]
    record = emulator.find(request_id, request.query_params.get("namespace"))
    if record is None:
        raise HTTPProblem(404, {"detail": f"No request {request_id!r}"})
    record.webhook_mode = mode.value
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
