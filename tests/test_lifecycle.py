"""Plans of runs: a pure function of the answer, the profile and the model, remembered."""

from __future__ import annotations

from emulator.core.lifecycle import PROFILES, _make_plan, make_plan
from emulator.core.outputs import Answer


def test_one_answer_object_gets_the_plan_of_each_profile_and_model() -> None:
    """The same answer object asked for again, under another profile or model, gets that one's plan."""
    answer = Answer("One two three four")
    instant, realistic = PROFILES["instant"], PROFILES["realistic"]
    cases = [
        (instant, "google/gemini-2.5-flash-lite"),
        (realistic, "google/gemini-2.5-flash-lite"),
        (realistic, "anthropic/claude-sonnet-4"),
        (realistic, None),
        (instant, "google/gemini-2.5-flash-lite"),
    ]
    for profile, model in cases:
        plan = make_plan(answer, profile, model)
        assert plan == _make_plan(answer, profile, model)
        assert make_plan(answer, profile, model) is plan
    assert make_plan(answer, realistic, None).duration != make_plan(answer, instant, None).duration


def test_an_equal_answer_gets_the_same_plan() -> None:
    """An answer equal to an earlier one, though another object, is planned as that one was."""
    first = make_plan(Answer("Equal text here"), PROFILES["realistic"], None)
    assert make_plan(Answer("Equal text here"), PROFILES["realistic"], None) is first
