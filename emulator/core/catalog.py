"""The any-llm model catalogue: what a model costs and how fast it writes.

Which names the endpoints accept is the input schema's business: ``AnyLlmModel`` in the
built-in any-llm documents (``emulator/endpoints/builtin/``), the one list of names. This
module holds what fal says about some of them (the premium list, charged at ten times the
standard rate) and what the emulator makes up about them (token rates), and can open the
schema to any ``provider/name`` for teams that call a model fal added after this list was
written (``--any-model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.config import DEFAULT_SPEC_PATH
from emulator.core.spec import Spec
from emulator.endpoints.documents import EndpointDocument, builtin_documents, parse_document

MODEL_SCHEMA = "AnyLlmModel"
# Any OpenRouter-style name: a provider, a slash, a model (variants such as ``:free`` included).
ANY_MODEL_PATTERN = r"^[^/\s]+/\S+$"

# Premium models cost ten times the standard rate: fal's current list (its any-llm page,
# late 2025), the models a later revision of that page added, and the seed document's.
PREMIUM_MODELS = frozenset(
    {
        "anthropic/claude-3.7-sonnet",
        "google/gemini-2.5-pro",
        "anthropic/claude-3-5-haiku",
        "openai/gpt-4o",
        "google/gemini-pro-1.5",
        "meta-llama/llama-3.2-90b-vision-instruct",
        "anthropic/claude-3.5-sonnet",
        "openai/gpt-4.1",
        "deepseek/deepseek-r1",
        "openai/gpt-5-chat",
        "openai/o3",
        # Later revision.
        "anthropic/claude-sonnet-4.5",
        "anthropic/claude-haiku-4.5",
        "deepseek/deepseek-v3.1-terminus",
    }
)

# Tokens per second by model, for the realistic profile: rough public figures, enough to
# make a fast model look faster than a large one in a demo. Not a promise about fal.
TOKEN_RATES = {
    "google/gemini-2.5-flash-lite": 300.0,
    "google/gemini-2.5-flash": 220.0,
    "google/gemini-2.5-pro": 90.0,
    "google/gemini-2.0-flash-001": 220.0,
    "google/gemini-flash-1.5-8b": 260.0,
    "google/gemini-flash-1.5": 180.0,
    "google/gemini-pro-1.5": 70.0,
    "anthropic/claude-3-haiku": 130.0,
    "anthropic/claude-3-5-haiku": 110.0,
    "anthropic/claude-haiku-4.5": 120.0,
    "anthropic/claude-3.5-sonnet": 60.0,
    "anthropic/claude-3.7-sonnet": 60.0,
    "anthropic/claude-sonnet-4.5": 65.0,
    "meta-llama/llama-3.2-1b-instruct": 320.0,
    "meta-llama/llama-3.2-3b-instruct": 260.0,
    "meta-llama/llama-3.1-8b-instruct": 200.0,
    "meta-llama/llama-3.1-70b-instruct": 80.0,
    "meta-llama/llama-4-scout": 150.0,
    "meta-llama/llama-4-maverick": 120.0,
    "openai/gpt-4o-mini": 110.0,
    "openai/gpt-4o": 75.0,
    "openai/gpt-4.1": 80.0,
    "openai/gpt-5-nano": 180.0,
    "openai/gpt-5-mini": 120.0,
    "openai/gpt-5-chat": 70.0,
    "openai/o3": 40.0,
    "openai/gpt-oss-120b": 250.0,
    "deepseek/deepseek-r1": 40.0,
}
DEFAULT_RATE = 100.0


def billable_units(model: str | None) -> int:
    """Units charged for one request: ten for a premium model, else one."""
    return 10 if isinstance(model, str) and model in PREMIUM_MODELS else 1


def token_rate(model: str | None) -> float:
    """Tokens per second a model writes at full speed (a default for names without a figure)."""
    return TOKEN_RATES.get(model or "", DEFAULT_RATE)


def open_models(document: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI document with ``AnyLlmModel`` taking any ``provider/name`` instead of its list."""
    schemas = document["components"]["schemas"]
    listed = schemas[MODEL_SCHEMA]
    opened = {key: value for key, value in listed.items() if key != "enum"}
    opened["pattern"] = ANY_MODEL_PATTERN
    opened["description"] = (
        "Name of the model to use: any `provider/name` (this emulator runs with --any-model). "
        f"Names fal lists: {', '.join(listed['enum'])}."
    )
    return {**document, "components": {**document["components"], "schemas": {**schemas, MODEL_SCHEMA: opened}}}


def builtin_endpoints(*, any_model: bool = False) -> list[EndpointDocument]:
    """The built-in endpoints' documents; with ``any_model``, any-llm's open to any model name."""
    documents = builtin_documents()
    if not any_model:
        return documents
    return [
        parse_document(open_models(document.raw), document.source)
        if MODEL_SCHEMA in document.raw["components"]["schemas"]
        else document
        for document in documents
    ]


def load_spec(path: Path = DEFAULT_SPEC_PATH, *, any_model: bool = False) -> Spec:
    """openapi.yaml with the built-in endpoints, any-llm's opened to any model name when ``any_model`` is set.

    The bundled openapi.yaml is parsed when the first call needs it (a server starts without PyYAML or
    the parse); another document is read and checked whole at once, so a bad one fails at start-up.
    """
    bundled = path.resolve() == DEFAULT_SPEC_PATH.resolve()
    return Spec.load(path, builtin_endpoints(any_model=any_model), deferred=bundled)
