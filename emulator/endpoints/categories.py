"""Behaviour per fal category (``x-fal-metadata.category``): run time, progress logs, billing.

One table says what each category produces and how long it takes in the ``realistic`` profile
(an image in seconds, a video in about a minute); the ``instant`` profile takes no time at
all, for CI. An LLM category is only flagged: the any-llm behaviour (token streaming,
cumulative partials) stays where it is, in ``emulator.core.lifecycle`` and ``outputs``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.core import lifecycle
from emulator.core.fixture_files import Timing
from emulator.core.models import JSON, Failure, Plan
from emulator.endpoints.documents import EndpointDocument
from emulator.endpoints.generate import image_size, media_seconds

__all__ = ["Category", "billable_units", "category_for", "make_plan", "progress_logs", "run_seconds"]


@dataclass(frozen=True, slots=True)
class Category:
    """What a category produces and how long one request of it runs in the realistic profile."""

    name: str
    produces: str  # "image", "video", "audio", "text" or "other"
    base_seconds: float
    per_unit_seconds: float = 0.0  # per image, or per second of video or audio
    is_llm: bool = False


_PRODUCED_TIMING = {
    # Rough public figures: a FLUX image in a few seconds, a 5 s video in about a minute.
    "image": (2.0, 1.0),
    "video": (35.0, 5.0),
    "audio": (1.5, 0.2),
    "text": (1.0, 0.0),
    "3d": (20.0, 0.0),
    "other": (2.0, 0.0),
}
_KNOWN = {
    "image-to-image": Category("image-to-image", "image", 4.0, 1.0),
    "video-to-video": Category("video-to-video", "video", 45.0, 6.0),
    "llm": Category("llm", "text", 0.0, is_llm=True),
    "vision": Category("vision", "text", 0.0, is_llm=True),
    "text-to-text": Category("text-to-text", "text", 0.0, is_llm=True),
    "speech-to-text": Category("speech-to-text", "text", 3.0),
}


def category_for(document_or_name: EndpointDocument | str | None) -> Category:
    """The behaviour of a category, by name or from a document; unknown names get their output's."""
    name = document_or_name.category if isinstance(document_or_name, EndpointDocument) else document_or_name
    name = (name or "other").strip().lower()
    if name in _KNOWN:
        return _KNOWN[name]
    produced = name.rsplit("-to-", 1)[-1]
    if produced in ("speech", "music"):
        produced = "audio"
    if produced not in _PRODUCED_TIMING:
        produced = "other"
    base, per_unit = _PRODUCED_TIMING[produced]
    return Category(name, produced, base, per_unit)


def _count(inputs: Mapping[str, Any], defaults: Mapping[str, Any]) -> int:
    value = inputs.get("num_images", defaults.get("num_images", 1))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _units(category: Category, inputs: Mapping[str, Any], defaults: Mapping[str, Any]) -> float:
    if category.produces == "image":
        return _count(inputs, defaults)
    if category.produces in ("video", "audio"):
        return media_seconds(inputs, defaults)
    return 1.0


def run_seconds(
    category: Category, profile: str, inputs: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> float:
    """How long one request runs: nothing in ``instant``, the category's time in any other profile."""
    if profile == "instant" or category.is_llm:
        return 0.0
    defaults = defaults or {}
    return round(category.base_seconds + category.per_unit_seconds * _units(category, inputs, defaults), 3)


def billable_units(category: Category, inputs: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> int:
    """Units one request is billed: per megapixel of each image, per second of video or audio.

    An LLM request keeps any-llm's rule (ten for a premium model, else one).
    """
    defaults = defaults or {}
    if category.is_llm:
        model = inputs.get("model")
        return lifecycle.billable_units(model if isinstance(model, str) else None)
    if category.produces == "image":
        width, height = image_size(inputs, defaults)
        return _count(inputs, defaults) * max(1, math.ceil(width * height / 1_000_000))
    if category.produces in ("video", "audio"):
        return max(1, math.ceil(media_seconds(inputs, defaults)))
    return 1


def progress_logs(
    category: Category,
    endpoint_id: str,
    inputs: Mapping[str, Any],
    seconds: float,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[tuple[float, str, str], ...]:
    """The log lines of one run as ``(seconds after start, level, message)``, like a diffusion app's."""
    lines = _progress(category, endpoint_id, inputs, seconds, defaults or {})
    return tuple((share * seconds, level, message) for share, level, message in lines)


def _progress(
    category: Category, endpoint_id: str, inputs: Mapping[str, Any], seconds: float, defaults: Mapping[str, Any]
) -> list[tuple[float, str, str]]:
    """The log lines of one run as ``(share of the run done, level, message)``.

    By share rather than by second, so a run that takes no time (the ``instant`` profile) still
    knows which lines come before a point of it (where a lost runner stops).
    """
    steps = inputs.get("num_inference_steps", defaults.get("num_inference_steps"))
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
        steps = 4
    lines: list[tuple[float, str, str]] = [(0.0, "INFO", f"Running {endpoint_id} ({category.name})")]
    # Four progress lines however many steps there are: the status log stays short.
    for quarter in (1, 2, 3, 4):
        done = max(1, steps * quarter // 4)
        bar = "#" * (quarter * 5) + " " * (20 - quarter * 5)
        lines.append((quarter / 5, "INFO", f"{quarter * 25:3d}%|{bar}| {done}/{steps}"))
    if category.produces == "image":
        width, height = image_size(inputs, defaults)
        count = _count(inputs, defaults)
        what = f"{count} image{'s' if count != 1 else ''} ({width}x{height})"
    elif category.produces in ("video", "audio"):
        what = f"a {media_seconds(inputs, defaults):g} s {category.produces}"
    else:
        what = "the output"
    lines.append((1.0, "INFO", f"Generated {what} in {seconds:.2f}s"))
    return lines


def make_plan(
    document: EndpointDocument,
    inputs: Mapping[str, Any],
    output: JSON,
    *,
    profile: str,
    failure: Failure | None = None,
    timing: Timing | None = None,
    logs: tuple[tuple[str, str], ...] = (),
    lost_after: float | None = None,
) -> Plan:
    """The scheduler's plan for one non-LLM run: no tokens, the output at the end, progress logs on the way.

    A fixture's ``timing`` and ``logs`` win over the category's, as they do for any-llm: with
    no tokens, ``first_token_after`` is when the output comes, the length of the run. A
    ``failure`` with ``lost_after`` (a runner lost mid-run) ends the run at that share of it,
    after the log lines due before; without, the run fails before any work (a refused input).
    """
    category = category_for(document)
    defaults = document.input_defaults
    seconds = run_seconds(category, profile, inputs, defaults)
    if timing is not None and timing.first_token_after is not None:
        seconds = timing.first_token_after
    # A fixture's own lines are spread over the run, as any-llm's are.
    extra = [((index + 1) / (len(logs) + 1), level, message) for index, (message, level) in enumerate(logs)]
    if failure is not None and lost_after is None:
        # A refused input (or a fixture's error) fails before any work, as fal's apps validate
        # first: at once, or when a fixture's timing says, as any-llm's fails before its first token.
        at = timing.first_token_after if timing is not None and timing.first_token_after is not None else 0.0
        return Plan(
            tokens=(),
            first_token_after=at,
            seconds_per_token=0.0,
            output={},
            failure=failure,
            logs=(*((share * at, level, message) for share, level, message in extra), (at, "ERROR", failure.message)),
        )
    lines = _progress(category, document.endpoint_id, inputs, seconds, defaults) + extra
    lines.sort(key=lambda line: line[0])
    end = 1.0
    if failure is not None and lost_after is not None:
        # The runner is lost part way: what was written before that point stays, then the error.
        end = lost_after
        lines = [line for line in lines if line[0] < end]
        lines.append((end, "ERROR", failure.message))
    return Plan(
        tokens=(),
        first_token_after=seconds * end,
        seconds_per_token=0.0,
        output=output if failure is None else {},
        failure=failure,
        logs=tuple((share * seconds, level, message) for share, level, message in lines),
    )
