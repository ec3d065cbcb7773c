"""Timing profiles and the plan of one run: pure functions of the input and the answer."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from emulator.core.catalog import billable_units, token_rate
from emulator.core.models import Plan
from emulator.core.outputs import Answer, split_tokens

__all__ = ["PROFILES", "Profile", "billable_units", "finished", "make_plan", "queue_wait"]


@dataclass(frozen=True, slots=True)
class Profile:
    """How long things take: queue wait before a free runner starts, first token, token rate."""

    name: str
    queue_wait: float
    first_token_after: float
    rate_scale: float  # 0 means every token is ready at once

    def tokens_per_second(self, model: str | None) -> float:
        return token_rate(model) * self.rate_scale


PROFILES = {
    "instant": Profile("instant", queue_wait=0.0, first_token_after=0.0, rate_scale=0.0),
    "realistic": Profile("realistic", queue_wait=0.25, first_token_after=0.4, rate_scale=1.0),
}


def queue_wait(answer: Answer, profile: Profile) -> float:
    """How long a request waits for a free runner to pick it up."""
    if answer.timing is not None and answer.timing.queue_wait is not None:
        return answer.timing.queue_wait
    return profile.queue_wait


# The log texts repeat across requests (same model, same length and duration): one shared string
# per distinct text, not one per record the store keeps.
@functools.lru_cache(maxsize=256)
def _running(model: str | None) -> str:
    return f"Running {model or 'default model'} through OpenRouter"


@functools.lru_cache(maxsize=1024)
def _generated(tokens: int, seconds: str) -> str:
    return f"Generated {tokens} tokens in {seconds}s"


# Plans by everything that decides them: a plan is frozen, a pure function of its answer, profile
# and model, and requests repeat their inputs; one plan (and its output object) serves them all.
_PLANS_KEPT = 1024
_plans: dict[tuple[Answer, Profile, object], Plan] = {}
# The plan each recent answer object got, by the answer's id (with the profile and model it was for).
_last_plans: dict[int, tuple[Answer, Profile, object, Plan]] = {}
# The finished form of each recent plan (no log lines: a completed record has them), by the plan's id.
_finished: dict[int, tuple[Plan, Plan]] = {}


def make_plan(answer: Answer, profile: Profile, model: str | None) -> Plan:
    """Lay out one run: when each token appears, which log lines are written when, how it ends.

    A failing answer with text streams that text and then fails (a runner lost mid-way); a
    failing answer without text fails before the first token (the input was refused).
    """
    if answer.planner is not None:  # an endpoint with a behaviour of its own lays out its run
        return answer.planner(answer, profile.name)
    # The same answer object (a generated text's is one per text) finds its plan without hashing it.
    last = _last_plans.get(id(answer))
    if (
        last is not None
        and last[0] is answer
        and last[1] is profile
        and last[2] == model
        and type(model) is type(last[2])
    ):
        return last[3]
    key = (answer, profile, model)
    try:
        plan = _plans.get(key)
    except TypeError:  # an answer holding a list or a dict (a failure's details, say): no memo
        return _make_plan(answer, profile, model)
    if plan is None:
        plan = _make_plan(answer, profile, model)
        if len(_plans) >= _PLANS_KEPT:
            del _plans[next(iter(_plans))]  # oldest first
        _plans[key] = plan
    if len(_last_plans) >= _PLANS_KEPT:
        _last_plans.clear()
    # The entry holds the answer itself, so its id cannot be another answer's while it is here.
    _last_plans[id(answer)] = (answer, profile, model, plan)
    return plan


def finished(plan: Plan) -> Plan:
    """The plan a completed record keeps: the same, without its log lines (they are on the record)."""
    if not plan.logs:
        return plan
    known = _finished.get(id(plan))
    if known is not None and known[0] is plan:
        return known[1]
    done = dataclasses.replace(plan, logs=())
    if len(_finished) >= _PLANS_KEPT:
        del _finished[next(iter(_finished))]
    # The entry holds the plan itself, so its id cannot be reused by another plan while it is here.
    _finished[id(plan)] = (plan, done)
    return done


def _make_plan(answer: Answer, profile: Profile, model: str | None) -> Plan:
    tokens = split_tokens(answer.text) if answer.text else ()
    if answer.failure is not None and answer.lost_after is not None:
        tokens = tokens[: int(len(tokens) * answer.lost_after)]  # what streamed before the runner was lost
    timing = answer.timing
    rate = profile.tokens_per_second(model)
    if timing is not None and timing.tokens_per_second is not None:
        rate = timing.tokens_per_second
    per_token = 0.0 if rate <= 0 else 1.0 / rate
    first = profile.first_token_after
    if timing is not None and timing.first_token_after is not None:
        first = timing.first_token_after
    duration = first + per_token * len(tokens) if tokens or answer.failure is None else first
    logs: list[tuple[float, str, str]] = [(0.0, "INFO", _running(model))]
    extra = answer.logs
    for index, (message, level) in enumerate(extra):
        logs.append((duration * (index + 1) / (len(extra) + 1), level, message))
    if tokens:
        logs.append((first, "INFO", "Receiving tokens"))
    if answer.failure is None:
        logs.append((duration, "INFO", _generated(len(tokens), f"{duration:.2f}")))
    else:
        logs.append((duration, "ERROR", answer.failure.message))
    logs.sort(key=lambda entry: entry[0])
    output = answer.output() if answer.failure is None else {}
    return Plan(
        tokens=tokens,
        first_token_after=first,
        seconds_per_token=per_token,
        output=output,
        failure=answer.failure,
        logs=tuple(logs),
    )
