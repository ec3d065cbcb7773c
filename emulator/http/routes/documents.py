"""Endpoint documents: each loaded endpoint's OpenAPI document where fal serves it, and loading one at run time.

``GET /api/openapi/queue/openapi.json?endpoint_id=<id>`` answers on the emulator's own host and
under ``fal.ai``, so schema-fetching tools can be pointed at the emulator. The control calls
``GET``/``PUT /_emulator/endpoints`` list the loaded endpoints and add or replace one.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.core.models import JSON
from emulator.endpoints.documents import DocumentError, parse_document
from emulator.endpoints.registry import Endpoint
from emulator.http.common import CONTROL_BODY_LIMIT, HTTPProblem, emulator_of, guard, handles, json_response, read_body
from emulator.http.hosts import urls_of

# fal's documents run to tens of kilobytes; a control body may be larger than a queue call's.
DOCUMENT_BODY_LIMIT = 16 * CONTROL_BODY_LIMIT


def _servers(request: Request) -> list[JSON]:
    # The queue surface as this caller reaches it, so a tool reading the document calls the emulator.
    return [{"url": urls_of(request).queue}]


async def endpoint_document(request: Request) -> Response:
    """One endpoint's queue document, as fal serves it at this path."""
    emulator = emulator_of(request)
    endpoint_id = request.query_params.get("endpoint_id", "").strip().strip("/")
    if not endpoint_id:
        raise HTTPProblem(422, {"detail": "Query parameter 'endpoint_id' is required (e.g. fal-ai/flux/schnell)"})
    served = emulator.endpoints.served(endpoint_id, servers=_servers(request))
    if served is None:
        raise HTTPProblem(
            404, {"detail": f"No OpenAPI document for endpoint '{endpoint_id}': load it with --endpoints"}
        )
    return json_response(served)


async def combined_document(request: Request) -> Response:
    """The emulator's whole API: the shared paths with every endpoint, built-in or loaded, added once."""
    return Response(emulator_of(request).spec.json_text, media_type="application/json")


def _summary(endpoint: Endpoint) -> JSON:
    document = endpoint.document
    return {"endpoint_id": document.endpoint_id, "category": document.category, "source": document.source}


async def list_endpoints(request: Request) -> Response:
    """Every endpoint: the built-in ones and those loaded from documents."""
    emulator = guard(request)
    return json_response({"endpoints": [_summary(endpoint) for endpoint in emulator.endpoints]})


async def put_endpoint(request: Request) -> Response:
    """Add or replace an endpoint from a document in the body (JSON or YAML); it answers at once."""
    emulator = guard(request)
    raw = await read_body(request, DOCUMENT_BODY_LIMIT)
    import yaml  # with the first document put

    try:
        data = json.loads(raw) if raw.lstrip()[:1] in (b"{", b"[") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise HTTPProblem(400, {"detail": f"body is not a JSON or YAML document: {exc}"}) from exc
    try:
        document = parse_document(data, "<PUT /_emulator/endpoints>")
    except DocumentError as exc:
        raise HTTPProblem(422, {"detail": str(exc)}) from exc
    replaced = document.endpoint_id in emulator.endpoints
    endpoint = emulator.load_endpoint(document)
    return json_response({**_summary(endpoint), "replaced": replaced})


routes = [
    Route("/api/openapi/queue/openapi.json", handles(endpoint_document), methods=["GET"]),
    Route("/openapi.json", handles(combined_document), methods=["GET"]),
]
control_routes = [
    Route("/endpoints", handles(list_endpoints), methods=["GET"]),
    Route("/endpoints", handles(put_endpoint), methods=["PUT"]),
]

__all__ = ["combined_document", "control_routes", "endpoint_document", "routes"]
