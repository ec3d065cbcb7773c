"""What a request answers: fixtures first, deterministic generated text otherwise."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from faker import Faker

from emulator.faults import FaultError, Rule
from emulator.models import JSON, Failure

FIXTURE_SUFFIXES = (".yaml", ".yml", ".json")

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
                    "output": {"type": "string"},
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
                                "output": {"type": "string"},
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

    output: str | None = None
    reasoning: str | None = None
    error: Failure | None = None
    faults: tuple[JSON, ...] = ()


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


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request produces: text (or a failure), optional reasoning, logs, timing, faults."""

    text: str
    reasoning: str | None = None
    logs: tuple[tuple[str, str], ...] = ()
    failure: Failure | None = None
    fixture: str | None = None
    timing: Timing | None = None
    faults: tuple[JSON, ...] = ()

    def output(self, text: str | None = None, *, partial: bool = False) -> JSON:
        """The any-llm output object, optionally for a prefix of the text."""
        body: JSON = {"output": self.text if text is None else text, "partial": partial, "error": None}
        if self.reasoning is not None:
            body["reasoning"] = self.reasoning
        return body


def _failure(spec: Mapping[str, Any] | None, name: str) -> Failure | None:
    if spec is None:
        return None
    return Failure(spec["status"], spec.get("detail", f"Fixture {name} failed"), spec.get("error_type"))


_RULE_KEYS = ("actions", "times", "probability")


def _fault_rules(raw: list[JSON], where: str) -> tuple[JSON, ...]:
    """Normalise fault rules to ``{"fault": {...}, "actions", "times", "probability"}`` and check them
    now, so a bad one stops the server at start rather than mid-test."""
    rules = []
    for index, entry in enumerate(raw):
        if "fault" in entry:
            rule = dict(entry)
        else:
            rule = {k: v for k, v in entry.items() if k in _RULE_KEYS}
            rule["fault"] = {k: v for k, v in entry.items() if k not in _RULE_KEYS}
        try:
            Rule.parse(rule)
        except FaultError as exc:
            raise FixtureError(f"{where}: faults/{index}: {exc}") from exc
        rules.append(rule)
    return tuple(rules)


def _load_file(path: Path) -> list[Fixture]:
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise FixtureError(f"{path}: cannot be read: {exc}") from exc
    validator = jsonschema.Draft7Validator(FIXTURE_FILE_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
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
        elif base.is_file():
            files = [base]
        else:
            raise FixtureError(f"{base}: no such fixture file or folder")
        for file in files:
            fixtures.extend(_load_file(file))
    return fixtures


_FIELD = re.compile(r"\{(prompt|system_prompt|model|endpoint)\}")


def _substitute(template: str, endpoint: str, inputs: Mapping[str, Any]) -> str:
    def field_value(match: re.Match[str]) -> str:
        name = match.group(1)
        value = endpoint if name == "endpoint" else inputs.get(name)
        return "" if value is None else str(value)

    return _FIELD.sub(field_value, template)


# Every run splits its text; generated texts repeat with their prompts, so keep recent splits.
@functools.lru_cache(maxsize=1024)
def split_tokens(text: str) -> tuple[str, ...]:
    """Split text into stream tokens (a word and the space before it) that join back to it."""
    tokens = _TOKEN.findall(text)
    tail = text[sum(map(len, tokens)) :]
    if tail:
        if tokens:
            tokens[-1] += tail
        else:
            tokens = [tail]
    return tuple(tokens)


_TEXTS_KEPT = 4096


def _seed_key(fields: list[Any]) -> str:
    return json.dumps(fields, sort_keys=True)


_TOKEN = re.compile(r"\s*\S+")

# A check of an input when its run starts (say, that its image URLs load): a failure ends the run.
InputCheck = Callable[[str, Mapping[str, Any]], Failure | None]


@dataclass
class Outputs:
    """Chooses the answer for an input: the first matching fixture, else generated text."""

    fixtures: list[Fixture] = field(default_factory=list)
    seed: int | None = None
    default_length: tuple[int, int] = (40, 120)
    checks: list[InputCheck] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._faker = Faker("en_US")
        self._calls: dict[tuple[str, str], int] = {}
        # Generated texts by everything that decides them: Faker is slow and tests repeat prompts.
        self._texts: dict[tuple[Any, ...], str] = {}

    def find(self, endpoint: str, inputs: Mapping[str, Any]) -> Fixture | None:
        for fixture in self.fixtures:
            if fixture.matches(endpoint, inputs):
                return fixture
        return None

    def answer(self, endpoint: str, inputs: Mapping[str, Any], namespace: str = "") -> Answer:
        """The answer for an input; a fixture with outcomes gives the next one for this namespace."""
        # Input checks first, so a refused input does not use up one of a fixture's outcomes.
        for check in self.checks:
            failure = check(endpoint, inputs)
            if failure is not None:
                return Answer("", failure=failure)
        fixture = self.find(endpoint, inputs)
        wants_reasoning = bool(inputs.get("reasoning"))
        if fixture is None:
            return Answer(
                text=self._generate(endpoint, inputs),
                reasoning=self._generate(endpoint, inputs, words=24, salt="reasoning") if wants_reasoning else None,
            )
        key = (namespace, fixture.name)
        calls = self._calls.get(key, 0)
        self._calls[key] = calls + 1
        outcome = fixture.outcomes[min(calls, len(fixture.outcomes) - 1)]
        reasoning = None
        if wants_reasoning and outcome.reasoning is not None:
            reasoning = _substitute(outcome.reasoning, endpoint, inputs)
        elif wants_reasoning:
            reasoning = self._generate(endpoint, inputs, words=24, salt="reasoning")
        if outcome.output is not None:
            text = _substitute(outcome.output, endpoint, inputs)
        elif outcome.error is not None:
            text = ""
        else:
            text = self._generate(endpoint, inputs)
        return Answer(text, reasoning, fixture.logs, outcome.error, fixture.name, fixture.timing, outcome.faults)

    def reset_counts(self, namespace: str | None = None) -> None:
        """Start every fixture's outcome sequence again (for one namespace, or all)."""
        if namespace is None:
            self._calls.clear()
        else:
            for key in [k for k in self._calls if k[0] == namespace]:
                del self._calls[key]

    def _generate(self, endpoint: str, inputs: Mapping[str, Any], *, words: int | None = None, salt: str = "") -> str:
        fields = [self.seed, salt, endpoint, inputs.get("model"), inputs.get("prompt"), inputs.get("system_prompt")]
        # The text is a pure function of these (Faker is reseeded for every text). Types are part
        # of the memo's key because 1, 1.0 and True are one key in a dict but differ in the seed.
        max_tokens = inputs.get("max_tokens")
        memo: tuple[Any, ...] = (*((type(v), v) for v in [*fields, max_tokens]), words, self.default_length)
        try:
            text = self._texts.get(memo)
        except TypeError:  # an unhashable field (a list, say): no memo
            return self._write(_seed_key(fields), inputs, words)
        if text is None:
            text = self._write(_seed_key(fields), inputs, words)
            if len(self._texts) >= _TEXTS_KEPT:
                del self._texts[next(iter(self._texts))]  # oldest first
            self._texts[memo] = text
        return text

    def _write(self, key: str, inputs: Mapping[str, Any], words: int | None) -> str:
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        faker = self._faker
        faker.seed_instance(seed)
        if words is None:
            low, high = self.default_length
            words = low + seed % (high - low + 1)
            max_tokens = inputs.get("max_tokens")
            if isinstance(max_tokens, int) and max_tokens > 0:
                words = min(words, max_tokens)
        topic = _topic(inputs.get("prompt"))
        order = faker.random.sample(_SENTENCES, len(_SENTENCES))
        parts: list[str] = []
        count = 0
        while count < words:
            template = order[len(parts) % len(order)]
            sentence = template.format(
                topic=topic,
                bs=faker.bs(),
                bs2=faker.bs(),
                catch=faker.catch_phrase().lower(),
                job=faker.job().split(",")[0].lower(),
            )
            sentence = sentence[0].upper() + sentence[1:]
            sentence_words = sentence.split()
            if count + len(sentence_words) > words:
                sentence_words = sentence_words[: words - count]
                sentence = " ".join(sentence_words).rstrip(".,:;") + "."
            parts.append(sentence)
            count += len(sentence_words)
        return " ".join(parts)


# Sentence shapes for generated answers: Faker fills the business-speak, the prompt gives
# the topic, so the text reads as fluent (if bland) English and tracks the question.
_SENTENCES = (
    "When it comes to {topic}, the most useful first step is to {bs}.",
    "A careful answer depends on context, but most people would {bs}.",
    "In practice, a {catch} helps teams {bs}.",
    "Ask any {job} and they will tell you to {bs} before anything else.",
    "It is worth remembering that {topic} rarely has a single right answer.",
    "One approach is to {bs} and then {bs2}.",
    "The trade-off is usually between speed and care: a {catch} versus a slower, deliberate plan.",
    "If you want the short version: {bs}, measure the result, and adjust.",
    "Thinking about {topic} this way makes it easier to {bs}.",
    "Over time, the goal is to {bs2} without losing sight of {topic}.",
)


_LEADING_FILLER = frozenset(
    [
        "what",
        "how",
        "why",
        "who",
        "when",
        "where",
        "which",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "i",
        "you",
        "we",
        "me",
        "my",
        "your",
        "our",
        "the",
        "a",
        "an",
        "to",
        "of",
        "please",
        "tell",
        "explain",
        "describe",
        "give",
    ]
)


def _topic(prompt: Any) -> str:
    """A few words of the prompt's first question, without the leading question words."""
    if not isinstance(prompt, str):
        return "this question"
    words = [w.lower() for w in re.findall(r"[\w'-]+", re.split(r"[?.!\n]", prompt)[0])]
    while words and words[0] in _LEADING_FILLER:
        words.pop(0)
    return " ".join(words[:6]) or "this question"
