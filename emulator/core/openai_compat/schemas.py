"""JSON from a JSON schema: a value valid against the schema (the subset structured outputs use)."""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any

from emulator.core.models import JSON

__all__ = ["instance_from_schema"]

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
_MAX_SCHEMA_DEPTH = 12
# Bounds on what one schema can make the generator write: a caller's schema may ask for a
# billion items or characters, and nested arrays multiply; past these the value stops growing.
_MAX_VALUES = 2_000
_MAX_ITEMS = 64
_MAX_STRING = 4096


class _Budget:
    """How many more values the generator may write for one schema."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def instance_from_schema(schema: Any, seed: str) -> Any:
    """A value valid against a JSON schema (the subset structured outputs use), the same for one seed.

    Every property is filled (strict structured outputs require them all); ``$ref`` into
    ``$defs``/``definitions`` is followed; ``anyOf``/``oneOf`` take their first branch.
    """
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    root = schema if isinstance(schema, dict) else {}
    return _instance(root, root, rng, 0, _Budget(_MAX_VALUES))


def _resolve(schema: JSON, root: JSON) -> JSON:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            return target
    return schema


def _instance(schema: Any, root: JSON, rng: random.Random, depth: int, budget: _Budget) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH or budget.left <= 0:
        return None
    budget.left -= 1
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    for combinator in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(combinator)
        if isinstance(branches, list) and branches:
            non_null = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            return _instance((non_null or branches)[0], root, rng, depth + 1, budget)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: _instance(sub, root, rng, depth + 1, budget) for name, sub in properties.items()}
    if kind == "array":
        low = schema.get("minItems", 1)
        count = min(max(low if isinstance(low, int) else 1, 1), _MAX_ITEMS)
        high = schema.get("maxItems")
        if isinstance(high, int):
            count = min(count, high)
        return [_instance(schema.get("items", {}), root, rng, depth + 1, budget) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get(
            "maximum", schema.get("exclusiveMaximum", (low if isinstance(low, (int, float)) else 0) + 100)
        )
        low = low if isinstance(low, (int, float)) else 0
        high = high if isinstance(high, (int, float)) and high >= low else low + 100
        if kind == "integer":
            start, end = math.ceil(low), math.floor(high)
            if "exclusiveMinimum" in schema and start == low:
                start += 1
            if "exclusiveMaximum" in schema and end == high:
                end -= 1
            return rng.randint(start, max(start, end))
        return round(low + (high - low) * (0.25 + rng.random() / 2), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _string(schema: JSON, rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    if fmt == "email":
        return "someone@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com/"
    if fmt == "uuid":
        return "00000000-0000-4000-8000-000000000000"
    text = " ".join(rng.choice(_WORDS) for _ in range(3))
    low = schema.get("minLength")
    if isinstance(low, int) and len(text) < low:
        text = (text + " ") * (min(low, _MAX_STRING) // len(text) + 1)
    high = schema.get("maxLength")
    if isinstance(high, int):
        text = text[:high]
    return text
