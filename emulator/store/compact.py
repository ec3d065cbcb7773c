"""A completed record's compact form in the memory store: the same values in fewer objects.

A completed record is read (status, result, streams, the dashboard) but never changed, and a
store keeps up to 100,000 of them. Outputs repeat (the same prompt and seed give the same
text, a fixture gives the same object every time), and so do the finished plans built on them:
a completed record shares an equal output, and its plan, with the records before it instead of
keeping its own copies. Nothing a record answers changes: an output is shared only with one
equal to it in every value, type and key order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

from emulator.core.models import JSON, Plan, RequestRecord
from emulator.core.outputs import SplitText, split_tokens

# Distinct outputs (and plans) remembered for sharing; past this, the table starts again.
KEPT = 256
# An output with more values than this is kept as it is: freezing it would cost more than it saves.
MAX_VALUES = 64


class _TooBig(Exception):
    pass


class Compactor:
    """Shares a completed record's output and finished plan with equal ones kept before it."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._outputs: dict[Hashable, JSON] = {}
        # The outputs last seen, by identity, with what each was shared as: an answer's output is
        # one object for every request that gets it, and need not be walked again for each.
        self._seen: dict[int, tuple[JSON, JSON]] = {}
        self._plans: dict[tuple[Any, ...], Plan] = {}
        # Likewise the finished plans last seen, by identity, with the output each went with and its shared plan.
        self._seen_plans: dict[int, tuple[Plan, JSON, Plan]] = {}

    def compact(self, record: RequestRecord) -> None:
        original = record.output
        if original is not None:
            record.output = self._output(original)
        plan = record.plan
        if plan is not None and not plan.logs:
            # A success's plan holds the record's output; a failure's, an empty object: shared alike.
            shared = record.output
            output = shared if shared is not None and plan.output is original else self._output(plan.output)
            record.plan = self._plan(plan, output)

    def _output(self, output: JSON) -> JSON:
        seen = self._seen.get(id(output))
        # The entry holds the output itself, so its id cannot be another object's while it is here.
        if seen is not None and seen[0] is output:
            return seen[1]
        shared = self._equal(output)
        if len(self._seen) >= self.kept:
            self._seen.clear()
        self._seen[id(output)] = (output, shared)
        return shared

    def _equal(self, output: JSON) -> JSON:
        """The output kept before that is equal to this one, or this one (now kept)."""
        try:
            key = _frozen(output, [MAX_VALUES])
        except _TooBig:
            return output
        shared: JSON | None = self._outputs.get(key)
        if shared is None:
            if len(self._outputs) >= self.kept:
                self._outputs.clear()
            self._outputs[key] = shared = output
        return shared

    def _plan(self, plan: Plan, output: JSON) -> Plan:
        seen = self._seen_plans.get(id(plan))
        # The entry holds the plan and the output, so neither id can be another object's meanwhile.
        if seen is not None and seen[0] is plan and seen[1] is output:
            return seen[2]
        shared = self._equal_plan(plan, output)
        if len(self._seen_plans) >= self.kept:
            self._seen_plans.clear()
        self._seen_plans[id(plan)] = (plan, output, shared)
        return shared

    def _equal_plan(self, plan: Plan, output: JSON) -> Plan:
        """The plan kept before that is this one with ``output``, or this one with it (now kept)."""
        tokens: Any = plan.tokens
        text = output.get("output")
        # Tokens that are the split of the output's text are kept as that text (split when read).
        if isinstance(tokens, tuple) and tokens and isinstance(text, str) and split_tokens(text) is tokens:
            tokens = SplitText(text)
        # By identity: the text (or tokens), output and failure are the objects the kept plan holds
        # on to, so no id in a key can be reused while it is remembered.
        held = tokens.text if isinstance(tokens, SplitText) else tokens
        key = (id(held), plan.first_token_after, plan.seconds_per_token, id(output), id(plan.failure))
        shared = self._plans.get(key)
        if shared is None:
            if len(self._plans) >= self.kept:
                self._plans.clear()
            if output is not plan.output or tokens is not plan.tokens:
                plan = dataclasses.replace(plan, output=output, tokens=tokens)
            self._plans[key] = shared = plan
        return shared


def _frozen(value: Any, budget: list[int]) -> Hashable:
    """A hashable form equal only for JSON values equal in every value, type and key order."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    if isinstance(value, dict):
        return (dict, tuple((key, _frozen(item, budget)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_frozen(item, budget) for item in value))
    if isinstance(value, float):
        return (float, value.hex())  # 0.0 and -0.0 differ; NaN equals itself
    if value is None or isinstance(value, (str, int)):
        return (type(value), value)  # the type keeps True, 1 and 1.0 apart
    raise _TooBig  # anything else is kept as it is
