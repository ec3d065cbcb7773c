"""Outputs generated from an endpoint's Output schema, deterministic for an input and a seed.

A value comes from what the input names (``seed``, ``prompt``, ``num_images``, ``image_size``,
``aspect_ratio``, ``resolution``, ``duration``, ``output_format``, ``sync_mode``), else from the
schema's ``examples`` when the example fits the schema, else from its type, format, enum and
bounds. File objects (an object with a ``url`` beside ``content_type``/``file_name``/...) are
real files rendered by :mod:`emulator.endpoints.render` and handed to the ``store_file``
callback for a URL; with ``sync_mode: true`` they are data URIs instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.core.models import JSON
from emulator.core.spec import draft7
from emulator.endpoints.documents import EndpointDocument
from emulator.endpoints.render import IMAGE_FORMATS, RenderCache, Rendered, RenderSpec

__all__ = [
    "MAX_FILES",
    "NAMED_IMAGE_SIZES",
    "OutputGenerator",
    "StoreFile",
    "image_size",
    "media_seconds",
    "video_size",
]

# (bytes, content type, file name) → the URL the file is served at.
StoreFile = Callable[[bytes, str, str], str]

# fal's named image sizes (the ``image_size`` enum of its image endpoints).
NAMED_IMAGE_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
_RESOLUTIONS = {"360p": 360, "480p": 480, "540p": 540, "580p": 580, "720p": 720, "1080p": 1080, "1440p": 1440}
_RESOLUTIONS |= {"2160p": 2160, "4k": 2160, "2k": 1440}
_SCALE_FIELDS = ("scale", "upscale_factor", "scale_factor", "upscaling_factor")
DEFAULT_SECONDS = 5.0
# Files in one output at most, whatever ``num_images`` a schema without a maximum lets through.
MAX_FILES = 16
_FILE_TITLES = {"file", "image", "video", "audio", "videofile", "audiofile", "imagefile"}
_FILE_FACTS = {"url", "content_type", "file_name", "file_size", "width", "height", "duration", "fps", "num_frames"}
_EXTENSIONS = {
    "png": "image",
    "jpg": "image",
    "jpeg": "image",
    "webp": "image",
    "gif": "image",
    "mp4": "video",
    "webm": "video",
    "mov": "video",
    "wav": "audio",
    "mp3": "audio",
    "ogg": "audio",
    "flac": "audio",
}
_FOOTER = "rendered by the local fal emulator, not by the model"
_NAME_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-"
_WORDS = [
    "amber",
    "river",
    "quiet",
    "lantern",
    "meadow",
    "silver",
    "harbor",
    "crimson",
    "forest",
    "echo",
    "velvet",
    "summit",
    "ember",
    "willow",
    "cobalt",
    "drift",
    "orchard",
    "tide",
    "marble",
    "canyon",
]


def _ratio(value: Any) -> tuple[float, float] | None:
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*", value)
        if match and float(match[1]) > 0 and float(match[2]) > 0:
            return float(match[1]), float(match[2])
    return None


def _even(value: float) -> int:
    return max(16, round(value / 16.0) * 16)


def image_size(inputs: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """The pixel size an image endpoint renders for an input (``image_size``, ``aspect_ratio``, a scale)."""
    defaults = defaults or {}
    size = inputs.get("image_size", defaults.get("image_size"))
    if isinstance(size, str) and size in NAMED_IMAGE_SIZES:
        return NAMED_IMAGE_SIZES[size]
    if isinstance(size, Mapping):
        width, height = size.get("width", 512), size.get("height", 512)
        if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            return width, height
    ratio = _ratio(inputs.get("aspect_ratio", defaults.get("aspect_ratio")))
    if ratio is not None:
        across, down = ratio
        # The long side at 1024, as fal's named sizes have it.
        if across >= down:
            return 1024, _even(1024 * down / across)
        return _even(1024 * across / down), 1024
    for name in _SCALE_FIELDS:
        factor = inputs.get(name, defaults.get(name))
        if isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 0:
            # An upscaler's input image is not decoded: a 512x512 original is assumed.
            return int(512 * factor), int(512 * factor)
    return 1024, 1024


def video_size(inputs: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """The pixel size of a video for an input (``resolution`` and ``aspect_ratio``; 720p 16:9 by default)."""
    defaults = defaults or {}
    resolution = inputs.get("resolution", defaults.get("resolution"))
    short = _RESOLUTIONS.get(str(resolution).lower(), 720) if resolution is not None else 720
    for name in _SCALE_FIELDS:
        factor = inputs.get(name, defaults.get(name))
        if resolution is None and isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 0:
            short = int(360 * factor)
    across, down = _ratio(inputs.get("aspect_ratio", defaults.get("aspect_ratio"))) or (16.0, 9.0)
    if across >= down:
        return round(short * across / down), short
    return short, round(short * down / across)


def media_seconds(inputs: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> float:
    """A video's or audio's length for an input: ``duration`` ("5", "5s", 5), else five seconds."""
    defaults = defaults or {}
    value = inputs.get("duration", defaults.get("duration"))
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s?\s*", value)
        value = float(match[1]) if match else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return DEFAULT_SECONDS


def _flat(schema: Any) -> JSON:
    """A schema with ``allOf`` merged and ``anyOf``/``oneOf`` settled on one non-null branch."""
    if not isinstance(schema, dict):
        return {}
    out = {k: v for k, v in schema.items() if k not in ("allOf", "anyOf", "oneOf")}
    for part in schema.get("allOf", []) or []:
        part = _flat(part)
        props = {**part.get("properties", {}), **out.get("properties", {})}
        required = list(dict.fromkeys([*part.get("required", []), *out.get("required", [])]))
        out = {**part, **out}
        if props:
            out["properties"] = props
        if required:
            out["required"] = required
    for key in ("anyOf", "oneOf"):
        branches = [_flat(b) for b in schema.get(key, []) or [] if isinstance(b, dict)]
        useful = [b for b in branches if b.get("type") != "null"]
        if useful:
            # A file object wins over a plain string: the file is what the endpoint makes.
            chosen = next((b for b in useful if _is_file(b)), useful[0])
            out = {**chosen, **out}
        elif branches:
            out = {**branches[0], **out}
    return out


def _is_file(schema: JSON) -> bool:
    props = schema.get("properties")
    if not isinstance(props, dict) or "url" not in props:
        return False
    title = str(schema.get("title", "")).lower().replace("_", "")
    return title in _FILE_TITLES or bool(set(props) & (_FILE_FACTS - {"url"}))


def _kind_from_example(example: Any) -> str | None:
    if isinstance(example, list) and example:
        example = example[0]
    if isinstance(example, dict):
        content_type = example.get("content_type")
        if isinstance(content_type, str) and content_type.split("/")[0] in ("image", "video", "audio"):
            return content_type.split("/")[0]
        example = example.get("url")
    if isinstance(example, str):
        suffix = example.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
        return _EXTENSIONS.get(suffix)
    return None


@dataclass
class _Run:
    """One generation: the input, its random source and what it has rendered so far."""

    document: EndpointDocument
    inputs: Mapping[str, Any]
    defaults: JSON
    rng: random.Random
    seed: int
    store_file: StoreFile
    sync_mode: bool
    count: int  # images asked for (num_images)
    files: int = 0


@dataclass
class OutputGenerator:
    """Makes an endpoint's output for an input; one per emulator (it holds the render cache)."""

    seed: int | None = None
    cache: RenderCache = field(default_factory=RenderCache)

    def generate(self, document: EndpointDocument, inputs: Mapping[str, Any], store_file: StoreFile) -> JSON:
        """The output object for an input, valid against the document's Output schema."""
        key = json.dumps([self.seed, document.endpoint_id, inputs], sort_keys=True, default=str)
        rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
        given = inputs.get("seed")
        seed = given if isinstance(given, int) and not isinstance(given, bool) else rng.randrange(2**31)
        defaults = document.input_defaults
        count = inputs.get("num_images", defaults.get("num_images", 1))
        run = _Run(
            document=document,
            inputs=inputs,
            defaults=defaults,
            rng=rng,
            seed=seed,
            store_file=store_file,
            sync_mode=inputs.get("sync_mode") is True,
            count=min(count, MAX_FILES) if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1,
        )
        value = self._value(document.output_schema, "", run)
        return value if isinstance(value, dict) else {}

    # -- values ----------------------------------------------------------------------------

    def _value(self, raw: Any, name: str, run: _Run) -> Any:
        schema = _flat(raw)
        if _is_file(schema):
            return self._file(schema, name, run, _kind_from_example(_first_example(raw)))
        honoured = self._honoured(schema, name, run)
        if honoured is not _NONE:
            return honoured
        if schema.get("type") != "array" and "properties" not in schema:
            example = _first_example(raw)
            if example is not _NONE and _fits(schema, example):
                return example
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object" or "properties" in schema:
            return self._object(schema, run)
        if kind == "array":
            return self._array(raw, schema, name, run)
        return self._scalar(schema, kind, name, run)

    def _honoured(self, schema: JSON, name: str, run: _Run) -> Any:
        kind = schema.get("type")
        if name == "seed" and kind in ("integer", "number", None):
            return run.seed
        if name in ("prompt", "revised_prompt", "enhanced_prompt") and kind in ("string", None):
            prompt = run.inputs.get("prompt", run.defaults.get("prompt"))
            if isinstance(prompt, str):
                return prompt
        if name == "has_nsfw_concepts" and kind == "array":
            return [False] * run.count
        if name == "timings" and kind == "object" and "properties" not in schema:
            return {"inference": round(run.rng.uniform(0.3, 4.0), 4)}
        return _NONE

    def _object(self, schema: JSON, run: _Run) -> JSON:
        props, required, order = _fields(schema)
        out: JSON = {}
        for name in order:
            if name in required or name in ("seed", "prompt", "has_nsfw_concepts", "timings"):
                out[name] = self._value(props[name], name, run)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict) and extra.get("type") in ("number", "integer"):
            out["inference"] = round(run.rng.uniform(0.3, 4.0), 4)
        return out

    def _array(self, raw: Any, schema: JSON, name: str, run: _Run) -> list[Any]:
        items = _flat(schema.get("items", {}))
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", 10**6))
        if _is_file(items):
            count = run.count if name in ("images", "image") or "image" in name else 1
        else:
            example = _first_example(raw)
            if example is not _NONE and _fits(schema, example):
                return list(example)
            count = 1
        count = min(max(count, low, 1 if _is_file(items) else low), high)
        return [self._value(schema.get("items", {}), name, run) for _ in range(count)]

    def _scalar(self, schema: JSON, kind: Any, name: str, run: _Run) -> Any:
        rng = run.rng
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return rng.choice(schema["enum"])
        if "const" in schema:
            return schema["const"]
        if "default" in schema and _fits(schema, schema["default"]):
            return schema["default"]
        if kind == "integer":
            low, high = _bounds(schema, integer=True)
            return rng.randint(int(low), int(high))
        if kind == "number":
            low, high = _bounds(schema, integer=False)
            return round(rng.uniform(low, high), 4)
        if kind == "boolean":
            return False
        if kind == "string":
            return _string(schema, name, rng)
        if kind == "null":
            return None
        return _string(schema, name, rng)

    # -- files -----------------------------------------------------------------------------

    def _file(self, schema: JSON, name: str, run: _Run, hinted: str | None) -> JSON:
        kind = _file_kind(name, schema, hinted, run.document.category)
        index = run.files
        run.files += 1
        seed = run.seed + index
        endpoint = run.document.endpoint_id
        prompt = run.inputs.get("prompt")
        lines = [endpoint]
        if kind == "video":
            width, height = video_size(run.inputs, run.defaults)
            seconds = media_seconds(run.inputs, run.defaults)
            lines.append(f"video {width}x{height}, {seconds:g} s, seed {seed}")
            spec = RenderSpec("video", width, height, seconds, seed, (*lines, *_prompt_lines(prompt), _FOOTER))
        elif kind == "audio":
            seconds = media_seconds(run.inputs, run.defaults)
            spec = RenderSpec("audio", seconds=seconds, seed=seed, lines=tuple(lines))
        else:
            width, height = image_size(run.inputs, run.defaults)
            fmt = run.inputs.get("output_format", run.defaults.get("output_format"))
            fmt = fmt.lower() if isinstance(fmt, str) and fmt.lower() in IMAGE_FORMATS else "png"
            of = f" ({index + 1} of {run.count})" if run.count > 1 else ""
            lines.append(f"image {width}x{height}{of}, seed {seed}")
            spec = RenderSpec("image", width, height, 0.0, seed, (*lines, *_prompt_lines(prompt), _FOOTER), fmt)
        rendered = self.cache.get(spec)
        file_name = _file_name(run.rng, rendered.extension)
        if run.sync_mode:
            url = f"data:{rendered.content_type};base64," + base64.b64encode(rendered.data).decode("ascii")
        else:
            url = run.store_file(rendered.data, rendered.content_type, file_name)
        return self._file_object(schema, run, rendered, url, file_name)

    def _file_object(self, schema: JSON, run: _Run, rendered: Rendered, url: str, file_name: str) -> JSON:
        facts: dict[str, Any] = {
            "url": url,
            "content_type": rendered.content_type,
            "file_name": file_name,
            "file_size": len(rendered.data),
            "width": rendered.width,
            "height": rendered.height,
            "duration": rendered.seconds,
            "fps": rendered.fps,
            "num_frames": rendered.frames,
        }
        props, required, order = _fields(schema)
        out: JSON = {}
        for name in order:
            fact = facts.get(name)
            if fact is not None and _fits(props[name], fact):
                out[name] = fact
            elif name in required:
                out[name] = self._value(props[name], name, run)
        return out


_NONE: Any = object()


def _first_example(schema: Any) -> Any:
    if isinstance(schema, dict):
        examples = schema.get("examples")
        if isinstance(examples, list) and examples:
            return examples[0]
        if "example" in schema:
            return schema["example"]
    return _NONE


def _fits(schema: JSON, value: Any) -> bool:
    import jsonschema  # on first use: the serve path imports no jsonschema before a request needs it

    try:
        return bool(draft7(schema).is_valid(value))
    except (jsonschema.SchemaError, TypeError):
        return False


def _bounds(schema: JSON, *, integer: bool) -> tuple[float, float]:
    step = 1.0 if integer else 1e-6
    span = 1000.0 if integer else 1.0
    low: float | None = schema.get("minimum")
    if low is None and "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + step
    high: float | None = schema.get("maximum")
    if high is None and "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - step
    if low is None and high is None:
        return 0.0, span
    if low is None:
        assert high is not None
        low = high - span
    if high is None:
        high = low + span
    return low, max(low, high)


def _string(schema: JSON, name: str, rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt in ("uri", "url") or name == "url" or name.endswith("_url"):
        return f"https://example.com/{rng.choice(_WORDS)}"
    if isinstance(fmt, str) and fmt.startswith("uuid"):
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", 200))
    text = " ".join(rng.choice(_WORDS) for _ in range(4))
    text = text.ljust(low, "x")
    return text[: max(high, 0)]


def _file_kind(name: str, schema: JSON, hinted: str | None, category: str | None) -> str:
    lowered = name.lower()
    for kind in ("image", "video", "audio"):
        if kind in lowered:
            return kind
    title = str(schema.get("title", "")).lower()
    for kind in ("image", "video", "audio"):
        if kind in title:
            return kind
    if hinted is not None:
        return hinted
    produced = (category or "").rsplit("-to-", 1)[-1]
    if produced in ("video", "audio", "image"):
        return produced
    if produced in ("speech", "music"):
        return "audio"
    return "image"


def _file_name(rng: random.Random, extension: str) -> str:
    # fal's generated file names: 21 URL-safe characters.
    return "".join(rng.choice(_NAME_ALPHABET) for _ in range(21)) + "." + extension


def _prompt_lines(prompt: Any) -> tuple[str, ...]:
    if not isinstance(prompt, str) or not prompt.strip():
        return ()
    text = " ".join(prompt.split())
    return ("prompt: " + (text if len(text) <= 300 else text[:297] + "..."),)


def _fields(schema: JSON) -> tuple[JSON, set[str], list[str]]:
    """An object schema's properties, its required names, and the order fal lists them in
    (``x-fal-order-properties`` first, then the rest as declared)."""
    props: JSON = schema.get("properties", {})
    order = [n for n in schema.get("x-fal-order-properties", []) if n in props]
    order += [n for n in props if n not in order]
    return props, set(schema.get("required", [])), order
