"""fal's per-endpoint queue OpenAPI documents: loading, checking, combining and serving them.

fal publishes one document per endpoint (``/api/openapi/queue/openapi.json?endpoint_id=<id>``):
``info["x-fal-metadata"]`` names the endpoint and its category, ``POST /<id>`` takes the
``<Name>Input`` schema and ``GET /<id>/requests/{request_id}`` answers ``<Name>Output``. This
module turns such a document into an :class:`EndpointDocument`; anything else is refused with a
:class:`DocumentError` whose message is one line naming the file and what is missing. The
built-in endpoints (any-llm, the openrouter/router family) are such documents too, in ``builtin/``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from emulator.core.models import JSON
from emulator.core.spec import ENDPOINT_PATHS, _resolve, app_id_of

__all__ = [
    "BUILTIN_DIR",
    "DOCUMENT_SUFFIXES",
    "DocumentError",
    "EndpointDocument",
    "builtin_documents",
    "combined_document",
    "load_document",
    "load_documents",
    "parse_document",
    "served_document",
]

DOCUMENT_SUFFIXES = (".json", ".yaml", ".yml")
_REF_PREFIX = "#/components/schemas/"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class DocumentError(ValueError):
    """A document that is not a fal endpoint document; the message is one line."""


@dataclass(frozen=True)
class EndpointDocument:
    """One endpoint's published document and what the emulator needs from it."""

    endpoint_id: str
    category: str | None
    input_name: str
    output_name: str
    # Schemas with every ``$ref`` inlined and OpenAPI 3.0 ``nullable`` turned into JSON Schema.
    input_schema: JSON = field(repr=False)
    output_schema: JSON = field(repr=False)
    raw: JSON = field(repr=False)
    source: str = "<memory>"

    @property
    def metadata(self) -> JSON:
        """``info["x-fal-metadata"]`` (empty when the document has none)."""
        info = self.raw.get("info")
        meta = info.get("x-fal-metadata") if isinstance(info, dict) else None
        return meta if isinstance(meta, dict) else {}

    @property
    def app_id(self) -> str:
        """``owner/alias``: the part of the id that status, result and cancel URLs use."""
        return "/".join(self.endpoint_id.split("/")[:2])

    @cached_property
    def input_defaults(self) -> JSON:
        """The Input schema's top-level defaults by field name."""
        props = self.input_schema.get("properties", {})
        return {name: prop["default"] for name, prop in props.items() if isinstance(prop, dict) and "default" in prop}

    @cached_property
    def json_text(self) -> str:
        """The document as fal serves it: compact JSON, built once."""
        return json.dumps(self.raw, separators=(",", ":"), ensure_ascii=False)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 200 else line[:197] + "..."


def load_document(path: Path) -> EndpointDocument:
    """Read one JSON or YAML file as an endpoint document."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentError(f"{path}: cannot be read: {_first_line(str(exc))}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DocumentError(f"{path}: not valid JSON: {_first_line(str(exc))}") from None
    else:
        import yaml  # with the first YAML document read: the built-in documents are JSON

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DocumentError(f"{path}: not valid YAML: {_first_line(str(exc))}") from None
    return parse_document(data, str(path))


def _document_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        # Sorted, so that the order of endpoints (and of the combined document) is stable.
        yield from sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
    elif path.exists():
        yield path
    else:
        raise DocumentError(f"{path}: no such file or folder")


def load_documents(paths: Iterable[Path]) -> list[EndpointDocument]:
    """Every document in the given files and folders (a folder's ``.json``/``.yaml``/``.yml`` files).

    Two documents for one endpoint id are refused: which one would serve it is not obvious.
    """
    found: dict[str, EndpointDocument] = {}
    for path in paths:
        for file in _document_files(Path(path)):
            document = load_document(file)
            earlier = found.get(document.endpoint_id)
            if earlier is not None:
                raise DocumentError(f"{file}: endpoint {document.endpoint_id} is already defined by {earlier.source}")
            found[document.endpoint_id] = document
    return list(found.values())


# The endpoints every emulator serves (any-llm, the openrouter/router family), one fal document each.
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


@lru_cache(maxsize=1)
def _builtin() -> tuple[EndpointDocument, ...]:
    return tuple(load_documents([BUILTIN_DIR]))


def builtin_documents() -> list[EndpointDocument]:
    """The built-in endpoints' documents, read once per process (in file name order)."""
    return list(_builtin())


def parse_document(data: Any, source: str = "<memory>") -> EndpointDocument:
    """Check a parsed document's fal shape and extract the endpoint from it."""

    def fail(what: str) -> DocumentError:
        return DocumentError(f"{source}: not a fal endpoint document: {what}")

    if not isinstance(data, dict):
        raise fail(f"the top level is {type(data).__name__}, not an object")
    version = data.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise fail("no 'openapi: 3.x' field")
    paths = data.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise fail("no paths")
    posts = [p for p, item in paths.items() if isinstance(item, dict) and isinstance(item.get("post"), dict)]
    if not posts:
        raise fail("no POST operation (the submit path /<endpoint id>)")
    if len(posts) > 1:
        raise fail(f"{len(posts)} POST paths ({', '.join(sorted(posts))}); fal's documents have one")
    post_path = posts[0]
    endpoint_id = _endpoint_id(data, post_path)
    if not endpoint_id:
        raise fail("no endpoint id (info.x-fal-metadata.endpointId or a POST path /<owner>/<alias>)")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+", endpoint_id):
        raise fail(f"endpoint id {endpoint_id!r} is not of the form owner/alias[/path]")

    schemas = (data.get("components") or {}).get("schemas") if isinstance(data.get("components"), dict) else None
    if not isinstance(schemas, dict):
        raise fail("no components.schemas")
    input_name = _body_schema_name(paths[post_path]["post"])
    if input_name is None:
        raise fail(f"POST {post_path} has no application/json request body referring to an Input schema")
    output_name = _output_schema_name(paths, endpoint_id)
    if output_name is None:
        raise fail(f"no Output schema (GET /{endpoint_id}/requests/{{request_id}} with a 200 JSON schema)")
    for name in (input_name, output_name):
        if not isinstance(schemas.get(name), dict):
            raise fail(f"components.schemas has no {name!r}")
    problem = _ref_problem(data)
    if problem is not None:
        raise fail(problem)
    input_schema = _resolve(schemas[input_name], data)
    output_schema = _resolve(schemas[output_name], data)
    if input_schema.get("type", "object") != "object":
        raise fail(f"Input schema {input_name!r} is not an object")
    meta = data.get("info", {}).get("x-fal-metadata") if isinstance(data.get("info"), dict) else None
    category = meta.get("category") if isinstance(meta, dict) else None
    return EndpointDocument(
        endpoint_id=endpoint_id,
        category=category if isinstance(category, str) and category else None,
        input_name=input_name,
        output_name=output_name,
        input_schema=input_schema,
        output_schema=output_schema,
        raw=data,
        source=source,
    )


def _endpoint_id(data: JSON, post_path: str) -> str | None:
    info = data.get("info")
    meta = info.get("x-fal-metadata") if isinstance(info, dict) else None
    declared = meta.get("endpointId") if isinstance(meta, dict) else None
    if isinstance(declared, str) and declared.strip("/"):
        return declared.strip("/")
    from_path = post_path.strip("/")
    return from_path if "/" in from_path and "{" not in from_path else None


def _ref_name(schema: Any) -> str | None:
    """The component a schema refers to: directly, or through a one-element ``allOf``."""
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
        return ref[len(_REF_PREFIX) :]
    parts = schema.get("allOf")
    if isinstance(parts, list) and len(parts) == 1:
        return _ref_name(parts[0])
    return None


def _json_schema(holder: Any) -> Any:
    content = holder.get("content") if isinstance(holder, dict) else None
    media = content.get("application/json") if isinstance(content, dict) else None
    return media.get("schema") if isinstance(media, dict) else None


def _body_schema_name(operation: JSON) -> str | None:
    return _ref_name(_json_schema(operation.get("requestBody")))


def _output_schema_name(paths: JSON, endpoint_id: str) -> str | None:
    # fal lists the result under the full id; accept the owner/alias form too.
    app_id = "/".join(endpoint_id.split("/")[:2])
    for prefix in (endpoint_id, app_id):
        item = paths.get(f"/{prefix}/requests/{{request_id}}")
        get = item.get("get") if isinstance(item, dict) else None
        responses = get.get("responses") if isinstance(get, dict) else None
        if isinstance(responses, dict):
            # YAML reads an unquoted status code as an integer key.
            name = _ref_name(_json_schema(responses.get("200", responses.get(200))))
            if name is not None:
                return name
    return None


def _ref_problem(data: JSON) -> str | None:
    """Why the document's local ``$ref``s cannot be inlined (missing or circular), or None."""
    schemas = data["components"]["schemas"]
    for ref in _refs(data):
        if not ref.startswith("#/"):
            return f"$ref {ref!r} is not local to the document"
        target: Any = data
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if target is None:
            return f"$ref {ref!r} points at nothing"
    # A schema that refers back to itself cannot be inlined: the validator and the generator both need it flat.
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> str | None:
        if state.get(name) == 2:
            return None
        if state.get(name) == 1:
            return "circular $ref " + " -> ".join([*trail[trail.index(name) :], name])
        state[name] = 1
        for ref in _refs(schemas.get(name)):
            if ref.startswith(_REF_PREFIX):
                found = visit(ref[len(_REF_PREFIX) :], [*trail, name])
                if found:
                    return found
        state[name] = 2
        return None

    for name in schemas:
        found = visit(name, [])
        if found:
            return found
    return None


def served_document(document: EndpointDocument, *, servers: list[JSON] | None = None) -> JSON:
    """One endpoint's document as fal serves it (a copy; ``servers`` replaced when given)."""
    served = copy.deepcopy(document.raw)
    if servers is not None:
        served["servers"] = servers
    return served


def combined_document(
    documents: Iterable[EndpointDocument],
    *,
    base: JSON | None = None,
    title: str = "fal endpoints (local emulator)",
    servers: list[JSON] | None = None,
) -> JSON:
    """One OpenAPI document covering several endpoints (added to ``base`` when given).

    Every document has its own components, and two documents may give one name (``Image``,
    ``File``) different schemas; a name already taken by a different schema is renamed to
    ``<endpoint id>.<name>`` (with ``/`` as ``.``) and that document's ``$ref``s follow it.

    A base that declares the paths every endpoint shares (``x-emulator-endpoint-paths``, as
    openapi.yaml does) gives each endpoint those paths, with its Input and Output schemas and the
    schemas they refer to, in place of the document's own paths.
    """
    combined: JSON = copy.deepcopy(base) if base is not None else {"openapi": "3.0.4"}
    templates = combined.pop(ENDPOINT_PATHS, None)
    info = combined.setdefault("info", {})
    info.setdefault("title", title)
    info.setdefault("version", "1.0.0")
    if servers is not None:
        combined["servers"] = servers
    components = combined.setdefault("components", {})
    schemas: JSON = components.setdefault("schemas", {})
    schemes: JSON = components.setdefault("securitySchemes", {})
    paths: JSON = combined.setdefault("paths", {})
    for document in documents:
        raw = document.raw
        theirs: JSON = raw.get("components", {}).get("schemas", {})
        if templates is not None:
            theirs = _reachable(theirs, (document.input_name, document.output_name))
        renames: dict[str, str] = {}
        prefix = _SAFE_NAME.sub("_", document.endpoint_id.replace("/", ".")) + "."
        # A rename changes the schemas that refer to it, which may then collide in turn: repeat until stable.
        while True:
            clashes = {
                name: prefix + name
                for name, schema in theirs.items()
                if name not in renames and name in schemas and schemas[name] != _renamed(schema, renames)
            }
            if not clashes:
                break
            renames.update(clashes)
        for name, schema in theirs.items():
            schemas.setdefault(renames.get(name, name), _renamed(schema, renames))
        for name, scheme in raw.get("components", {}).get("securitySchemes", {}).items():
            schemes.setdefault(name, copy.deepcopy(scheme))
        if templates is not None:
            _add_shared_paths(paths, templates, document, renames)
        else:
            for path, item in raw.get("paths", {}).items():
                paths[path] = _renamed(item, renames)
        if "security" in raw:
            combined.setdefault("security", copy.deepcopy(raw["security"]))
    return combined


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _refs(item)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for key, value in node.items():
            if key != "$ref":
                yield from _refs(value)


def _reachable(schemas: JSON, names: Iterable[str]) -> JSON:
    """The schemas named and those they refer to, in the document's order (its QueueStatus is left out)."""
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted or name not in schemas:
            continue
        wanted.add(name)
        todo.extend(ref[len(_REF_PREFIX) :] for ref in _refs(schemas[name]) if ref.startswith(_REF_PREFIX))
    return {name: schema for name, schema in schemas.items() if name in wanted}


def _add_shared_paths(paths: JSON, templates: JSON, document: EndpointDocument, renames: dict[str, str]) -> None:
    """The shared paths for one endpoint; those on a request also under its app id (the first endpoint
    of an app gives the app's), as the clients build those URLs."""
    endpoint_id = document.endpoint_id
    values = {
        "{endpoint_id}": endpoint_id,
        "{Name}": "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", endpoint_id)),
        "{Input}": renames.get(document.input_name, document.input_name),
        "{Output}": renames.get(document.output_name, document.output_name),
    }
    app_id = app_id_of(endpoint_id)
    # An endpoint whose run surface openapi.yaml declares itself (the OpenAI-compatible one) keeps that.
    own_run = f"/run/{endpoint_id}" in paths
    for template, item in templates.items():
        if own_run and template.startswith("/run/"):
            continue
        filled = _filled(item, values)
        if "/requests/" in template and app_id != endpoint_id:
            paths.setdefault(template.replace("{endpoint_id}", app_id), filled)
        paths[template.replace("{endpoint_id}", endpoint_id)] = copy.deepcopy(filled)


def _filled(node: Any, values: dict[str, str]) -> Any:
    """A copy of a shared path with the endpoint's values in place of the placeholders."""
    if isinstance(node, list):
        return [_filled(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _filled(value, values) for key, value in node.items()}
    if isinstance(node, str) and "{" in node:
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
    return node


def _renamed(node: Any, renames: dict[str, str]) -> Any:
    """A copy of ``node`` with ``$ref``s to renamed components following them."""
    if isinstance(node, list):
        return [_renamed(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _renamed(value, renames) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX) and ref[len(_REF_PREFIX) :] in renames:
        out["$ref"] = _REF_PREFIX + renames[ref[len(_REF_PREFIX) :]]
    return out
