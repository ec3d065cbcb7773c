"""Fixtures and generated text: matching, substitution, validation, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.config import BUILTIN_FIXTURES
from emulator.core.fixture_files import FixtureError, load_fixtures
from emulator.core.outputs import MAX_GENERATED_WORDS, Outputs, split_tokens

FIXTURE_FILE = """
fixtures:
  - name: exact
    match: {prompt: "Hello"}
    output: "exact for {model}"
  - name: contains-with-system
    match: {prompt: {contains: "weather"}, system_prompt: {contains: "pirate"}}
    output: "Arr, {prompt}"
  - name: regex-on-vision
    match: {endpoint: fal-ai/any-llm/vision, prompt: {regex: "^Describe"}}
    output: "An image."
  - name: by-model
    match: {model: openai/gpt-4o}
    output: "premium"
  - name: broken
    match: {prompt: {contains: "[fail]"}}
    error: {status: 503, detail: Runner disconnected, error_type: runner_disconnected}
"""


@pytest.fixture
def outputs(tmp_path: Path) -> Outputs:
    (tmp_path / "a.yaml").write_text(FIXTURE_FILE)
    return Outputs(load_fixtures([tmp_path]), seed=1)


@pytest.mark.parametrize(
    ("endpoint", "inputs", "fixture"),
    [
        ("fal-ai/any-llm", {"prompt": "Hello", "model": "m"}, "exact"),
        ("fal-ai/any-llm", {"prompt": "Hello!"}, None),
        (
            "fal-ai/any-llm",
            {"prompt": "the weather today", "system_prompt": "talk like a pirate"},
            "contains-with-system",
        ),
        ("fal-ai/any-llm", {"prompt": "the weather today"}, None),
        ("fal-ai/any-llm/vision", {"prompt": "Describe it"}, "regex-on-vision"),
        ("fal-ai/any-llm", {"prompt": "Describe it"}, None),
        ("fal-ai/any-llm", {"prompt": "anything", "model": "openai/gpt-4o"}, "by-model"),
        ("fal-ai/any-llm", {"prompt": "x [fail] y"}, "broken"),
    ],
)
def test_fixture_matching(outputs: Outputs, endpoint: str, inputs: dict[str, str], fixture: str | None) -> None:
    """The first fixture whose every match key holds answers; otherwise none does."""
    assert outputs.answer(endpoint, inputs).fixture == fixture


def test_substitution_and_errors(outputs: Outputs) -> None:
    """Input fields are substituted into the output; an error fixture yields a failure."""
    assert outputs.answer("fal-ai/any-llm", {"prompt": "Hello", "model": "x/y"}).text == "exact for x/y"
    failure = outputs.answer("fal-ai/any-llm", {"prompt": "[fail]"}).failure
    assert failure is not None
    assert (failure.status_code, failure.detail, failure.error_type) == (
        503,
        "Runner disconnected",
        "runner_disconnected",
    )


def test_builtin_fixtures_answer_the_seed_example() -> None:
    """The seed document's example prompt ships as a fixture."""
    outputs = Outputs(load_fixtures([BUILTIN_FIXTURES]))
    answer = outputs.answer("fal-ai/any-llm", {"prompt": "What is the meaning of life?"})
    assert answer.fixture == "meaning-of-life"
    assert answer.text.startswith("The meaning of life is subjective")
    assert answer.reasoning is None
    assert outputs.answer("fal-ai/any-llm", {"prompt": "What is the meaning of life?", "reasoning": True}).reasoning


def test_generated_text_is_deterministic_and_follows_max_tokens() -> None:
    """Unmatched prompts get the same text each time; max_tokens bounds its length."""
    first = Outputs(seed=5).answer("fal-ai/any-llm", {"prompt": "How do tides work?"}).text
    again = Outputs(seed=5).answer("fal-ai/any-llm", {"prompt": "How do tides work?"}).text
    other = Outputs(seed=5).answer("fal-ai/any-llm", {"prompt": "How do volcanoes work?"}).text
    assert first == again
    assert first != other
    assert "tides work" in first
    short = Outputs(seed=5).answer("fal-ai/any-llm", {"prompt": "How do tides work?", "max_tokens": 7}).text
    assert len(short.split()) == 7


@pytest.mark.parametrize("text", ["", "one", "  lead and trail  ", "a\nb\n\nc", "Perspective.\n"])
def test_tokens_join_back_to_the_text(text: str) -> None:
    """Splitting into stream tokens loses nothing."""
    assert "".join(split_tokens(text)) == text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("fixtures: [{name: x, output: 1}]", "fixtures/0/output"),
        ("fixtures: [{output: hi}]", "'name' is a required property"),
        ("fixtures: [{name: x, match: {prompt: {regex: '('}}, output: y}]", "invalid regex"),
        ("fixtures: [{name: x, output: a, error: {status: 500}}]", "fixtures/0"),
        ("fixtures: [{name: x, error: {status: 200}}]", "fixtures/0/error/status"),
        ("not: [valid", "cannot be read"),
        ("[]", "(top level)"),
    ],
)
def test_a_bad_fixture_file_names_the_file_and_the_problem(tmp_path: Path, content: str, message: str) -> None:
    """Validation at load time reports the path and what is wrong."""
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(FixtureError) as caught:
        load_fixtures([path])
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_missing_fixture_path_is_an_error(tmp_path: Path) -> None:
    """A fixture path that does not exist is reported, not ignored."""
    with pytest.raises(FixtureError, match="no such fixture"):
        load_fixtures([tmp_path / "nope"])


def test_max_tokens_sets_the_length_of_generated_text_up_to_the_maximum() -> None:
    """max_tokens N gives N words (one token each), up to MAX_GENERATED_WORDS; without it 40 to 120."""
    outputs = Outputs(seed=5)

    def words(**extra: object) -> int:
        return len(outputs.answer("fal-ai/any-llm", {"prompt": "How do tides work?", **extra}).text.split())

    assert words(max_tokens=500) == 500
    assert words(max_tokens=4000) == MAX_GENERATED_WORDS
    assert 40 <= words() <= 120


def test_a_repeated_input_matches_the_fixtures_loaded_now(outputs: Outputs, tmp_path: Path) -> None:
    """The fixture an input matched is remembered only as long as the fixtures stay the same."""
    inputs = {"prompt": "Hello", "model": "m"}
    assert outputs.answer("fal-ai/any-llm", inputs).fixture == "exact"
    assert outputs.answer("fal-ai/any-llm", inputs).fixture == "exact"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c.yaml").write_text('fixtures: [{name: other, match: {prompt: "Hello"}, output: "other"}]')
    outputs.fixtures = load_fixtures([tmp_path / "b"])  # a reload
    assert outputs.answer("fal-ai/any-llm", inputs).fixture == "other"
    outputs.fixtures.clear()  # changed in place
    assert outputs.answer("fal-ai/any-llm", inputs).fixture is None


def test_an_input_of_another_type_than_text_is_matched_as_before(outputs: Outputs) -> None:
    """A prompt that is no string never matches a text fixture, and is not mixed up with one that is."""
    assert outputs.answer("fal-ai/any-llm", {"prompt": "Hello"}).fixture == "exact"
    assert outputs.find("fal-ai/any-llm", {"prompt": ["Hello"]}) is None
    by_model = outputs.find("fal-ai/any-llm", {"prompt": ["Hello"], "model": "openai/gpt-4o"})
    assert by_model is not None
    assert by_model.name == "by-model"
