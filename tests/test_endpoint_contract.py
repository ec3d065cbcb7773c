"""schemathesis against the documents the emulator serves for endpoints loaded from fal's documents."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, status_code_conformance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from emulator import Settings, create_app
from tests.conftest import AUTH

DATA = Path(__file__).parent / "data" / "fal-openapi"
# Documents whose schemas schemathesis can generate from: the ones with FLUX's ``ImageSize`` write
# ``exclusiveMinimum: 0`` (JSON Schema's number) where OpenAPI 3.0 has a flag, which it refuses.
ENDPOINTS = ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/esrgan", "fal-ai/kling-video/v1.6/pro/image-to-video")
FILES = tuple(DATA / (endpoint.replace("/", "__") + ".json") for endpoint in ENDPOINTS)

_data_dir = Path(tempfile.mkdtemp(prefix="endpoint-contract-"))
atexit.register(shutil.rmtree, _data_dir, True)
_webhook_client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
app = create_app(Settings(profile="instant", seed=11, data_dir=_data_dir, endpoints=FILES), http_client=_webhook_client)


def _schema(endpoint: str) -> OpenApiSchema:
    """The document the emulator serves for ``endpoint``, read over its own route, with ``logs`` as fal sends it.

    fal's documents type ``QueueStatus.logs`` as an object, but fal answers ``null`` or a list of log
    lines (and its clients read it so); the emulator follows the wire, so that one property is widened.
    """
    location = f"/api/openapi/queue/openapi.json?endpoint_id={endpoint}"
    loaded = schemathesis.openapi.from_asgi(location, app)
    document = loaded.raw_schema
    document["components"]["schemas"]["QueueStatus"]["properties"]["logs"] = {
        "type": "array",
        "nullable": True,
        "items": {"type": "object"},
    }
    # Positive cases only: a queued submit accepts a body that breaks the schema (see ``_check``), and
    # schemathesis cannot negate fal's OpenAPI 3.0 schemas that use JSON Schema's ``{"type": "null"}``.
    loaded.config.generation.update(modes=[GenerationMode.POSITIVE], max_examples=25, allow_extra_parameters=False)
    return loaded


ultra = _schema(ENDPOINTS[0])
esrgan = _schema(ENDPOINTS[1])
kling = _schema(ENDPOINTS[2])


def _check(case: schemathesis.Case[Any]) -> None:
    # fal's published documents declare only the 200 answer of each operation; the emulator answers a
    # missing key (401), an unknown request (404) and a request still running (400) as fal does, so the
    # status code is not held to the document. Every other check (no 500s, bodies, types) still holds.
    # fal's queue does not know an app's schema: a queued body that breaks it is accepted (200) and
    # the request fails with the app's 422 when it runs, so a queued submit does not reject negative data.
    excluded: list[Any] = [status_code_conformance, negative_data_rejection]
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)


@ultra.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_flux_pro_ultra_conforms_to_its_served_document(case: schemathesis.Case[Any]) -> None:
    """No server errors; status codes, content types and bodies match fal's document for flux-pro/v1.1-ultra."""
    _check(case)


@esrgan.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_esrgan_conforms_to_its_served_document(case: schemathesis.Case[Any]) -> None:
    """No server errors; status codes, content types and bodies match fal's document for esrgan."""
    _check(case)


@kling.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_kling_image_to_video_conforms_to_its_served_document(case: schemathesis.Case[Any]) -> None:
    """No server errors; status codes, content types and bodies match fal's document for a kling video."""
    _check(case)
