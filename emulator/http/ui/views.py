"""What the dashboard shows, as plain data: rows, a request's details, form fields, snippets.

Everything here reads the core objects (records, the journal, webhook attempts, the spec)
and returns dicts and lists for the templates; nothing here renders HTML or knows Starlette.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulator.core.models import JSON, RequestRecord, State
from emulator.core.service import Emulator
from emulator.webhooks import WebhookVerificationError, check

STATUSES = tuple(state.value for state in State)
# Rows the queue view renders at most; a larger namespace shows its newest.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

_IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
_AUDIO = (".mp3", ".wav", ".ogg", ".m4a", ".flac")
_VIDEO = (".mp4", ".webm", ".mov")


@dataclass(frozen=True, slots=True)
class Filters:
    """The queue view's filters: namespace (API key id), endpoint, status; empty means any."""

    namespace: str = ""
    endpoint: str = ""
    status: str = ""
    limit: int = DEFAULT_LIMIT

    def matches(self, record: RequestRecord) -> bool:
        return (
            (not self.namespace or record.namespace == self.namespace)
            and (not self.endpoint or record.endpoint == self.endpoint)
            and (not self.status or record.state.value == self.status)
        )

    def query(self) -> str:
        """The filters as a query string, for the event stream's URL."""
        parts = {"namespace": self.namespace, "endpoint": self.endpoint, "status": self.status}
        return "&".join(f"{k}={_quote(v)}" for k, v in parts.items() if v)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def clock_time(seconds: float | None) -> str:
    """A clock reading as a time of day (UTC) with milliseconds."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S.%f")[:-3]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def outcome(record: RequestRecord) -> tuple[str, str]:
    """A short word for how a request ended, and the style it is shown in."""
    if not record.done:
        return ("", "")
    if record.failure is None:
        return ("OK", "ok")
    kind = record.failure.error_type or "error"
    return (f"{record.failure.status_code} {kind}", "error")


def row(emulator: Emulator, record: RequestRecord) -> JSON:
    """One line of the queue view."""
    now = emulator.clock.now()
    queued_until = record.started_at if record.started_at is not None else (record.completed_at or now)
    ran_until = record.completed_at or record.paused_at or now
    word, style = outcome(record)
    position = None
    if record.state is State.IN_QUEUE:
        position = emulator.scheduler.position(record)
    return {
        "id": record.id,
        "namespace": record.namespace,
        "endpoint": record.endpoint,
        "status": record.state.value,
        "held": emulator.scheduler.is_held(record),
        "position": position,
        "submitted": clock_time(record.submitted_at),
        "submitted_at": record.submitted_at,
        "started_at": record.started_at,
        "queued_for": duration(queued_until - record.submitted_at),
        "ran_for": "" if record.started_at is None else duration(ran_until - record.started_at),
        # Rows still waiting or running count up in the browser from these (system clock only).
        "ticking_queue": record.state is State.IN_QUEUE,
        "ticking_run": record.state is State.IN_PROGRESS and record.paused_at is None,
        "outcome": word,
        "outcome_style": style,
        "priority": record.priority.name.lower(),
    }


def records(emulator: Emulator, filters: Filters) -> tuple[list[RequestRecord], int]:
    """The records the filters select, newest first, up to the limit; and how many matched."""
    found = [r for r in emulator.store.records(filters.namespace or None) if filters.matches(r)]
    found.sort(key=lambda r: (r.submitted_at, r.seq), reverse=True)
    return found[: filters.limit], len(found)


def namespaces(emulator: Emulator, limit: int = 200) -> list[str]:
    """The namespaces that have requests now, for the key filter (bounded)."""
    seen: dict[str, None] = {}
    for record in emulator.store.records():
        seen[record.namespace] = None
        if len(seen) >= limit:
            break
    return sorted(seen)


def summary(emulator: Emulator, namespace: str | None) -> JSON:
    """The status bar: paused or not, the clock, counts by state."""
    counts = dict.fromkeys(STATUSES, 0)
    for record in emulator.store.records(namespace or None):
        counts[record.state.value] += 1
    manual = type(emulator.clock).__name__ == "ManualClock"
    return {
        "paused": emulator.scheduler.paused,
        "clock": "manual" if manual else "system",
        "now": emulator.clock.now(),
        "now_text": clock_time(emulator.clock.now()),
        "counts": counts,
        "profile": emulator.scheduler.profile.name,
        "runners": emulator.scheduler.runners,
        "faults": [rule.describe() for rule in emulator.faults.rules],
    }


# -- one request ----------------------------------------------------------------------------


def streamed_text(emulator: Emulator, record: RequestRecord) -> str:
    """The text a run has written so far (the whole answer once it is done)."""
    plan = record.plan
    if plan is None:
        return ""
    return "".join(plan.tokens[: emulator.scheduler.tokens_ready(record)])


def timeline(record: RequestRecord) -> list[JSON]:
    """The state changes with their clock times, first to last."""
    steps = [{"label": "IN_QUEUE", "detail": "submitted", "at": clock_time(record.submitted_at)}]
    if record.started_at is not None:
        steps.append({"label": "IN_PROGRESS", "detail": "a runner started it", "at": clock_time(record.started_at)})
    if record.paused_at is not None:
        steps.append({"label": "HELD", "detail": "held mid-run", "at": clock_time(record.paused_at)})
    if record.completed_at is not None:
        word, _ = outcome(record)
        steps.append({"label": "COMPLETED", "detail": word, "at": clock_time(record.completed_at)})
    return steps


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of an output shown to people: text, an image, audio, video, or JSON."""

    kind: str
    label: str
    value: str


def output_parts(output: Any) -> list[Part]:
    """The parts of an output worth rendering: its text fields and every media URL in it."""
    parts: list[Part] = []
    if isinstance(output, dict):
        for key in ("output", "text", "output_text", "reasoning"):
            value = output.get(key)
            if isinstance(value, str) and value:
                parts.append(Part("text", key, value))
        choices = output.get("choices")  # a chat.completion (the OpenAI-compatible ids)
        for index, choice in enumerate(choices if isinstance(choices, list) else []):
            message = choice.get("message") if isinstance(choice, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str) and content:
                parts.append(Part("text", f"choices[{index}].message.content", content))
    _media(output, "", parts, budget=[50])
    return parts


def _media(node: Any, where: str, parts: list[Part], budget: list[int]) -> None:
    """Find files (``{"url": ..., "content_type": ...}``) anywhere in an output, up to a budget."""
    if budget[0] <= 0:
        return
    if isinstance(node, dict):
        url = node.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://", "data:")):
            kind = media_kind(url, str(node.get("content_type") or ""))
            if kind is not None:
                budget[0] -= 1
                parts.append(Part(kind, where or "file", url))
                return
        for key, value in node.items():
            _media(value, f"{where}.{key}" if where else str(key), parts, budget)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _media(value, f"{where}[{index}]", parts, budget)


def media_kind(url: str, content_type: str) -> str | None:
    """image, audio or video, by content type first, then by the URL's extension."""
    for kind in ("image", "audio", "video"):
        if content_type.startswith(kind + "/") or url.startswith(f"data:{kind}/"):
            return kind
    path = url.split("?", 1)[0].lower()
    for kind, suffixes in (("image", _IMAGE), ("audio", _AUDIO), ("video", _VIDEO)):
        if path.endswith(suffixes):
            return kind
    return None


def attempts(emulator: Emulator, request_id: str) -> list[JSON]:
    """The request's webhook attempts, each with whether its signature verifies against our JWKS."""
    jwks = emulator.webhooks.jwks()
    shown = []
    for attempt in emulator.webhooks.attempts(request_id):
        try:
            # Judged at the time it was sent: a stale_timestamp attempt still reads as stale.
            check(attempt.body.encode(), attempt.headers, jwks, now=attempt.at)
            verdict, verified = "verifies", True
        except WebhookVerificationError as exc:
            verdict, verified = str(exc), False
        shown.append(
            {
                "attempt": attempt.attempt,
                "copy_number": attempt.copy,
                "mode": attempt.mode.value,
                "at": clock_time(attempt.at),
                "status": attempt.status_code if attempt.status_code is not None else attempt.error or "no answer",
                "ok": attempt.status_code is not None and 200 <= attempt.status_code < 300,
                "latency": duration(attempt.latency),
                "outcome": attempt.outcome.value,
                "next": clock_time(attempt.next_attempt_at),
                "verified": verified,
                "verdict": verdict,
                "url": attempt.url,
            }
        )
    return shown


def journal(emulator: Emulator, record: RequestRecord, limit: int = 100) -> list[JSON]:
    """The calls the journal kept about this request, oldest first (bounded)."""
    entries = emulator.journal.entries(namespace=record.namespace, request_id=record.id, limit=limit)
    return [
        {
            "at": clock_time(e.time),
            "method": e.method,
            "path": e.path + (f"?{e.query}" if e.query else ""),
            "status": e.status,
            "duration": "" if e.duration_ms is None else f"{e.duration_ms:.1f} ms",
        }
        for e in entries
    ]


def detail(emulator: Emulator, record: RequestRecord) -> JSON:
    """Everything the request page shows, except the snippets (they need the page's address)."""
    failure = record.failure
    return {
        "row": row(emulator, record),
        "timeline": timeline(record),
        "logs": [
            {"at": clock_time(line.timestamp), "level": line.level, "message": line.message} for line in record.logs
        ],
        "input": json.dumps(record.input, indent=2, ensure_ascii=False),
        "done": record.done,
        "running": record.state is State.IN_PROGRESS,
        "text": streamed_text(emulator, record),
        "parts": output_parts(record.output) if record.output is not None else [],
        "output_json": None if record.output is None else json.dumps(record.output, indent=2, ensure_ascii=False),
        "error": None if failure is None else json.dumps(failure.body(), indent=2, ensure_ascii=False),
        "webhook_url": record.webhook_url,
        "attempts": attempts(emulator, record.id) if record.webhook_url else [],
        "journal": journal(emulator, record),
        "policy": emulator.webhooks.config(),
    }


def snippets(base: str, record: RequestRecord) -> dict[str, str]:
    """The same call as copy-paste curl, Python and JS, pointed at this emulator."""
    body = json.dumps(record.input, ensure_ascii=False)
    pretty = json.dumps(record.input, indent=4, ensure_ascii=False)
    key = f"{record.namespace}:secret"
    curl = (
        f"curl -s {shlex.quote(f'{base}/{record.endpoint}')} \\\n"
        f"  -H {shlex.quote(f'Authorization: Key {key}')} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  -d {shlex.quote(body)}"
    )
    python = (
        '# First: eval "$(any-llm-emulator env)"  (points fal-client at this emulator)\n'
        "import fal_client\n\n"
        f"result = fal_client.subscribe({json.dumps(record.endpoint)}, arguments={_python_literal(record.input)})\n"
        "print(result)"
    )
    js = (
        'import { fal } from "@fal-ai/client";\n\n'
        f"fal.config({{ credentials: {json.dumps(key)}, proxyUrl: {{ url: {json.dumps(base + '/api/fal/proxy')}, "
        'when: "always" } });\n'
        f"const result = await fal.subscribe({json.dumps(record.endpoint)}, {{ input: {pretty} }});\n"
        "console.log(result.data);"
    )
    return {"curl": curl, "python": python, "js": js}


def _python_literal(value: Any) -> str:
    """JSON written as Python (true/false/null become True/False/None)."""
    return (
        repr(value)
        if not isinstance(value, dict)
        else "{" + ", ".join(f"{k!r}: {_python_literal(v)}" for k, v in value.items()) + "}"
    )


# -- the playground's form --------------------------------------------------------------------


@dataclass(slots=True)
class FormField:
    """One input of the playground's form, from one property of the endpoint's Input schema."""

    name: str
    title: str
    kind: str  # text, textarea, number, integer, boolean, enum, json, file, files
    required: bool = False
    description: str = ""
    default: str = ""
    example: str = ""
    options: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None


def _type_of(schema: JSON) -> str:
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return str(kind)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _is_file(name: str, schema: JSON) -> bool:
    return name.endswith(("_url", "_file")) or schema.get("format") in ("uri", "binary")


def form_fields(schema: JSON | None) -> list[FormField]:
    """A field per property of the body schema: its type, enum, default, example and bounds."""
    if not schema:
        return []
    required = set(schema.get("required", ()))
    raw_example = schema.get("example")
    example: JSON = raw_example if isinstance(raw_example, dict) else {}
    fields = []
    for name, prop in schema.get("properties", {}).items():
        kind = _type_of(prop)
        items = prop.get("items", {}) if isinstance(prop.get("items"), dict) else {}
        if "enum" in prop:
            widget = "enum"
        elif kind == "string":
            widget = "file" if _is_file(name, prop) else ("textarea" if "prompt" in name else "text")
        elif kind in ("integer", "number", "boolean"):
            widget = kind
        elif kind == "array" and _type_of(items) == "string" and _is_file(name.rstrip("s"), items):
            widget = "files"
        else:
            widget = "json"
        examples = prop.get("examples")
        sample = prop.get("example", examples[0] if isinstance(examples, list) and examples else example.get(name))
        fields.append(
            FormField(
                name=name,
                title=str(prop.get("title") or name),
                kind=widget,
                required=name in required,
                description=" ".join(str(prop.get("description", "")).split()),
                default=_text(prop.get("default")),
                example=_text(sample),
                options=[_text(option) for option in prop.get("enum", ())],
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
            )
        )
    # Required fields first, as people fill them first; otherwise the schema's order.
    fields.sort(key=lambda f: not f.required)
    return fields
