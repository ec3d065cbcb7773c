"""Fault rules without HTTP: parsing, matching, counting, seeded probability."""

from __future__ import annotations

import pytest

from emulator.core.faults import Fault, FaultError, Faults, Rule


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fault": {"kind": "explode"}}, "fault kind must be one of"),
        ({"fault": {"kind": "http_error"}}, "needs a status"),
        ({"fault": {"kind": "http_error", "status": 200}}, "between 400 and 599"),
        ({"fault": {"kind": "complete_with_error", "error_type": "nope"}}, "needs an error_type"),
        ({"fault": {"kind": "hold", "stage": "later"}}, "'queue' or 'progress'"),
        ({"fault": {"kind": "latency", "seconds": -1}}, "seconds >= 0"),
        ({"fault": {"kind": "reset"}, "actions": ["explode"]}, "'actions' must be"),
        ({"fault": {"kind": "reset"}, "times": 0}, "positive integer"),
        ({"fault": {"kind": "reset"}, "probability": 2}, "between 0 and 1"),
        ({"fault": {"kind": "reset", "colour": "red"}}, "unknown fault field"),
        ({"fault": {"kind": "reset"}, "when": "now"}, "unknown rule field"),
        ({"actions": ["submit"]}, "needs a 'fault' object"),
    ],
)
def test_bad_rules_say_what_is_wrong(raw: dict[str, object], message: str) -> None:
    """Every invalid rule is refused with a message naming the problem."""
    with pytest.raises(FaultError, match=message):
        Rule.parse(raw)


def test_times_counts_down_then_the_rule_is_gone() -> None:
    """A rule with times=N fires for the next N matching calls only."""
    faults = Faults()
    faults.add(Rule.parse({"fault": {"kind": "http_error", "status": 503}, "actions": ["status"], "times": 2}))
    hits = [faults.match("status", "ns") for _ in range(3)]
    assert [h.status if h else None for h in hits] == [503, 503, None]
    assert faults.rules == []


def test_scope_by_action_namespace_endpoint_and_request() -> None:
    """A rule only fires for its actions, namespace, endpoint and request id."""
    faults = Faults()
    faults.add(
        Rule.parse(
            {
                "fault": {"kind": "reset"},
                "actions": ["result"],
                "endpoint": "fal-ai/any-llm/vision",
                "request_id": "r1",
            },
            namespace="a",
        )
    )
    assert faults.match("status", "a", endpoint="fal-ai/any-llm/vision", request_id="r1") is None
    assert faults.match("result", "b", endpoint="fal-ai/any-llm/vision", request_id="r1") is None
    assert faults.match("result", "a", endpoint="fal-ai/other", request_id="r1") is None
    assert faults.match("result", "a", endpoint="fal-ai/any-llm/vision", request_id="r2") is None
    assert faults.match("result", "a", endpoint="fal-ai/any-llm/vision", request_id="r1") == Fault(kind="reset")


def test_probability_is_reproducible_with_a_seed() -> None:
    """The same seed gives the same sequence of hits and misses; some of each at p=0.5."""

    def run(seed: int) -> list[bool]:
        faults = Faults(seed)
        faults.add(Rule.parse({"fault": {"kind": "reset"}, "actions": ["status"], "probability": 0.5}))
        return [faults.match("status", "ns") is not None for _ in range(40)]

    assert run(7) == run(7)
    assert 5 < sum(run(7)) < 35
    assert run(7) != run(8)


def test_known_errors_and_custom_statuses() -> None:
    """complete_with_error maps error types to fal's bodies; a status gives an app error."""
    assert Fault.parse({"kind": "complete_with_error", "error_type": "startup_timeout"}).failure().body() == {
        "detail": "Startup timed out",
        "error_type": "startup_timeout",
    }
    app_error = Fault.parse({"kind": "complete_with_error", "status": 422, "detail": [{"msg": "bad"}]}).failure()
    assert (app_error.status_code, app_error.detail) == (422, [{"msg": "bad"}])


def test_gateway_errors_without_request_id_look_like_nginx() -> None:
    """A 502/503/504 without a request id is an HTML ingress page, the kind the Python client retries."""
    media_type, body = Fault(kind="http_error", status=503, with_request_id=False).http_body()
    assert media_type == "text/html"
    assert b"nginx" in body
    media_type, body = Fault(kind="http_error", status=503).http_body()
    assert media_type == "application/json"
