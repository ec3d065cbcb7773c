"""An endpoint's input: validation against its Input schema, file inputs, and an example input.

Validation reuses the any-llm spec's machinery (``emulator.core.spec``), so every endpoint's
422 details read the same: ``{"loc": ["body", field, ...], "msg", "type", "input", ...}``.

File inputs are the fields named ``*_url`` (a string) or ``*_urls`` (a list of strings), at any
depth. They are checked by ``emulator.core.images.FileUrlCheck``, the check of any-llm's
``image_urls`` too; the emulator never fetches anything: a data URI is decoded in place and a
URL of a file uploaded to this emulator is looked up in its storage.
Any other URL is, by :class:`FilePolicy`, accepted unchecked (``offline``, the default: the
input might be a real public file the emulator cannot see) or refused with a 422 (``strict``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from emulator.core.images import FilePolicy, FileUrlCheck
from emulator.core.models import JSON, Failure
from emulator.core.spec import ErrorDetail, body_operation, draft7
from emulator.core.storage import Storage
from emulator.endpoints.documents import EndpointDocument

__all__ = [
    "FileInputCheck",
    "FilePolicy",
    "InputValidator",
    "example_input",
    "file_inputs",
    "file_kind",
]

_FILE_FIELD = re.compile(r"(?:^|_)urls?$")
# Fields named like file inputs that are addresses to call, not files to load.
_NOT_FILES = frozenset({"webhook_url", "callback_url", "redirect_url", "endpoint_url", "base_url"})


class InputValidator:
    """An endpoint's Input schema as a request-body check with FastAPI-style 422 details."""

    def __init__(self, document: EndpointDocument) -> None:
        schema = document.input_schema
        self.document = document
        # The validators are built on the first body, as the spec's own: jsonschema is slow to import.
        self.operation = body_operation(document.endpoint_id, schema)

    @property
    def defaults(self) -> JSON:
        """The Input schema's top-level defaults by field name."""
        return self.operation.body_defaults

    def validate_body(self, raw: bytes) -> tuple[JSON, list[ErrorDetail]]:
        """Parse and check a raw JSON body: the input with defaults filled in, and the errors."""
        return self.operation.validate_body(raw)

    def validate(self, data: Any) -> tuple[JSON, list[ErrorDetail]]:
        """Check an already parsed input the same way."""
        return self.validate_body(json.dumps(data).encode())


def file_kind(name: str) -> str | None:
    """``image``, ``video`` or ``audio`` for a file field by its name; None for any other file."""
    lowered = name.lower()
    for kind in ("image", "video", "audio"):
        if kind in lowered:
            return kind
    return None


def file_inputs(inputs: Any, loc: tuple[str | int, ...] = ("body",)) -> Iterator[tuple[list[str | int], str, Any]]:
    """Every file URL in an input: its ``loc``, the field's name, and the value."""
    if isinstance(inputs, Mapping):
        for key, value in inputs.items():
            here = (*loc, key)
            if isinstance(key, str) and _FILE_FIELD.search(key) and key not in _NOT_FILES:
                if key.endswith("urls") and isinstance(value, list):
                    for index, item in enumerate(value):
                        yield [*here, index], key, item
                    continue
                if not key.endswith("urls") and value is not None:
                    yield list(here), key, value
                    continue
            yield from file_inputs(value, here)
    elif isinstance(inputs, list):
        for index, item in enumerate(inputs):
            yield from file_inputs(item, (*loc, index))


class FileInputCheck:
    """A run-time check of an input's file URLs; the same call shape as ``emulator.core.outputs.InputCheck``."""

    def __init__(
        self,
        storage: Storage | None,
        *,
        policy: FilePolicy = FilePolicy.OFFLINE,
        own_hosts: Iterable[str] = (),
    ) -> None:
        # A fal CDN URL of no upload here may be a real file on fal's CDN: the policy decides it.
        self.files = FileUrlCheck(storage, own_hosts, policy=policy, cdn_is_ours=False)

    def __call__(self, endpoint: str, inputs: Mapping[str, Any]) -> Failure | None:
        errors = self.problems(inputs)
        return Failure(422, errors) if errors else None

    def problems(self, inputs: Mapping[str, Any]) -> list[ErrorDetail]:
        """Every file URL of the input that does not load, as FastAPI-style error entries."""
        found = [self.files.problem(loc, url, file_kind(name)) for loc, name, url in file_inputs(inputs)]
        return [error for error in found if error is not None]


# -- an example input -------------------------------------------------------------------------


def example_input(document: EndpointDocument, *, file_url: Callable[[str, str | None], str] | None = None) -> JSON:
    """An input with every required field, from the schema's examples, defaults and enums.

    ``file_url(field, kind)`` replaces the URL of each file field (say, with a data URI or an
    upload to the emulator); without it the schema's example URL is kept.
    """
    schema = document.input_schema
    body: JSON = {}
    for name in schema.get("required", []):
        prop = schema.get("properties", {}).get(name, {})
        value = example_value(prop)
        if file_url is not None and _FILE_FIELD.search(name):
            url = file_url(name, file_kind(name))
            value = [url] if name.endswith("urls") else url
        body[name] = value
    return body


def example_value(schema: JSON) -> Any:
    """One value a schema accepts: its first example, its default, its first enum value, or a plain one."""
    for key in ("examples",):
        examples = schema.get(key)
        if isinstance(examples, list) and examples and _accepts(schema, examples[0]):
            return examples[0]
    if "example" in schema and _accepts(schema, schema["example"]):
        return schema["example"]
    if "default" in schema and _accepts(schema, schema["default"]):
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key, []) if isinstance(b, dict) and b.get("type") != "null"]
        if branches:
            return example_value(branches[0])
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: JSON = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example_value(merged)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string":
        return "example".ljust(int(schema.get("minLength", 0)), "x")
    if kind == "integer":
        if "minimum" in schema:
            return math.ceil(schema["minimum"])
        return math.floor(schema["exclusiveMinimum"]) + 1 if "exclusiveMinimum" in schema else 1
    if kind == "number":
        if "minimum" in schema:
            return float(schema["minimum"])
        return float(schema["exclusiveMinimum"]) + 1 if "exclusiveMinimum" in schema else 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        items = schema.get("items", {})
        return [example_value(items) for _ in range(int(schema.get("minItems", 0)))]
    if kind == "object" or "properties" in schema:
        return {name: example_value(schema["properties"][name]) for name in schema.get("required", [])}
    return None


def _accepts(schema: JSON, value: Any) -> bool:
    import jsonschema  # on first use: the serve path imports no jsonschema before a request needs it

    try:
        return bool(draft7(schema).is_valid(value))
    except jsonschema.SchemaError:
        return False
