"""openapi.yaml drives validation; errors come out FastAPI-style."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from emulator.core.spec import Spec


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec.load()


def test_endpoints_come_from_the_document(spec: Spec) -> None:
    """The any-llm and openrouter/router endpoints (the OpenAI-compatible ids too) and their app ids are read
    from the spec."""
    router = {
        f"openrouter/router{suffix}"
        for suffix in ("", "/vision", "/enterprise", "/audio", "/video", "/video/enterprise")
    }
    router |= {f"openrouter/router/openai/v1/{call}" for call in ("chat/completions", "responses", "embeddings")}
    assert spec.endpoints == {"fal-ai/any-llm", "fal-ai/any-llm/vision", "fal-ai/any-llm/enterprise", *router}
    assert spec.app_ids == {"fal-ai/any-llm", "openrouter/router"}


def test_valid_body_gets_the_documented_defaults(spec: Spec) -> None:
    """Defaults declared in the schema are filled in, like a pydantic model would."""
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None
    body, errors = op.validate_body(b'{"prompt": "hi"}')
    assert errors == []
    assert body == {"prompt": "hi", "model": "google/gemini-2.5-flash-lite", "reasoning": False, "priority": "latency"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]),
        ({"prompt": 1}, [{"loc": ["body", "prompt"], "msg": "Input should be a valid string", "type": "string_type"}]),
        ({"prompt": "p", "temperature": 3}, [{"loc": ["body", "temperature"], "type": "less_than_equal"}]),
        ({"prompt": "p", "max_tokens": 0}, [{"loc": ["body", "max_tokens"], "type": "greater_than_equal"}]),
        ({"prompt": "p", "max_tokens": 1.5}, [{"loc": ["body", "max_tokens"], "type": "int_from_float"}]),
        ({"prompt": "p", "max_tokens": "10"}, [{"loc": ["body", "max_tokens"], "type": "int_type"}]),
        ({"prompt": "p", "reasoning": "yes"}, [{"loc": ["body", "reasoning"], "type": "bool_type"}]),
        ({"prompt": "p", "model": "gpt-5"}, [{"loc": ["body", "model"], "type": "enum"}]),
    ],
)
def test_invalid_bodies(spec: Spec, raw: dict[str, object], expected: list[dict[str, object]]) -> None:
    """Each schema violation becomes one detail entry with loc, msg and type."""
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None
    _, errors = op.validate_body(json.dumps(raw).encode())
    assert len(errors) == len(expected)
    for error, want in zip(errors, expected, strict=True):
        assert {k: error[k] for k in want} == want
        assert isinstance(error["msg"], str) and error["msg"]


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b'{"prompt": "p", "max_tokens": 1e300}', "int_parsing_size"),
        (b'{"prompt": "p", "max_tokens": -1e19}', "int_parsing_size"),
        (b'{"prompt": "p", "max_tokens": 1.5}', "int_from_float"),
        (b'{"prompt": "p", "max_tokens": 1e999}', "finite_number"),
        (b'{"prompt": "p", "max_tokens": 3.0}', None),
        (b'{"prompt": "p", "max_tokens": 12345678901234567890}', None),
    ],
)
def test_integers_are_read_as_pydantic_reads_them(spec: Spec, raw: bytes, found: str | None) -> None:
    """An integral float is an integer within 64 bits, past them int_parsing_size (an infinite one
    finite_number); a big integer is one."""
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None
    _, errors = op.validate_body(raw)
    assert [error["type"] for error in errors] == ([found] if found else [])
    if found:
        assert errors[0]["loc"] == ["body", "max_tokens"]
        assert errors[0]["url"] == f"https://errors.pydantic.dev/2.11/v/{found}"


def test_enum_message_lists_the_choices(spec: Spec) -> None:
    """An enum error says which values are allowed, as pydantic does."""
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None
    _, errors = op.validate_body(b'{"prompt": "p", "priority": "fast"}')
    assert errors[0]["msg"] == "Input should be 'throughput' or 'latency'"


@pytest.mark.parametrize(
    ("raw", "type_"),
    [(b"{bad", "json_invalid"), (b"[1, 2]", "model_attributes_type"), (b"", "missing"), (b"\xff", "json_invalid")],
)
def test_unparseable_bodies(spec: Spec, raw: bytes, type_: str) -> None:
    """Malformed JSON, a non-object and an empty body are 422 details too."""
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None
    _, errors = op.validate_body(raw)
    assert [e["type"] for e in errors] == [type_]


def test_vision_requires_image_urls(spec: Spec) -> None:
    """The vision endpoint's own schema applies to it."""
    op = spec.operation("submit", "fal-ai/any-llm/vision")
    assert op is not None
    _, errors = op.validate_body(b'{"prompt": "p"}')
    assert [e["loc"] for e in errors] == [["body", "image_urls"]]


@pytest.mark.parametrize(
    ("query", "headers", "values", "error_type"),
    [
        ({"fal_webhook": "https://example.test/hook"}, {}, {"fal_webhook": "https://example.test/hook"}, None),
        ({"fal_webhook": "not a url"}, {}, {}, "string_pattern_mismatch"),
        ({"fal_webhook": "ftp://x/y"}, {}, {}, "string_pattern_mismatch"),
        ({"fal_max_queue_length": "3"}, {}, {"fal_max_queue_length": 3}, None),
        ({"fal_max_queue_length": "three"}, {}, {}, "int_parsing"),
        ({}, {"x-fal-queue-priority": "low"}, {"x-fal-queue-priority": "low"}, None),
        ({}, {"x-fal-queue-priority": "urgent"}, {}, "enum"),
        ({}, {"x-fal-request-timeout": "2.5"}, {"x-fal-request-timeout": 2.5}, None),
        ({}, {"x-fal-request-timeout": "soon"}, {}, "float_parsing"),
        ({}, {"x-fal-request-timeout": "-1"}, {}, "greater_than"),
        ({}, {"x-fal-request-timeout": "0"}, {}, "greater_than"),
    ],
)
def test_parameters_are_coerced_and_checked(
    spec: Spec, query: dict[str, str], headers: dict[str, str], values: dict[str, object], error_type: str | None
) -> None:
    """Query and header parameters are parsed to their schema type and validated."""
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None
    got, errors = op.validate_parameters(query, headers)
    assert got == values
    assert [e["type"] for e in errors] == ([error_type] if error_type else [])


def test_parameters_answer_the_same_the_second_time(spec: Spec) -> None:
    """A value checked once answers the same again, a refused one is refused again, and the memory is bounded."""
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None
    for _ in range(2):
        assert op.validate_parameters({"fal_max_queue_length": "3"}, {}) == ({"fal_max_queue_length": 3}, [])
        _, errors = op.validate_parameters({"fal_max_queue_length": "-1"}, {})
        assert [e["type"] for e in errors] == ["greater_than_equal"]
    for n in range(1000):
        assert op.validate_parameters({"fal_max_queue_length": str(n)}, {})[0] == {"fal_max_queue_length": n}
    assert all(len(param.accepted) <= 64 for param in op.parameters)


def test_a_repeated_body_is_shared_and_answers_as_a_fresh_check() -> None:
    """The same accepted bytes give the same object, equal to what a fresh check gives; a refused body is
    refused every time; large bodies are not remembered, and the memory is bounded."""
    op = Spec.load().operation("submit", "fal-ai/any-llm")
    assert op is not None
    raw = b'{"prompt": "hi", "max_tokens": 5}'
    first, errors = op.shared_body(raw)
    again, _ = op.shared_body(raw)
    assert errors == [] and again is first and first == op.validate_body(raw)[0]
    assert op.validate_body(raw)[0] is not first  # the plain check still gives its own object
    for _ in range(2):
        _, errors = op.shared_body(b'{"prompt": 1}')
        assert [e["type"] for e in errors] == ["string_type"]
    large = json.dumps({"prompt": "x" * 5000}).encode()
    assert op.shared_body(large)[0] is not op.shared_body(large)[0]
    for n in range(1000):
        assert op.shared_body(b'{"prompt": "p%d"}' % n)[0]["prompt"] == f"p{n}"
    assert op.shared_body(raw)[0] is not first  # pushed out by newer bodies
    assert len(op._shared) <= 256


def test_an_endpoint_added_again_checks_a_remembered_body_afresh() -> None:
    """Bytes accepted under an endpoint's old document are checked against the new one, defaults and all."""
    spec = Spec.load()
    raw = b'{"prompt": "hi"}'
    op = spec.operation("submit", "fal-ai/any-llm")
    assert op is not None and op.shared_body(raw)[0]["priority"] == "latency"
    document = next(d for d in spec.documents if d.endpoint_id == "fal-ai/any-llm")
    schema = json.loads(json.dumps(document.input_schema))
    schema["properties"]["priority"]["default"] = "throughput"
    schema["required"] = [*schema.get("required", []), "system_prompt"]
    spec.add_endpoint(dataclasses.replace(document, input_schema=schema))
    again = spec.operation("submit", "fal-ai/any-llm")
    assert again is not None and again is not op
    _, errors = again.shared_body(raw)
    assert [e["loc"] for e in errors] == [["body", "system_prompt"]]
    body, errors = again.shared_body(b'{"prompt": "hi", "system_prompt": "s"}')
    assert errors == [] and body["priority"] == "throughput"


def test_a_document_of_the_users_is_compiled_whole_at_load(tmp_path: Path) -> None:
    """A --spec document with a broken reference fails when it is loaded, not on the first call."""
    from emulator.core.catalog import load_spec

    document = {
        "openapi": "3.0.0",
        "paths": {
            "/a/b": {
                "post": {
                    "x-emulator-action": "submit",
                    "x-emulator-endpoint": "a/b",
                    "parameters": [{"$ref": "#/components/parameters/Missing"}],
                }
            }
        },
        "components": {"parameters": {}},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(document))
    with pytest.raises(KeyError):
        load_spec(path)


def test_a_deferred_spec_parses_its_text_on_first_use_and_answers_the_same() -> None:
    """Loaded deferred, openapi.yaml is parsed when first asked for, into the same document and operations."""
    deferred = Spec.load(deferred=True)
    assert deferred._pending is not None  # not parsed yet
    eager = Spec.load()
    assert deferred.endpoints == eager.endpoints and deferred.app_ids == eager.app_ids
    assert deferred._pending is None
    assert deferred.document == eager.document and deferred.source_text == eager.source_text
    for action, endpoint in [("submit", "fal-ai/any-llm"), ("status", None), ("openai", None)]:
        one, other = deferred.operation(action, endpoint), eager.operation(action, endpoint)
        assert (one is None) == (other is None)
        if one is not None and other is not None:
            assert (one.body_schema, one.parameters) == (other.body_schema, other.parameters)


def test_an_endpoint_added_before_the_parse_is_there_after_it() -> None:
    """An endpoint added to a deferred spec (a loaded document at start-up) is added when the text is parsed."""
    from emulator.endpoints.documents import load_document

    document = load_document(Path(__file__).parent / "data" / "fal-openapi" / "fal-ai__esrgan.json")
    spec = Spec.load(deferred=True)
    spec.add_endpoint(document)
    assert spec._pending is not None
    op = spec.operation("submit", "fal-ai/esrgan")
    assert op is not None and op.parameters and "fal-ai/esrgan" in spec.endpoints


def test_the_bundled_document_is_loaded_deferred_and_another_at_once(tmp_path: Path) -> None:
    """load_spec defers the bundled openapi.yaml; a copy elsewhere is parsed and checked before returning."""
    from emulator.config import DEFAULT_SPEC_PATH
    from emulator.core.catalog import load_spec

    assert load_spec(DEFAULT_SPEC_PATH)._pending is not None
    copy = tmp_path / "openapi.yaml"
    copy.write_text(DEFAULT_SPEC_PATH.read_text())
    assert load_spec(copy)._pending is None
