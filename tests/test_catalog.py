"""The model catalogue: today's names and the seed's, one default, premium units, --any-model."""

from __future__ import annotations

import json

import pytest
import yaml

from emulator.config import DEFAULT_SPEC_PATH
from emulator.core.catalog import ANY_MODEL_PATTERN, PREMIUM_MODELS, TOKEN_RATES, billable_units, load_spec
from emulator.core.spec import PYDANTIC_ERRORS_URL, Spec

ENDPOINTS = ("fal-ai/any-llm", "fal-ai/any-llm/vision", "fal-ai/any-llm/enterprise")
# The seed document's twelve names (its any-llm enum) and its vision endpoint's extra one.
SEED_MODELS = (
    "anthropic/claude-3.5-sonnet",
    "anthropic/claude-3-5-haiku",
    "anthropic/claude-3-haiku",
    "google/gemini-pro-1.5",
    "google/gemini-flash-1.5",
    "google/gemini-flash-1.5-8b",
    "meta-llama/llama-3.2-1b-instruct",
    "meta-llama/llama-3.2-3b-instruct",
    "meta-llama/llama-3.1-8b-instruct",
    "meta-llama/llama-3.1-70b-instruct",
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "meta-llama/llama-3.2-90b-vision-instruct",
)
TODAYS_MODELS = ("google/gemini-2.5-flash", "google/gemini-2.5-flash-lite", "openai/gpt-5-mini", "openai/o3")


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec.load()


def body_for(endpoint: str, **fields: object) -> bytes:
    base: dict[str, object] = {"prompt": "hi"}
    if endpoint.endswith("/vision"):
        base["image_urls"] = ["https://v3.fal.media/files/example/cat.png"]
    return json.dumps({**base, **fields}).encode()


def listed_models(spec: Spec) -> list[str]:
    names: list[str] = spec.document["components"]["schemas"]["AnyLlmModel"]["enum"]
    return names


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("model", SEED_MODELS + TODAYS_MODELS)
def test_every_endpoint_takes_the_seeds_names_and_todays(spec: Spec, endpoint: str, model: str) -> None:
    """A seed name and a current name are both valid on each any-llm endpoint."""
    operation = spec.operation("submit", endpoint)
    assert operation is not None
    body, errors = operation.validate_body(body_for(endpoint, model=model))
    assert errors == []
    assert body["model"] == model


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_default_model_is_todays(spec: Spec, endpoint: str) -> None:
    """Without a model the input gets fal's current default, google/gemini-2.5-flash-lite."""
    operation = spec.operation("run", endpoint)
    assert operation is not None
    body, errors = operation.validate_body(body_for(endpoint))
    assert errors == []
    assert body["model"] == "google/gemini-2.5-flash-lite"


def test_an_unknown_model_is_refused_with_every_accepted_name(spec: Spec) -> None:
    """The 422 item is pydantic's enum error: it quotes each accepted name and links pydantic's docs."""
    operation = spec.operation("submit", "fal-ai/any-llm")
    assert operation is not None
    _, errors = operation.validate_body(body_for("fal-ai/any-llm", model="openai/gpt-99"))
    [error] = errors
    assert error["loc"] == ["body", "model"]
    assert error["type"] == "enum"
    assert error["url"] == PYDANTIC_ERRORS_URL + "enum"
    names = listed_models(spec)
    assert error["msg"] == "Input should be " + ", ".join(f"'{n}'" for n in names[:-1]) + f" or '{names[-1]}'"
    assert len(names) == len(set(names)) >= 30


def test_premium_models_and_token_rates_name_listed_models(spec: Spec) -> None:
    """The premium list and the token rates only name models the schema accepts: one list of names."""
    names = set(listed_models(spec))
    assert names >= PREMIUM_MODELS
    assert set(TOKEN_RATES) <= names


@pytest.mark.parametrize(
    ("model", "units"),
    [("google/gemini-2.5-pro", 10), ("openai/gpt-5-chat", 10), ("openai/gpt-4o", 10), ("google/gemini-2.5-flash", 1)],
)
def test_premium_models_bill_ten_units(model: str, units: int) -> None:
    """Today's premium models and the seed's are charged ten units, the rest one."""
    assert billable_units(model) == units


def test_any_model_accepts_any_provider_and_name() -> None:
    """With --any-model a name fal does not list passes, and a name without a provider does not."""
    spec = load_spec(DEFAULT_SPEC_PATH, any_model=True)
    operation = spec.operation("submit", "fal-ai/any-llm/vision")
    assert operation is not None
    body, errors = operation.validate_body(body_for("fal-ai/any-llm/vision", model="moonshotai/kimi-k3:free"))
    assert errors == []
    assert body["model"] == "moonshotai/kimi-k3:free"
    _, errors = operation.validate_body(body_for("fal-ai/any-llm/vision", model="kimi-k3"))
    assert [(e["type"], e["msg"]) for e in errors] == [
        ("string_pattern_mismatch", f"String should match pattern '{ANY_MODEL_PATTERN}'")
    ]


def test_any_model_serves_the_opened_schema() -> None:
    """The document served at /openapi.yaml says what the server accepts: a pattern, the same default."""
    spec = load_spec(DEFAULT_SPEC_PATH, any_model=True)
    for served in (yaml.safe_load(spec.source_text), json.loads(spec.json_text)):
        model = served["components"]["schemas"]["AnyLlmModel"]
        assert "enum" not in model
        assert model["pattern"] == ANY_MODEL_PATTERN
        assert model["default"] == "google/gemini-2.5-flash-lite"
