"""What a request answers: fixtures first, deterministic generated text otherwise."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, overload

from emulator.core.faults import Rule
from emulator.core.fixture_files import Fixture, Outcome, Timing
from emulator.core.models import JSON, Failure, Plan
from emulator.core.usage import usage

__all__ = ["Answer", "Behaviour", "Dialect", "Outputs", "split_tokens"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request produces: text (or a failure), optional reasoning, logs, timing, faults."""

    text: str
    reasoning: str | None = None
    logs: tuple[tuple[str, str], ...] = ()
    failure: Failure | None = None
    fixture: str | None = None
    timing: Timing | None = None
    # Parsed at load; each request gets its own copies (``Rule.bound``).
    faults: tuple[Rule, ...] = ()
    # A behaviour other than any-llm's text: the whole output object, the units it bills, and
    # how its run is laid out in a timing profile (by the profile's name).
    data: JSON | None = None
    units: int | None = None
    planner: Callable[[Answer, str], Plan] | None = None
    # Token counts and cost, on the endpoints whose output reports them (openrouter/router).
    usage: JSON | None = None
    # A runner lost mid-run: the share of the run (0 to 1) done before ``failure``. None when the
    # failure comes before any work (a refused input, a fixture's error).
    lost_after: float | None = None

    def output(self, text: str | None = None, *, partial: bool = False) -> JSON:
        """The any-llm output object, optionally for a prefix of the text (or a behaviour's whole output)."""
        if self.data is not None:
            return self.data
        body: JSON = {"output": self.text if text is None else text, "partial": partial, "error": None}
        if self.reasoning is not None:
            body["reasoning"] = self.reasoning
        if self.usage is not None and text is None:
            body["usage"] = self.usage
        return body


# Endpoints whose output carries ``usage`` (the openrouter/router family; any-llm's does not).
USAGE_PREFIX = "openrouter/router"


def _text_or_none(value: Any) -> bool:
    return value is None or type(value) is str


def _with_usage(answer: Answer, endpoint: str, inputs: Mapping[str, Any]) -> Answer:
    if answer.failure is not None or not (endpoint == USAGE_PREFIX or endpoint.startswith(USAGE_PREFIX + "/")):
        return answer
    prompt = "\n".join(str(inputs[name]) for name in ("system_prompt", "prompt") if isinstance(inputs.get(name), str))
    completion = answer.text + (answer.reasoning or "")
    return dataclasses.replace(answer, usage=usage(inputs.get("model"), prompt, completion))


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


class SplitText(Sequence[str]):
    """A text's stream tokens, split when read (``split_tokens`` keeps recent splits).

    What a completed run keeps instead of its own tuple of token strings: a few hundred tokens
    are a few kB of string objects, the text they join back to a few hundred bytes, and a
    completed run's tokens are read only by a stream or page that asks for them.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __len__(self) -> int:
        return len(split_tokens(self.text))

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return split_tokens(self.text)[index]

    def __iter__(self) -> Iterator[str]:
        return iter(split_tokens(self.text))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SplitText):
            return self.text == other.text
        if isinstance(other, (tuple, list)):
            return split_tokens(self.text) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(split_tokens(self.text))

    def __repr__(self) -> str:
        return f"SplitText({self.text!r})"


_TEXTS_KEPT = 4096
# The longest generated answer, whatever max_tokens asks (a few seconds of text, not a book).
MAX_GENERATED_WORDS = 1000


def _seed_key(fields: list[Any]) -> str:
    return json.dumps(fields, sort_keys=True)


_TOKEN = re.compile(r"\s*\S+")

# A check of an input when its run starts (say, that its image URLs load): a failure ends the run.
InputCheck = Callable[[str, Mapping[str, Any]], Failure | None]


class Behaviour(Protocol):
    """What an endpoint other than any-llm answers: the queue asks without knowing which model it serves.

    ``outcome`` is the matching fixture's (None without one); ``files_url`` is the CDN base URL
    the caller reaches this emulator by, for the URLs of the files an answer makes.
    """

    def answer(
        self, endpoint: str, inputs: Mapping[str, Any], outcome: Outcome | None, files_url: str | None
    ) -> Answer: ...

    def prepare(self, endpoint: str, inputs: Mapping[str, Any], files_url: str | None) -> None:
        """Do the slow part of an answer ahead (rendering files), in a worker thread: ``answer`` finds it done."""


def _no_behaviour(endpoint: str) -> Behaviour | None:
    return None


class Dialect(Protocol):
    """An endpoint whose input speaks another API (fal's OpenAI-compatible ids) over the generated text.

    It reads the input as the text generator's inputs (``prompt``, ``system_prompt``, ``model``),
    asks ``text`` for their answer (fixtures first, as on the native endpoints), and writes that
    answer as its own output: ``Answer.data`` is the whole output, ``Answer.text`` what streams.
    """

    def answer(self, endpoint: str, inputs: Mapping[str, Any], text: Callable[[Mapping[str, Any]], Answer]) -> Answer:
        """The answer for an input: a refused input is a 422 failure, as a schema error would be."""


def _no_dialect(endpoint: str) -> Dialect | None:
    return None


@dataclass
class Outputs:
    """Chooses the answer for an input: the first matching fixture, else generated text."""

    fixtures: Sequence[Fixture] = field(default_factory=list)
    seed: int | None = None
    default_length: tuple[int, int] = (40, 120)
    checks: list[InputCheck] = field(default_factory=list)
    # The behaviour of an endpoint that is not any-llm's (None: any-llm's generated text).
    behaviour_for: Callable[[str], Behaviour | None] = _no_behaviour
    # The dialect of an endpoint whose input is another API's (None: the input is fal's own).
    dialect_for: Callable[[str], Dialect | None] = _no_dialect

    def __post_init__(self) -> None:
        self._faker_instance: Any = None
        self._calls: dict[tuple[str, str], int] = {}
        # Generated texts by everything that decides them: Faker is slow and tests repeat prompts.
        self._texts: dict[tuple[Any, ...], str] = {}
        # The fixture each recent input matched (a pure function of four of its fields and the
        # fixtures), and the list it was found in: a reload starts it afresh.
        self._found: dict[tuple[Any, ...], Fixture | None] = {}
        self._found_in: object = None
        self._generated: dict[tuple[str, str | None], Answer] = {}
        self._found_count = 0

    @property
    def _faker(self) -> Any:
        # Built on the first generated text: importing Faker takes ~80 ms (it scans its locales),
        # which serving need not pay before the first request that wants a text.
        if self._faker_instance is None:
            from faker import Faker

            self._faker_instance = Faker("en_US")
        return self._faker_instance

    def find(self, endpoint: str, inputs: Mapping[str, Any]) -> Fixture | None:
        """The first fixture that matches the input, if any."""
        get = inputs.get
        model, prompt, system_prompt = get("model"), get("prompt"), get("system_prompt")
        key = (endpoint, model, prompt, system_prompt)
        fixtures = self.fixtures
        if self._found_in is not fixtures or self._found_count != len(fixtures):  # fixtures reloaded
            self._found.clear()
            self._found_in, self._found_count = fixtures, len(fixtures)
        # A match reads only these fields, and only text (or None) as text: others are not memoised.
        if _text_or_none(model) and _text_or_none(prompt) and _text_or_none(system_prompt):
            if key in self._found:
                return self._found[key]
            found = self._first_match(endpoint, inputs)
            if len(self._found) >= _TEXTS_KEPT:
                del self._found[next(iter(self._found))]  # oldest first
            self._found[key] = found
            return found
        return self._first_match(endpoint, inputs)

    def _first_match(self, endpoint: str, inputs: Mapping[str, Any]) -> Fixture | None:
        for fixture in self.fixtures:
            if fixture.matches(endpoint, inputs):
                return fixture
        return None

    def answer(
        self, endpoint: str, inputs: Mapping[str, Any], namespace: str = "", *, files_url: str | None = None
    ) -> Answer:
        """The answer for an input; a fixture with outcomes gives the next one for this namespace."""
        dialect = self.dialect_for(endpoint)
        if dialect is not None:
            return dialect.answer(
                endpoint, inputs, functools.partial(self._choose, endpoint, namespace=namespace, files_url=files_url)
            )
        return _with_usage(self._choose(endpoint, inputs, namespace=namespace, files_url=files_url), endpoint, inputs)

    def _choose(self, endpoint: str, inputs: Mapping[str, Any], *, namespace: str, files_url: str | None) -> Answer:
        # Input checks first, so a refused input does not use up one of a fixture's outcomes.
        for check in self.checks:
            failure = check(endpoint, inputs)
            if failure is not None:
                return Answer("", failure=failure)
        fixture = self.find(endpoint, inputs)
        behaviour = self.behaviour_for(endpoint)
        if behaviour is not None:
            if fixture is None:
                return behaviour.answer(endpoint, inputs, None, files_url)
            outcome = self._next_outcome(namespace, fixture)
            found = behaviour.answer(endpoint, inputs, outcome, files_url)
            return replace(found, logs=fixture.logs, fixture=fixture.name, timing=fixture.timing, faults=outcome.faults)
        wants_reasoning = bool(inputs.get("reasoning"))
        if fixture is None:
            text = self._generate(endpoint, inputs)
            reasoning = self._generate(endpoint, inputs, words=24, salt="reasoning") if wants_reasoning else None
            # Answers are frozen: one per generated text (memoised too) serves every request that has it.
            key = (text, reasoning)
            answer = self._generated.get(key)
            if answer is None:
                answer = Answer(text, reasoning)
                if len(self._generated) >= _TEXTS_KEPT:
                    del self._generated[next(iter(self._generated))]  # oldest first
                self._generated[key] = answer
            return answer
        outcome = self._next_outcome(namespace, fixture)
        reasoning = None
        if wants_reasoning and outcome.reasoning is not None:
            reasoning = _substitute(outcome.reasoning, endpoint, inputs)
        elif wants_reasoning:
            reasoning = self._generate(endpoint, inputs, words=24, salt="reasoning")
        if isinstance(outcome.output, dict):  # a JSON output given whole
            text = json.dumps(outcome.output)
        elif outcome.output is not None:
            text = _substitute(outcome.output, endpoint, inputs)
        elif outcome.error is not None:
            text = ""
        else:
            text = self._generate(endpoint, inputs)
        return Answer(text, reasoning, fixture.logs, outcome.error, fixture.name, fixture.timing, outcome.faults)

    async def prepare(self, endpoint: str, inputs: Mapping[str, Any], files_url: str | None) -> None:
        """Let an endpoint's behaviour do its slow work off the event loop before the queue asks for the answer."""
        behaviour = self.behaviour_for(endpoint)
        if behaviour is not None:
            await asyncio.to_thread(behaviour.prepare, endpoint, inputs, files_url)

    def _next_outcome(self, namespace: str, fixture: Fixture) -> Outcome:
        key = (namespace, fixture.name)
        calls = self._calls.get(key, 0)
        self._calls[key] = calls + 1
        return fixture.outcomes[min(calls, len(fixture.outcomes) - 1)]

    def reset_counts(self, namespace: str | None = None) -> None:
        """Start every fixture's outcome sequence again (for one namespace, or all)."""
        if namespace is None:
            self._calls.clear()
        else:
            for key in [k for k in self._calls if k[0] == namespace]:
                del self._calls[key]

    def _generate(self, endpoint: str, inputs: Mapping[str, Any], *, words: int | None = None, salt: str = "") -> str:
        get = inputs.get
        values = (self.seed, salt, endpoint, get("model"), get("prompt"), get("system_prompt"), get("max_tokens"))
        # The text is a pure function of these (Faker is reseeded for every text). Types are part
        # of the memo's key because 1, 1.0 and True are one key in a dict but differ in the seed.
        memo = (values, tuple(map(type, values)), words, self.default_length)
        try:
            text = self._texts.get(memo)
        except TypeError:  # an unhashable field (a list, say): no memo
            return self._write(_seed_key(list(values[:-1])), inputs, words)
        if text is None:
            text = self._write(_seed_key(list(values[:-1])), inputs, words)
            if len(self._texts) >= _TEXTS_KEPT:
                del self._texts[next(iter(self._texts))]  # oldest first
            self._texts[memo] = text
        return text

    def _write(self, key: str, inputs: Mapping[str, Any], words: int | None) -> str:
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        faker = self._faker
        faker.seed_instance(seed)
        if words is None:
            max_tokens = inputs.get("max_tokens")
            if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
                # One generated word is one streamed token: the answer uses its whole budget.
                words = min(max_tokens, MAX_GENERATED_WORDS)
            else:
                low, high = self.default_length
                words = low + seed % (high - low + 1)
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
