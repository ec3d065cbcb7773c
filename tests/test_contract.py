"""schemathesis against openapi.yaml: positive and negative cases, every response check on."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from emulator import Settings, create_app
from tests.conftest import AUTH

app = create_app(Settings(profile="instant", seed=11))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# Like fal, the emulator ignores headers and query parameters it does not know, so
# "an unexpected header" is not an invalid request here.
schema.config.generation.update(max_examples=40, allow_extra_parameters=False)
# Vision checks that its images load when the request runs, as fal's apps do; /run runs it
# within the call, so a schema-valid request whose URLs do not load (any a generator
# invents) answers 422 there. Every other check still holds the 422 to the document.
RUNS_IMAGES = {"POST /run/fal-ai/any-llm/vision", "POST /run/fal-ai/any-llm/vision/stream"}


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case: schemathesis.Case) -> None:
    """No server errors; status codes, content types, headers and bodies match the spec."""
    excluded = [positive_data_acceptance] if case.operation.label in RUNS_IMAGES else []
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)
