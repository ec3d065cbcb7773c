"""The emulated API, loaded once: the operations it declares and request validation against it.

openapi.yaml holds what every endpoint shares (queue parameters, status, errors, the queue and
run operations written once); each endpoint's input and output come from its fal document
(the built-in ones in ``emulator/endpoints/builtin/`` and any loaded), added to it here. Errors
are reported the way fal's FastAPI apps report them (``{"detail": [{"loc", "msg", "type", ...}]}``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson

from emulator.config import DEFAULT_SPEC_PATH
from emulator.core.models import JSON

if TYPE_CHECKING:
    import jsonschema

    from emulator.endpoints.documents import EndpointDocument

ErrorDetail = dict[str, Any]

_MISSING = object()
_PARAM_LOCATIONS = {"query", "header", "path"}

# pydantic v2 links each of its own error types to its documentation in the item's ``url``;
# fal's FastAPI apps pass that on. Errors an app raises itself (``file_download_error``) have none.
PYDANTIC_ERRORS_URL = "https://errors.pydantic.dev/2.11/v/"
_PYDANTIC_TYPES = frozenset(
    {
        "missing", "json_invalid", "model_attributes_type", "string_type", "int_type", "float_type",
        "bool_type", "list_type", "dict_type", "enum", "greater_than_equal", "less_than_equal",
        "greater_than", "less_than", "string_too_short", "string_too_long", "too_short", "too_long",
        "string_pattern_mismatch", "int_parsing", "float_parsing", "finite_number", "bool_parsing",
        "value_error", "int_from_float", "int_parsing_size",
    }
)  # fmt: skip


def with_urls(errors: list[ErrorDetail]) -> list[ErrorDetail]:
    """The items, each of pydantic's own types with its documentation ``url`` as pydantic writes it."""
    for error in errors:
        if error.get("type") in _PYDANTIC_TYPES:
            error["url"] = PYDANTIC_ERRORS_URL + error["type"]
    return errors


# Deeper JSON is refused: Python's parser, the schema check and the encoders all recurse, and
# past about a thousand levels they fail with RecursionError. No real input nests this far.
MAX_JSON_DEPTH = 100
# A JSON escape of a UTF-16 surrogate (D800-DFFF): the only way a lone surrogate gets into a body.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
# What a number past 64 bits needs in JSON text: an exponent, or 19 digits before any point.
_MAYBE_PAST_64_BITS = re.compile(rb"[0-9][eE]|[0-9]{19}")


class JSONRejected(ValueError):
    """A body that is not JSON the emulator can keep; ``detail`` is the FastAPI-style error entry."""

    def __init__(self, detail: ErrorDetail) -> None:
        super().__init__(detail["msg"] + (f": {detail['ctx']['error']}" if "ctx" in detail else ""))
        self.detail = detail


def _json_invalid(reason: str, position: int | None = None) -> JSONRejected:
    loc: list[str | int] = ["body"] if position is None else ["body", position]
    return JSONRejected(
        {"loc": loc, "msg": "JSON decode error", "type": "json_invalid", "input": {}, "ctx": {"error": reason}}
    )


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); Python's parser takes them, JavaScript's does not.
    raise _json_invalid(f"{name} is not a JSON value")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN or Infinity, no lone UTF-16 surrogate, at most ``MAX_JSON_DEPTH`` levels.

    Raises ``JSONRejected``. A lone surrogate cannot be written as UTF-8, so a store or a
    response could not carry it; fal's own stack (pydantic's JSON parser) refuses it too.
    """
    # orjson first: several times faster, and it refuses NaN, Infinity and lone surrogates too.
    # What it refuses goes through json, whose errors are the ones reported (and which takes a
    # BOM and 1e999, as before); so does a body with a 19-digit run, since orjson reads integers
    # past 64 bits as floats where json keeps them exact.
    if _LONG_DIGITS.search(raw) is not None:
        return _parse_slowly(raw)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _parse_slowly(raw)
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        _check_tree(data, check_text=False)
    return data


def _parse_slowly(raw: bytes) -> Any:
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except JSONRejected:
        raise
    except RecursionError:
        raise _json_invalid(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise _json_invalid(exc.msg, exc.pos) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _json_invalid(str(exc), 0) from None
    # Counting brackets (in C) rules out deep nesting for nearly every body without a walk.
    deep = raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    if deep or surrogates:
        _check_tree(data, check_text=surrogates)
    return data


def _check_tree(data: Any, *, check_text: bool) -> None:
    """Walk the parsed value without recursion: refuse depth past the limit and unencodable text."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if check_text and not _encodable(value):
                raise JSONRejected(
                    {
                        "loc": ["body", *path],
                        "msg": "Input should be a valid string, unable to parse raw data as a unicode string",
                        "type": "string_unicode",
                        "input": value.encode("utf-8", "replace").decode(),
                    }
                )
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth >= MAX_JSON_DEPTH:
            raise _json_invalid(f"nested deeper than {MAX_JSON_DEPTH} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if check_text and isinstance(key, str) and not _encodable(key):
                stack.append((key, depth + 1, path))
            stack.append((item, depth + 1, (*path, key)))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _resolve(node: Any, root: JSON) -> Any:
    """Inline local ``$ref``s and turn OpenAPI 3.0 ``nullable`` into JSON Schema."""
    if isinstance(node, list):
        return [_resolve(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _resolve(target, root)
    resolved = {key: _resolve(value, root) for key, value in node.items()}
    if resolved.pop("nullable", False) and "type" in resolved:
        resolved["type"] = [resolved["type"], "null"]
    for bound in ("Minimum", "Maximum"):
        # OpenAPI 3.0 writes an exclusive bound as a flag beside the bound itself.
        if resolved.get("exclusive" + bound) is True:
            resolved["exclusive" + bound] = resolved.pop(bound.lower())
        elif resolved.get("exclusive" + bound) is False:
            del resolved["exclusive" + bound]
    return resolved


@dataclass(frozen=True)
class Parameter:
    """A query, header or path parameter and its compiled schema."""

    name: str
    location: str
    required: bool
    schema: JSON

    # Raw values already found valid, with what they coerce to: a client sends the same few
    # (``logs=1`` on every status poll), and the schema check is the costly part.
    accepted: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def validator(self) -> jsonschema.protocols.Validator:
        return draft7(self.schema)

    def coerce(self, raw: str) -> Any:
        """Turn the raw string into the schema's type, FastAPI-style; raise ValueError if it cannot be."""
        kind = self.schema.get("type")
        if kind == "integer":
            if not re.fullmatch(r"[+-]?\d+", raw.strip()):
                raise ValueError("int_parsing")
            return int(raw)
        if kind == "number":
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError("finite_number")
            return value
        if kind == "boolean":
            lowered = raw.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError("bool_parsing")
        return raw


_ACCEPTED_KEPT = 64
# Accepted bodies an operation remembers (``Operation.shared_body``), and the largest it does.
_SHARED_BODIES_KEPT = 256
_SHARED_BODY_BYTES = 4096
_PARSING_MESSAGES = {
    "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
    "float_parsing": "Input should be a valid number, unable to parse string as a number",
    "finite_number": "Input should be a finite number",
    "bool_parsing": "Input should be a valid boolean, unable to interpret input",
}


@dataclass
class Operation:
    """One operation of the document, indexed by its ``x-emulator-action``."""

    action: str
    method: str
    path: str
    endpoint: str | None
    parameters: list[Parameter]
    body_schema: JSON | None
    body_validator: jsonschema.protocols.Validator | None = field(default=None, repr=False)
    # A compiled check for the common, valid body; only a body it refuses goes through
    # ``body_validator`` (built from ``body_schema`` on first use: jsonschema is slow to
    # import and most runs never see an invalid body), whose errors become the FastAPI-style details.
    body_is_valid: Callable[[Any], bool] | None = field(default=None, repr=False)
    # Compile ``body_is_valid`` from ``body_schema`` on the first body: each compiled check holds
    # about 1 MB of native memory, and most of the document's operations never see a body.
    compile_check: bool = field(default=False, repr=False)
    # Bodies accepted whole, parsed with their defaults filled in, by their bytes (``shared_body``).
    _shared: dict[bytes, JSON] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def body_defaults(self) -> JSON:
        if not self.body_schema:
            return {}
        props = self.body_schema.get("properties", {})
        return {name: prop["default"] for name, prop in props.items() if "default" in prop}

    def validate_parameters(
        self, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[JSON, list[ErrorDetail]]:
        """Coerce and check query and header parameters; return values by name and errors."""
        values: JSON = {}
        errors: list[ErrorDetail] = []
        for param in self.parameters:
            if param.location == "path":
                continue
            source = query if param.location == "query" else headers
            raw = source.get(param.name, _MISSING)
            loc: list[str | int] = [param.location, param.name]
            if raw is _MISSING:
                if param.required:
                    errors.append({"loc": loc, "msg": "Field required", "type": "missing", "input": None})
                continue
            assert isinstance(raw, str)
            accepted = param.accepted
            if raw in accepted:
                values[param.name] = accepted[raw]
                continue
            try:
                value = param.coerce(raw)
            except ValueError as exc:
                kind = str(exc) if str(exc) in _PARSING_MESSAGES else "float_parsing"
                errors.append({"loc": loc, "msg": _PARSING_MESSAGES[kind], "type": kind, "input": raw})
                continue
            found = [_detail(e, loc) for e in param.validator.iter_errors(value)]
            if found:
                errors.extend(found)
            else:
                values[param.name] = value
                if len(accepted) >= _ACCEPTED_KEPT:
                    accepted.clear()
                accepted[raw] = value
        return values, with_urls(errors)

    def validate_body(self, raw: bytes) -> tuple[JSON, list[ErrorDetail]]:
        """Parse and check a JSON body; return it with schema defaults filled in, and errors."""
        data, errors = self._check_body(raw)
        return data, with_urls(errors)

    def shared_body(self, raw: bytes) -> tuple[JSON, list[ErrorDetail]]:
        """``validate_body``, but an accepted body may be the very object an earlier call with the same
        bytes got: clients repeat bodies, and a request's input is never changed once accepted.

        Only small bodies are remembered, and only so many (the oldest go first).
        """
        shared = self._shared
        found = shared.get(raw) if type(raw) is bytes else None
        if found is not None:
            return found, []
        data, errors = self.validate_body(raw)
        if not errors and type(raw) is bytes and len(raw) <= _SHARED_BODY_BYTES:
            if len(shared) >= _SHARED_BODIES_KEPT:
                del shared[next(iter(shared))]
            shared[raw] = data
        return data, errors

    def _check_body(self, raw: bytes) -> tuple[JSON, list[ErrorDetail]]:
        if self.body_validator is None and not self.body_schema:
            return {}, []
        try:
            data = parse_json(raw) if raw.strip() else _MISSING
        except JSONRejected as exc:
            return {}, [exc.detail]
        if data is _MISSING:
            return {}, [{"loc": ["body"], "msg": "Field required", "type": "missing", "input": None}]
        if not isinstance(data, dict):
            return {}, [
                {
                    "loc": ["body"],
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "type": "model_attributes_type",
                    "input": data,
                }
            ]
        errors: list[ErrorDetail] = []
        if self.compile_check:
            self.body_is_valid = _fast_check(self.body_schema) if self.body_schema else None
            self.compile_check = False
        if not _passes(self.body_is_valid, data) or (_MAYBE_PAST_64_BITS.search(raw) and _past_64_bits(data)):
            if self.body_validator is None:
                self.body_validator = draft7(self.body_schema or {})
            errors = _first_per_value([_detail(error, ["body"]) for error in self.body_validator.iter_errors(data)])
        if errors:
            errors.sort(key=lambda e: [str(part) for part in e["loc"]])
            return data, errors
        for name, default in self.body_defaults.items():
            if name not in data:
                # Scalars are immutable: only a list or object default needs its own copy.
                data[name] = copy.deepcopy(default) if isinstance(default, (list, dict)) else default
        return data, []


_TYPE_ERRORS = {
    "string": ("Input should be a valid string", "string_type"),
    "integer": ("Input should be a valid integer", "int_type"),
    "number": ("Input should be a valid number", "float_type"),
    "boolean": ("Input should be a valid boolean", "bool_type"),
    "array": ("Input should be a valid list", "list_type"),
    "object": ("Input should be a valid dictionary", "dict_type"),
}


def _expected(values: list[Any]) -> str:
    quoted = [repr(v) if isinstance(v, str) else json.dumps(v) for v in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


# The errors of a value of the wrong type: pydantic checks a value's constraints only once it has its type.
_TYPE_CODES = frozenset({code for _, code in _TYPE_ERRORS.values()} | {"int_from_float", "int_parsing_size"})


def _first_per_value(errors: list[ErrorDetail]) -> list[ErrorDetail]:
    """The errors as pydantic reports them: a value of the wrong type, that alone, not its bounds too."""
    mistyped = {tuple(error["loc"]) for error in errors if error["type"] in _TYPE_CODES}
    if not mistyped:
        return errors
    return [error for error in errors if error["type"] in _TYPE_CODES or tuple(error["loc"]) not in mistyped]


def draft7(schema: JSON) -> jsonschema.protocols.Validator:
    """A jsonschema Draft 7 validator, imported on first use (it takes ~50 ms to import), whose integers
    are pydantic's: a float with no fractional part counts, unless it is past 64 bits."""
    global _Draft7
    if _Draft7 is None:
        import jsonschema

        checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _is_integer)
        _Draft7 = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=checker)  # type: ignore[no-untyped-call]
    validator: jsonschema.protocols.Validator = _Draft7(schema)
    return validator


_Draft7: Any = None
# pydantic reads a float as an integer only inside a signed 64-bit integer's range.
_INT_FLOAT_LIMIT = 2.0**63


def _is_integer(checker: Any, instance: Any) -> bool:
    if isinstance(instance, float):
        return instance.is_integer() and -_INT_FLOAT_LIMIT < instance < _INT_FLOAT_LIMIT
    return isinstance(instance, int) and not isinstance(instance, bool)


def _past_64_bits(data: Any) -> bool:
    """Whether a parsed body holds a float with no fractional part past 64 bits anywhere (JSON Schema
    takes it as an integer; pydantic does not)."""
    if type(data) is float:
        return not -_INT_FLOAT_LIMIT < data < _INT_FLOAT_LIMIT
    if type(data) is dict:
        return any(_past_64_bits(value) for value in data.values())
    if type(data) is list:
        return any(_past_64_bits(value) for value in data)
    return False


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` through libyaml when PyYAML has it: about ten times faster on openapi.yaml."""
    import yaml  # imported with the first document read: ~8 ms that a start-up may not need

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _detail(error: jsonschema.ValidationError, prefix: list[str | int]) -> ErrorDetail:
    """One jsonschema error as a FastAPI/pydantic error entry."""
    loc: list[str | int] = [*prefix, *error.absolute_path]
    kind = str(error.validator)
    value: Any = error.validator_value
    detail: ErrorDetail
    if kind == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        name = missing.group(1) if missing else str(error.message)
        return {"loc": [*loc, name], "msg": "Field required", "type": "missing", "input": error.instance}
    if kind == "type":
        wanted = value[0] if isinstance(value, list) else value
        msg, code = _TYPE_ERRORS.get(wanted, (error.message, "type_error"))
        if wanted == "integer" and isinstance(error.instance, float):  # pydantic's ways to refuse one
            if not math.isfinite(error.instance):
                msg, code = "Input should be a finite number", "finite_number"
            elif error.instance.is_integer():
                msg, code = "Unable to parse input string as an integer, exceeded maximum size", "int_parsing_size"
            else:
                msg, code = "Input should be a valid integer, got a number with a fractional part", "int_from_float"
        detail = {"loc": loc, "msg": msg, "type": code}
    elif kind == "enum":
        expected = _expected(list(value))
        detail = {"loc": loc, "msg": f"Input should be {expected}", "type": "enum", "ctx": {"expected": expected}}
    elif kind in ("minimum", "maximum"):
        word, code = ("greater", "greater_than_equal") if kind == "minimum" else ("less", "less_than_equal")
        detail = {
            "loc": loc,
            "msg": f"Input should be {word} than or equal to {value}",
            "type": code,
            "ctx": {"ge" if kind == "minimum" else "le": value},
        }
    elif kind in ("exclusiveMinimum", "exclusiveMaximum"):
        word, code = ("greater", "greater_than") if kind == "exclusiveMinimum" else ("less", "less_than")
        detail = {
            "loc": loc,
            "msg": f"Input should be {word} than {value}",
            "type": code,
            "ctx": {"gt" if kind == "exclusiveMinimum" else "lt": value},
        }
    elif kind == "minLength":
        detail = {"loc": loc, "msg": f"String should have at least {value} characters", "type": "string_too_short"}
    elif kind == "maxLength":
        detail = {"loc": loc, "msg": f"String should have at most {value} characters", "type": "string_too_long"}
    elif kind == "minItems":
        detail = {"loc": loc, "msg": f"List should have at least {value} items", "type": "too_short"}
    elif kind == "maxItems":
        detail = {"loc": loc, "msg": f"List should have at most {value} items", "type": "too_long"}
    elif kind == "pattern":
        detail = {"loc": loc, "msg": f"String should match pattern '{value}'", "type": "string_pattern_mismatch"}
    elif kind == "oneOf" and all(isinstance(alt, dict) and list(alt) == ["required"] for alt in value):
        # Exactly one of some fields (a model validator's check in fal's pydantic apps).
        names = " or ".join(name for alt in value for name in alt["required"])
        detail = {"loc": loc, "msg": f"Value error, exactly one of {names} must be given", "type": "value_error"}
    else:
        detail = {"loc": loc, "msg": error.message, "type": "value_error"}
    detail["input"] = error.instance
    return detail


def _fast_check(schema: JSON) -> Callable[[Any], bool] | None:
    """jsonschema-rs's check of the same Draft 7 schema (formats not asserted, as jsonschema's default)."""
    import jsonschema_rs  # imported with the first body checked, as the compile itself is deferred

    try:
        validator = jsonschema_rs.Draft7Validator(schema, validate_formats=False)
    except Exception:  # a schema it cannot compile: jsonschema alone decides
        return None
    return validator.is_valid


def _passes(check: Callable[[Any], bool] | None, data: Any) -> bool:
    if check is None:
        return False
    try:
        return check(data)
    except Exception:  # a value it cannot take (a NaN, a huge number): jsonschema decides
        return False


_NAMESPACES = frozenset({"workflows", "comfy"})
# openapi.yaml's paths every endpoint gets, with ``{endpoint_id}``, ``{Name}``, ``{Input}`` and ``{Output}`` filled in.
ENDPOINT_PATHS = "x-emulator-endpoint-paths"
# The actions that carry an endpoint's input (the others address one request, whatever its endpoint).
_BODY_ACTIONS = ("submit", "run", "run_stream")


@lru_cache(maxsize=1024)
def app_id_of(endpoint: str) -> str:
    """The app an endpoint id belongs to (``owner/alias``; ``workflows/owner/alias``): status, result
    and cancel URLs are built under it."""
    parts = endpoint.split("/")
    return "/".join(parts[:3] if parts[0] in _NAMESPACES else parts[:2])


class Spec:
    """The emulated API: openapi.yaml's shared part with every endpoint added, and the operations by
    action and endpoint.

    openapi.yaml declares what every endpoint shares (``x-emulator-endpoint-paths``: the queue and
    run operations, written once) and the surfaces of their own (the OpenAI-compatible one). Each
    endpoint comes from its fal document (:meth:`add_endpoint`): the built-in ones and any loaded.

    A spec made from openapi.yaml's text alone (``load(path, deferred=True)``) parses it, and adds
    the endpoints given so far, when a call first asks for an operation: a server starts without
    PyYAML or the parse.
    """

    def __init__(self, base: JSON | None, documents: Iterable[EndpointDocument] = (), *, text: str = "") -> None:
        self._text = text
        self._documents: dict[str, EndpointDocument] = {}
        # The whole document and its two texts, built when first served and again after a change.
        self._built: dict[str, Any] = {}
        self._operations: dict[tuple[str, str | None], Operation] = {}
        self._parameters: dict[str, list[Parameter]] = {}
        self._endpoints: frozenset[str] = frozenset()
        self._app_ids: frozenset[str] = frozenset()
        # Endpoints added before the base is parsed, in order, with the input check each was given.
        self._pending: list[tuple[EndpointDocument, Operation | None]] | None = []
        for document in documents:
            self.add_endpoint(document)
        if base is not None:
            self._load(base)

    def _load(self, base: JSON) -> None:
        self._base = base
        # openapi.yaml's own paths may name a schema an endpoint's document holds (the OpenAI-compatible
        # surface takes its endpoints' requests): they are resolved with the documents' schemas beside its own.
        schemas: JSON = {}
        for document, _ in self._pending or []:
            schemas.update(document.raw.get("components", {}).get("schemas", {}))
        components = base.get("components", {})
        self._root = {**base, "components": {**components, "schemas": {**schemas, **components.get("schemas", {})}}}
        for path, item in base.get("paths", {}).items():
            for method, raw in item.items():
                if not isinstance(raw, dict) or "x-emulator-action" not in raw:
                    continue
                op = self._compile(path, method, raw)
                self._operations.setdefault((op.action, op.endpoint), op)
        # The shared operations: the ones on a request answer for every endpoint; the parameters of
        # submit, run and run_stream go to each endpoint added.
        for path, item in base.get(ENDPOINT_PATHS, {}).items():
            for method, raw in item.items():
                if not isinstance(raw, dict) or "x-emulator-action" not in raw:
                    continue
                # The body is each endpoint's own: only the shared parameters are compiled here.
                op = self._compile(path, method, {key: value for key, value in raw.items() if key != "requestBody"})
                if op.action in _BODY_ACTIONS:
                    self._parameters[op.action] = op.parameters
                else:
                    self._operations.setdefault((op.action, None), dataclasses.replace(op, endpoint=None))
        self._endpoints = self._endpoints | frozenset(
            endpoint for (action, endpoint) in self._operations if action == "submit" and endpoint
        )
        self._app_ids = frozenset(app_id_of(e) for e in self._endpoints)
        pending, self._pending = self._pending or [], None
        for document, body in pending:
            self.add_endpoint(document, body)

    def _ensure(self) -> None:
        if self._pending is not None:
            self._load(load_yaml(self._text))

    @property
    def base(self) -> JSON:
        """openapi.yaml's document (the shared part)."""
        self._ensure()
        return self._base

    @property
    def endpoints(self) -> frozenset[str]:
        self._ensure()
        return self._endpoints

    @property
    def app_ids(self) -> frozenset[str]:
        self._ensure()
        return self._app_ids

    @classmethod
    def load(
        cls,
        path: Path = DEFAULT_SPEC_PATH,
        documents: Iterable[EndpointDocument] | None = None,
        *,
        deferred: bool = False,
    ) -> Spec:
        """The document at ``path`` with ``documents`` added (the built-in endpoints when None); parsed
        now, or when first needed if ``deferred``."""
        if documents is None:
            from emulator.endpoints.documents import builtin_documents  # which builds on this module

            documents = builtin_documents()
        text = path.read_text(encoding="utf-8")
        return cls(None if deferred else load_yaml(text), documents, text=text)

    def _compile(self, path: str, method: str, raw: JSON) -> Operation:
        parameters = []
        for param in _resolve(raw.get("parameters", []), self._root):
            schema = param.get("schema", {})
            parameters.append(
                Parameter(
                    name=param["name"] if param["in"] != "header" else param["name"].lower(),
                    location=param["in"],
                    required=bool(param.get("required")),
                    schema=schema,
                )
            )
        body_schema = None
        body = raw.get("requestBody")
        if body:
            body_schema = _resolve(body["content"]["application/json"]["schema"], self._root)
        return Operation(
            action=raw["x-emulator-action"],
            method=method.upper(),
            path=path,
            endpoint=raw.get("x-emulator-endpoint"),
            parameters=parameters,
            body_schema=body_schema,
            compile_check=bool(body_schema),
        )

    @property
    def documents(self) -> list[EndpointDocument]:
        """The endpoints' documents, in the order they were added (no parse needed)."""
        if self._pending is None:
            return list(self._documents.values())
        return list({document.endpoint_id: document for document, _ in self._pending}.values())

    def add_endpoint(self, document: EndpointDocument, body: Operation | None = None) -> None:
        """Add (or replace) an endpoint from its document: submit, run and run_stream take ``body``'s input
        check (the document's Input schema when None) and the queue parameters every endpoint shares.

        Adding an id again replaces its operations; the lookups stay one dict access each.
        """
        if self._pending is not None:
            self._pending.append((document, body))
            return
        endpoint = document.endpoint_id
        if body is None:
            body = body_operation(endpoint, document.input_schema)
        for action in _BODY_ACTIONS:
            parameters = self._parameters.get(action)
            if parameters is None:  # a document without the shared paths: take another endpoint's
                template = next((op for (a, e), op in self._operations.items() if a == action and e), None)
                parameters = [] if template is None else template.parameters
            path = "/" + endpoint + ("/stream" if action == "run_stream" else "")
            self._operations[(action, endpoint)] = dataclasses.replace(
                body, action=action, path=path, endpoint=endpoint, parameters=parameters
            )
        self._documents[endpoint] = document
        self._built.clear()
        self._endpoints = self._endpoints | {endpoint}
        self._app_ids = self._app_ids | {app_id_of(endpoint)}

    @property
    def document(self) -> JSON:
        """The whole API: the shared part with every endpoint's paths and schemas (built on first use)."""
        found = self._built.get("document")
        if found is None:
            from emulator.endpoints.documents import combined_document  # which builds on this module

            found = self._built["document"] = combined_document(self._documents.values(), base=self.base)
        return cast(JSON, found)

    @property
    def json_text(self) -> str:
        """The whole API as compact JSON (``/openapi.json``)."""
        found = self._built.get("json")
        if found is None:
            found = self._built["json"] = json.dumps(self.document, separators=(",", ":"))
        return cast(str, found)

    @property
    def source_text(self) -> str:
        """The whole API as YAML (``/openapi.yaml``)."""
        found = self._built.get("yaml")
        if found is None:
            import yaml

            dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
            found = self._built["yaml"] = yaml.dump(self.document, Dumper=dumper, sort_keys=False, allow_unicode=True)
        return cast(str, found)

    def operation(self, action: str, endpoint: str | None = None) -> Operation | None:
        """The operation for an action (``submit``, ``status``, ...), per endpoint where it has one."""
        found = self._operations.get((action, endpoint))
        if found is None and self._pending is not None:
            self._ensure()
            found = self._operations.get((action, endpoint))
        return found


def body_operation(endpoint: str, schema: JSON) -> Operation:
    """The submit operation of an endpoint whose input is ``schema`` (checks built on the first body)."""
    return Operation(
        action="submit",
        method="POST",
        path="/" + endpoint,
        endpoint=endpoint,
        parameters=[],
        body_schema=schema,
        compile_check=True,
    )
