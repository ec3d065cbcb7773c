"""schemathesis against openapi.yaml: positive and negative cases, every response check on."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from emulator import Settings, create_app
from emulator.core.openai_compat import ENDPOINTS as OPENAI_ENDPOINTS
from tests.conftest import AUTH

# Generated fal_webhook URLs name arbitrary hosts: webhooks go to a mock transport, never the network,
# and the signing key to a throwaway folder, never the user's data directory.
_data_dir = Path(tempfile.mkdtemp(prefix="contract-"))
atexit.register(shutil.rmtree, _data_dir, True)
_webhook_client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
app = create_app(Settings(profile="instant", seed=11, data_dir=_data_dir), http_client=_webhook_client)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# Like fal, the emulator ignores headers and query parameters it does not know, so
# "an unexpected header" is not an invalid request here.
schema.config.generation.update(max_examples=40, allow_extra_parameters=False)
# Vision checks that its images load when the request runs, as fal's apps do; /run runs it
# within the call, so a schema-valid request whose URLs do not load (any a generator
# invents) answers 422 there. Every other check still holds the 422 to the document.
RUNS_IMAGES = {
    "POST /run/fal-ai/any-llm/vision",
    "POST /run/fal-ai/any-llm/vision/stream",
    "POST /run/openrouter/router/vision",
    "POST /run/openrouter/router/vision/stream",
}
# fal's queue does not know an app's schema: a queued body that breaks it is accepted (200) and the
# request fails with the app's 422 when it runs, so a queued submit does not reject negative data.
QUEUED = {
    "POST /fal-ai/any-llm",
    "POST /fal-ai/any-llm/vision",
    "POST /fal-ai/any-llm/enterprise",
    *(
        f"POST /openrouter/router{suffix}"
        for suffix in ("", "/vision", "/enterprise", "/audio", "/video", "/video/enterprise")
    ),
    *(f"POST /{endpoint}" for endpoint in OPENAI_ENDPOINTS),
}


def _integral_float(value: Any) -> bool:
    """Whether a body holds a float with no fractional part (1.0, 1e300) anywhere."""
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_integral_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_integral_float(item) for item in value)
    return False


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case: schemathesis.Case[Any]) -> None:
    """No server errors; status codes, content types, headers and bodies match the spec."""
    excluded: list[Any] = [positive_data_acceptance] if case.operation.label in RUNS_IMAGES else []
    # fal's apps (pydantic, lax) take a float with no fractional part where an integer is declared (within 64
    # bits), as JSON Schema does; the generator may offer one (1.0) as an integer field's negative case.
    if case.operation.label in QUEUED or _integral_float(case.body):
        excluded.append(negative_data_rejection)
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)
