"""Fixture files: their format, its validation, and matching an input to a fixture."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from emulator.core.faults import FaultError, Rule
from emulator.core.models import JSON, Failure
from emulator.core.spec import load_yaml

FIXTURE_SUFFIXES = (".yaml", ".yml", ".json")
log = logging.getLogger("emulator.fixtures")
_BUNDLED = (Path(__file__).resolve().parent.parent / "fixtures").resolve()

_TEXT_MATCH = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "equals": {"type": "string"},
                "contains": {"type": "string"},
                "regex": {"type": "string"},
            },
        },
    ]
}

_ERROR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["status"],
    "properties": {
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {},
        "error_type": {"type": "string"},
    },
}

# The shape of a fixture file. Fixture files are the emulator's own format, not the
# emulated API, so their schema lives here rather than in openapi.yaml.
FIXTURE_FILE_SCHEMA: JSON = {
    "type": "object",
    "additionalProperties": False,
    "required": ["fixtures"],
    "properties": {
        "fixtures": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "match": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "endpoint": {"type": "string"},
                            "model": {"type": "string"},
                            "prompt": _TEXT_MATCH,
                            "system_prompt": _TEXT_MATCH,
                        },
                    },
                    "output": {"type": ["string", "object"]},
                    "reasoning": {"type": "string"},
                    "logs": {
                        "type": "array",
                        "items": {
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["message"],
                                    "properties": {
                                        "message": {"type": "string"},
                                        "level": {"enum": ["STDERR", "STDOUT", "ERROR", "INFO", "WARN", "DEBUG"]},
                                    },
                                },
                            ]
                        },
                    },
                    "error": _ERROR,
                    "timing": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "queue_wait": {"type": "number", "minimum": 0},
                            "first_token_after": {"type": "number", "minimum": 0},
                            "tokens_per_second": {"type": "number", "exclusiveMinimum": 0},
                        },
                    },
                    "faults": {"type": "array", "items": {"type": "object"}},
                    "outcomes": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "output": {"type": ["string", "object"]},
                                "reasoning": {"type": "string"},
                                "error": _ERROR,
                                "faults": {"type": "array", "items": {"type": "object"}},
                            },
                            "not": {"required": ["output", "error"]},
                        },
                    },
                },
                "allOf": [
                    {"not": {"required": ["output", "error"]}},
                    {"not": {"anyOf": [{"required": ["outcomes", "output"]}, {"required": ["outcomes", "error"]}]}},
                ],
            },
        }
    },
}


class FixtureError(ValueError):
    """A fixture file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class TextMatch:
    """Matches a prompt exactly, by substring or by regular expression."""

    kind: str
    value: str
    pattern: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, spec: str | Mapping[str, str], where: str) -> TextMatch:
        if isinstance(spec, str):
            return cls("equals", spec)
        kind, value = next(iter(spec.items()))
        if kind == "regex":
            try:
                return cls(kind, value, re.compile(value))
            except re.error as exc:
                raise FixtureError(f"{where}: invalid regex {value!r}: {exc}") from exc
        return cls(kind, value)

    def matches(self, text: str | None) -> bool:
        if text is None:
            return False
        if self.kind == "equals":
            return text == self.value
        if self.kind == "contains":
            return self.value in text
        assert self.pattern is not None
        return self.pattern.search(text) is not None


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-fixture timing that overrides the profile's."""

    queue_wait: float | None = None
    first_token_after: float | None = None
    tokens_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One answer a fixture gives: text or an error, and the fault rules it attaches."""

    # Text for any-llm; any JSON object as the whole output of another endpoint.
    output: str | JSON | None = None
    reasoning: str | None = None
    error: Failure | None = None
    faults: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class Fixture:
    """Canned answers (one, or a sequence for repeated calls) and the inputs they apply to."""

    name: str
    source: str
    endpoint: str | None = None
    model: str | None = None
    prompt: TextMatch | None = None
    system_prompt: TextMatch | None = None
    outcomes: tuple[Outcome, ...] = (Outcome(),)
    logs: tuple[tuple[str, str], ...] = ()
    timing: Timing | None = None

    def matches(self, endpoint: str, inputs: Mapping[str, Any]) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        if self.model is not None and self.model != inputs.get("model"):
            return False
        if self.prompt is not None and not self.prompt.matches(inputs.get("prompt")):
            return False
        return self.system_prompt is None or self.system_prompt.matches(inputs.get("system_prompt"))


def _failure(spec: Mapping[str, Any] | None, name: str) -> Failure | None:
    if spec is None:
        return None
    return Failure(spec["status"], spec.get("detail", f"Fixture {name} failed"), spec.get("error_type"))


_RULE_KEYS = ("actions", "times", "probability")


def _fault_rules(raw: list[JSON], where: str) -> tuple[Rule, ...]:
    """Parse fault rules once, at load (``{"fault": {...}, "actions", ...}`` or the fault's fields
    inline), so a bad one stops the server at start rather than mid-test."""
    rules = []
    for index, entry in enumerate(raw):
        if "fault" in entry:
            rule = dict(entry)
        else:
            rule = {k: v for k, v in entry.items() if k in _RULE_KEYS}
            rule["fault"] = {k: v for k, v in entry.items() if k not in _RULE_KEYS}
        try:
            rules.append(Rule.parse(rule))
        except FaultError as exc:
            raise FixtureError(f"{where}: faults/{index}: {exc}") from exc
    return tuple(rules)


@functools.cache
def _fixture_file_check() -> Callable[[Any], bool]:
    # Compiled (jsonschema-rs): jsonschema itself (~50 ms to import) is needed only to word the
    # error of a file that fails.
    import jsonschema_rs

    return jsonschema_rs.Draft7Validator(FIXTURE_FILE_SCHEMA, validate_formats=False).is_valid


def _fixture_file_is_valid(data: Any) -> bool:
    return _fixture_file_check()(data)


def _best_error(data: Any) -> Any:
    import jsonschema

    return jsonschema.exceptions.best_match(jsonschema.Draft7Validator(FIXTURE_FILE_SCHEMA).iter_errors(data))


def _load_file(path: Path) -> list[Fixture]:
    import yaml  # with the first fixture file read

    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else load_yaml(raw)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise FixtureError(f"{path}: cannot be read: {exc}") from exc
    # The bundled files are the package's own (a test checks them against the schema): trusting
    # them keeps the first schema compile, about 5 MB of native memory, out of an idle server.
    trusted = path.resolve().is_relative_to(_BUNDLED)
    error = None if trusted or _fixture_file_is_valid(data) else _best_error(data)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise FixtureError(f"{path}: at {where}: {error.message}")
    fixtures = []
    for index, item in enumerate(data["fixtures"]):
        name = item["name"]
        where = f"{path}: fixtures/{index} ({name})"
        match = item.get("match", {})
        shared_faults = _fault_rules(item.get("faults", []), where)
        if "outcomes" in item:
            outcomes = tuple(
                Outcome(
                    output=o.get("output"),
                    reasoning=o.get("reasoning", item.get("reasoning")),
                    error=_failure(o.get("error"), name),
                    faults=shared_faults + _fault_rules(o.get("faults", []), f"{where}: outcomes/{n}"),
                )
                for n, o in enumerate(item["outcomes"])
            )
        else:
            outcomes = (
                Outcome(item.get("output"), item.get("reasoning"), _failure(item.get("error"), name), shared_faults),
            )
        logs = tuple(
            (line, "INFO") if isinstance(line, str) else (line["message"], line.get("level", "INFO"))
            for line in item.get("logs", ())
        )
        timing = Timing(**item["timing"]) if "timing" in item else None
        fixtures.append(
            Fixture(
                name=name,
                source=str(path),
                endpoint=match.get("endpoint"),
                model=match.get("model"),
                prompt=TextMatch.parse(match["prompt"], where) if "prompt" in match else None,
                system_prompt=(TextMatch.parse(match["system_prompt"], where) if "system_prompt" in match else None),
                outcomes=outcomes,
                logs=logs,
                timing=timing,
            )
        )
    return fixtures


def load_fixtures(paths: Iterable[Path]) -> list[Fixture]:
    """Read fixture files and folders (files in name order); raise FixtureError on a bad one."""
    fixtures: list[Fixture] = []
    for base in paths:
        if base.is_dir():
            files = sorted(p for p in base.iterdir() if p.suffix in FIXTURE_SUFFIXES and p.is_file())
            if not files:
                log.warning("fixture folder %s holds no fixture files (%s)", base, ", ".join(FIXTURE_SUFFIXES))
        elif base.is_file():
            files = [base]
        else:
            raise FixtureError(f"{base}: no such fixture file or folder")
        for file in files:
            fixtures.extend(_load_file(file))
    return fixtures


class Fixtures(Sequence[Fixture]):
    """Fixtures in match order: the files given are read now, the bundled ones that end the list on first use.

    The bundled files are the package's own (a test checks them): a server that starts need not
    parse them, nor import PyYAML, before a request is matched against them.
    """

    def __init__(self, paths: Iterable[Path]) -> None:
        paths = list(paths)
        split = len(paths)
        while split and paths[split - 1].resolve().is_relative_to(_BUNDLED):
            split -= 1
        self._fixtures = load_fixtures(paths[:split])
        self._deferred = paths[split:]

    def _all(self) -> list[Fixture]:
        if self._deferred:
            self._fixtures = self._fixtures + load_fixtures(self._deferred)
            self._deferred = []
        return self._fixtures

    def __iter__(self) -> Iterator[Fixture]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    @overload
    def __getitem__(self, index: int) -> Fixture: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Fixture]: ...

    def __getitem__(self, index: int | slice) -> Fixture | Sequence[Fixture]:
        return self._all()[index]
