"""An endpoint's input: validation against its Input schema, file inputs, and an example input.

Validation reuses the any-llm spec's machinery (``emulator.core.spec``), so every endpoint's
422 details read the same: ``{"loc": ["body", field, ...], "msg", "type", "input", ...}``.

File inputs are the fields named ``*_url`` (a string) or ``*_urls`` (a list of strings), at any
depth. The emulator never fetches anything (see ``emulator.core.images``): a data URI is
decoded in place and a URL of a file uploaded to this emulator is looked up in its storage.
Any other URL is, by :class:`FilePolicy`, accepted unchecked (``offline``, the default: the
input might be a real public file the emulator cannot see) or refused with a 422 (``strict``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from emulator.core.images import (
    _DATA_URI,
    _FILE_PATH,
    _NO_NETWORK,
    _data_uri_is_image,
    _download_error,
    _load_error,
    _short,
    is_own_host,
    looks_like_image,
)
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


class FilePolicy(enum.Enum):
    """What a file URL that is neither a data URI nor an upload to this emulator gets."""

    OFFLINE = "offline"  # accepted unchecked
    STRICT = "strict"  # refused with a 422, as fal refuses a URL it cannot download


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
        self.storage = storage
        self.policy = policy
        self.own_hosts = frozenset(h.lower() for h in own_hosts)

    def __call__(self, endpoint: str, inputs: Mapping[str, Any]) -> Failure | None:
        errors = self.problems(inputs)
        return Failure(422, errors) if errors else None

    def problems(self, inputs: Mapping[str, Any]) -> list[ErrorDetail]:
        """Every file URL of the input that does not load, as FastAPI-style error entries."""
        found = [self.problem(loc, name, value) for loc, name, value in file_inputs(inputs)]
        return [error for error in found if error is not None]

    def problem(self, loc: list[str | int], name: str, url: Any) -> ErrorDetail | None:
        """What is wrong with one file URL; None if it loads (or, offline, cannot be checked)."""
        kind = file_kind(name)
        if not isinstance(url, str):
            return {"loc": loc, "msg": "Input should be a valid string", "type": "string_type", "input": url}
        if url[:5].lower() == "data:":
            if kind == "image":
                return None if _data_uri_is_image(url) else _load_error(loc, url)
            return None if _data_uri_decodes(url) else _file_load_error(loc, url, kind)
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return {
                "loc": loc,
                "msg": "Input should be a valid URL (http or https) or a data URI",
                "type": "url_parsing",
                "input": _short(url),
            }
        match = _FILE_PATH.fullmatch(parts.path)
        stored = None
        if match is not None and self.storage is not None:
            stored = self.storage.get(unquote(match["key"]))
        host = parts.hostname.lower().rstrip(".")
        # Loopback and the names this emulator was given can only mean this emulator; fal's CDN
        # names may be this emulator's (when clients reach it by them) or the real CDN's.
        ours = is_own_host(host, self.own_hosts) and not _is_fal_cdn(host)
        if stored is not None and (is_own_host(host, self.own_hosts) or url.strip() in stored.urls):
            if kind == "image" and self.storage is not None and not looks_like_image(self.storage.head(stored.key)):
                return _load_error(loc, url)
            return None
        if ours:
            return _download_error(loc, url, "no file uploaded to this emulator has this URL")
        if self.policy is FilePolicy.OFFLINE:
            return None
        return _download_error(loc, url, _NO_NETWORK)


def _is_fal_cdn(host: str) -> bool:
    return host == "fal.media" or host.endswith(".fal.media")


def _data_uri_decodes(uri: str) -> bool:
    match = _DATA_URI.fullmatch("data:" + uri[5:])
    if match is None:
        return False
    try:
        if ";base64" in match["params"].lower():
            base64.b64decode(match["data"].strip(), validate=True)
        else:
            unquote_to_bytes(match["data"])
    except (binascii.Error, ValueError):
        return False
    return True


def _file_load_error(loc: list[str | int], url: str, kind: str | None) -> ErrorDetail:
    what = kind or "file"
    return {
        "loc": loc,
        "msg": f"Failed to load the {what}: the data URI is not valid base64 or URL-encoded data.",
        "type": "file_load_error",
        "input": _short(url),
    }


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
