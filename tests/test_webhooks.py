"""Webhooks end to end: submit over HTTP, a real receiver on loopback, a manual clock, no sleeps."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from emulator import Emulator, ManualClock, Settings, SystemClock, create_app
from emulator.config import SettingsError
from emulator.runtime.cli import build_parser, settings_from
from emulator.webhooks import Delivery, Dispatcher, KeyRing, Outcome, check, verify
from emulator.webhooks.model import FAL_DELAYS, HOLD_SECONDS, STALE_BY
from tests.conftest import AUTH
from tests.receivers import Blackhole, Receiver, refused_url, wait_until
from tests.servers import start_server

pytestmark = pytest.mark.anyio

BASE = "http://emulator.test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(profile="instant", seed=7, data_dir=tmp_path)


@pytest.fixture
async def http(core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process with its lifespan running, so the webhook senders are up."""
    app = create_app(emulator=core)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=AUTH) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def receiver(shared_receiver: Receiver) -> Receiver:
    """One receiver per module, cleared for each test."""
    shared_receiver.reset()
    return shared_receiver


@pytest.fixture
def hooks(core: Emulator) -> Dispatcher:
    return core.webhooks.dispatcher


async def submit(http: httpx.AsyncClient, url: str, prompt: str = "Explain queues", **headers: str) -> str:
    response = await http.post("/fal-ai/any-llm", params={"fal_webhook": url}, json={"prompt": prompt}, headers=headers)
    assert response.status_code == 200, response.text
    request_id: str = response.json()["request_id"]
    return request_id


async def attempts_of(hooks: Dispatcher, request_id: str, count: int) -> list[Any]:
    await wait_until(hooks, lambda: len(hooks.attempts(request_id)) >= count)
    return hooks.attempts(request_id)


def independent_check(jwks: Mapping[str, Any], body: bytes, headers: Mapping[str, str]) -> str:
    """Verify as a receiver written for fal would, with cryptography alone; return the kid that verifies."""
    lowered = {k.lower(): v for k, v in headers.items()}
    digest = hashlib.sha256(body).hexdigest()
    fields = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp")
    message = "\n".join([*(lowered[f] for f in fields), digest]).encode()
    signature = bytes.fromhex(lowered["x-fal-webhook-signature"])
    assert len(signature) == 64
    for jwk in jwks["keys"]:
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
        except InvalidSignature:
            continue
        return str(jwk["kid"])
    raise InvalidSignature("no key of the JWKS verifies")


async def served_jwks(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    jwks: dict[str, Any] = response.json()
    return jwks


class TestPayloadsAndSignatures:
    async def test_ok_webhook_is_signed_and_verifies(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A completed request posts fal's OK body, signed over request, user, time and body digest."""
        rid = await submit(http, receiver.url, "echo: hello")
        clock.advance(0)
        (attempt,) = await attempts_of(hooks, rid, 1)
        (call,) = receiver.calls
        assert attempt.outcome is Outcome.DELIVERED and attempt.status_code == 200
        assert call.body == attempt.body.encode()
        assert json.loads(call.body) == {
            "request_id": rid,
            "gateway_request_id": rid,
            "status": "OK",
            "payload": {"output": "echo: hello", "partial": False, "error": None},
            "error": None,
        }
        assert call.headers["X-Fal-Webhook-Request-Id"] == rid
        assert call.headers["X-Fal-Webhook-User-Id"] == "test-key"
        assert call.headers["X-Fal-Webhook-Timestamp"] == str(int(clock.now()))
        assert call.headers["Content-Type"] == "application/json"
        jwks = await served_jwks(http)
        assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["crv"] == "Ed25519"
        assert independent_check(jwks, call.body, call.headers) == jwks["keys"][0]["kid"]
        assert verify(call.body, call.headers, jwks, now=clock.now())
        tampered = bytearray(call.body)
        tampered[-2] ^= 0x01
        with pytest.raises(InvalidSignature):
            independent_check(jwks, bytes(tampered), call.headers)
        assert not verify(bytes(tampered), call.headers, jwks, now=clock.now())

    async def test_error_webhook_carries_the_error_body(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A request that fails posts status ERROR, the status code message and the error detail, signed."""
        rid = await submit(http, receiver.url, "[emulator:fail-422]")
        clock.advance(0)
        await attempts_of(hooks, rid, 1)
        (call,) = receiver.calls
        data = json.loads(call.body)
        assert data["status"] == "ERROR" and data["error"] == "Invalid status code: 422"
        assert data["payload"]["detail"][0]["loc"] == ["body", "prompt"]
        independent_check(await served_jwks(http), call.body, call.headers)

    async def test_cancelled_and_timed_out_requests_call_back(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock, core: Emulator
    ) -> None:
        """Cancellation and a start deadline both end in an ERROR webhook (499 and 504)."""
        core.scheduler.pause()
        cancelled = await submit(http, receiver.url)
        timed_out = await submit(http, receiver.url, **{"x-fal-request-timeout": "1"})
        cancel = await http.put(f"/fal-ai/any-llm/requests/{cancelled}/cancel")
        assert cancel.status_code == 202
        clock.advance(1)
        await attempts_of(hooks, cancelled, 1)
        await attempts_of(hooks, timed_out, 1)
        errors = {json.loads(c.body)["request_id"]: json.loads(c.body)["error"] for c in receiver.calls}
        assert errors == {cancelled: "Invalid status code: 499", timed_out: "Invalid status code: 504"}


class TestRetries:
    async def test_fails_n_times_then_succeeds_on_schedule(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """Three failures then a 200: exactly four attempts, 15, 30 and 60 clock seconds apart, each signed."""
        receiver.answer(500, 503, 429)
        rid = await submit(http, receiver.url)
        start = clock.now()
        clock.advance(0)
        for n, delay in enumerate(FAL_DELAYS[:3], start=1):
            await attempts_of(hooks, rid, n)
            clock.advance(delay)
        attempts = await attempts_of(hooks, rid, 4)
        assert [a.at - start for a in attempts] == [0, 15, 45, 105]
        assert [a.status_code for a in attempts] == [500, 503, 429, 200]
        assert [a.outcome for a in attempts] == [Outcome.RETRYING] * 3 + [Outcome.DELIVERED]
        assert [a.next_attempt_at for a in attempts] == [start + 15, start + 45, start + 105, None]
        clock.advance(10_000)
        assert hooks.pending() == 0 and len(hooks.attempts(rid)) == 4 and len(receiver.calls) == 4
        jwks = await served_jwks(http)
        assert [c.headers["X-Fal-Webhook-Timestamp"] for c in receiver.calls] == [str(int(a.at)) for a in attempts]
        for call in receiver.calls:
            independent_check(jwks, call.body, call.headers)

    async def test_refused_connection_gives_up_after_ten_attempts(
        self, http: httpx.AsyncClient, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A receiver that refuses connections gets all 10 attempts over about 2 hours, then gave_up."""
        rid = await submit(http, refused_url())
        start = clock.now()
        clock.advance(0)
        for n, delay in enumerate(FAL_DELAYS, start=1):
            await attempts_of(hooks, rid, n)
            clock.advance(delay)
        attempts = await attempts_of(hooks, rid, 10)
        clock.advance(100_000)
        assert len(hooks.attempts(rid)) == 10 and hooks.pending() == 0
        assert [a.at - start for a in attempts] == [0, 15, 45, 105, 225, 525, 1125, 2325, 4125, 7125]
        assert all(a.error is not None and "ConnectError" in a.error for a in attempts)
        assert [a.outcome for a in attempts] == [Outcome.RETRYING] * 9 + [Outcome.GAVE_UP]

    async def test_silent_receiver_times_out_each_attempt(
        self, http: httpx.AsyncClient, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A receiver that never answers: each attempt times out after 15 clock seconds, 10 attempts, gave_up."""
        with Blackhole() as hole:
            rid = await submit(http, hole.url)
            clock.advance(0)
            for n in range(1, 11):
                await wait_until(hooks, lambda: hooks.sending == 1)
                await asyncio.to_thread(hole.wait_for_connections, n)
                clock.advance(15)
                await attempts_of(hooks, rid, n)
                if n < 10:
                    clock.advance(FAL_DELAYS[n - 1])
            attempts = hooks.attempts(rid)
        assert len(attempts) == 10 and len(hole.connections) == 10
        assert all(a.error == "timed out after 15 s" and a.status_code is None for a in attempts)
        assert attempts[-1].outcome is Outcome.GAVE_UP
        assert attempts[1].at - attempts[0].at == 15 + FAL_DELAYS[0]

    async def test_redirect_is_a_permanent_failure(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A 3xx answer ends delivery at once: no retry, no redirect followed."""
        receiver.answer(302)
        rid = await submit(http, receiver.url)
        clock.advance(0)
        (attempt,) = await attempts_of(hooks, rid, 1)
        clock.advance(100_000)
        assert attempt.status_code == 302 and attempt.outcome is Outcome.GAVE_UP
        assert attempt.next_attempt_at is None and hooks.pending() == 0
        assert len(receiver.calls) == 1

    async def test_flush_sends_a_waiting_retry_now(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """POST /_emulator/webhooks/flush makes a waiting retry due without moving the clock."""
        receiver.answer(500)
        rid = await submit(http, receiver.url)
        clock.advance(0)
        await attempts_of(hooks, rid, 1)
        flushed = await http.post("/_emulator/webhooks/flush", params={"request_id": rid})
        assert flushed.json() == {"released": 1}
        first, second = await attempts_of(hooks, rid, 2)
        assert second.outcome is Outcome.DELIVERED and second.at == first.at


async def test_time_scale_shrinks_the_schedule_on_the_system_clock(tmp_path: Path, receiver: Receiver) -> None:
    """With time scale 0.001 on the system clock, retries come 15 and 30 ms apart instead of 15 and 30 s."""
    settings = Settings(profile="instant", data_dir=tmp_path, webhook_time_scale=0.001)
    emulator = Emulator.build(settings, clock=SystemClock())
    hooks = emulator.webhooks.dispatcher
    app = create_app(emulator=emulator)
    receiver.answer(500, 500)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=AUTH) as http,
    ):
        rid = await submit(http, receiver.url)
        attempts = await attempts_of(hooks, rid, 3)
    assert [a.outcome for a in attempts] == [Outcome.RETRYING, Outcome.RETRYING, Outcome.DELIVERED]
    for earlier, later, delay in zip(attempts, attempts[1:], FAL_DELAYS, strict=False):
        assert earlier.next_attempt_at is not None
        # The wait runs from the end of the attempt: its start plus its latency.
        ended = earlier.at + earlier.latency
        assert earlier.next_attempt_at - ended == pytest.approx(delay * 0.001, abs=0.005)
        # asyncio may fire a timer up to its clock resolution early; a millisecond covers it.
        assert later.at >= earlier.next_attempt_at - 0.001


class TestModes:
    async def test_duplicate_mode_sends_the_same_body_twice(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """The global duplicate mode delivers each webhook twice, the same body, each copy signed."""
        patched = await http.patch("/_emulator/webhooks/config", json={"mode": "duplicate"})
        assert patched.json()["mode"] == "duplicate"
        rid = await submit(http, receiver.url)
        clock.advance(0)
        attempts = await attempts_of(hooks, rid, 2)
        assert [(a.copy, a.outcome) for a in attempts] == [(1, Outcome.DELIVERED), (2, Outcome.DELIVERED)]
        first, second = receiver.calls
        assert first.body == second.body
        jwks = await served_jwks(http)
        independent_check(jwks, first.body, first.headers)
        independent_check(jwks, second.body, second.headers)

    async def test_out_of_order_lets_a_later_webhook_overtake(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A request in out_of_order mode is held until the next one to the same URL has been sent."""
        earlier = await submit(http, receiver.url, **{"x-emulator-webhook-mode": "out_of_order"})
        later = await submit(http, receiver.url)
        clock.advance(0)
        await attempts_of(hooks, earlier, 1)
        assert [c.headers["X-Fal-Webhook-Request-Id"] for c in receiver.calls] == [later, earlier]
        assert [a.request_id for a in hooks.attempts()] == [later, earlier]

    async def test_a_held_webhook_goes_out_alone_after_the_hold(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """With no later webhook to overtake it, a held one is sent after the hold time."""
        rid = await submit(http, receiver.url, **{"x-emulator-webhook-mode": "out_of_order"})
        clock.advance(0)
        await wait_until(hooks, lambda: hooks.pending() == 1)
        assert hooks.attempts(rid) == []
        clock.advance(HOLD_SECONDS)
        (attempt,) = await attempts_of(hooks, rid, 1)
        assert attempt.outcome is Outcome.DELIVERED

    async def test_bad_signature_mode_fails_verification(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A request set to bad_signature through the control API arrives with a signature no key verifies."""
        rid = await submit(http, receiver.url)
        put = await http.put(f"/_emulator/webhooks/requests/{rid}/mode", json={"mode": "bad_signature"})
        assert put.status_code == 200
        clock.advance(0)
        await attempts_of(hooks, rid, 1)
        (call,) = receiver.calls
        jwks = await served_jwks(http)
        with pytest.raises(InvalidSignature):
            independent_check(jwks, call.body, call.headers)
        assert not verify(call.body, call.headers, jwks, now=clock.now())

    async def test_stale_timestamp_mode_is_signed_but_old(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """stale_timestamp signs correctly over a timestamp an hour old, so only the skew check rejects it."""
        rid = await submit(http, receiver.url, **{"x-emulator-webhook-mode": "stale_timestamp"})
        clock.advance(0)
        await attempts_of(hooks, rid, 1)
        (call,) = receiver.calls
        jwks = await served_jwks(http)
        assert call.headers["X-Fal-Webhook-Timestamp"] == str(int(clock.now() - STALE_BY))
        independent_check(jwks, call.body, call.headers)
        with pytest.raises(ValueError, match="more than 300 s"):
            check(call.body, call.headers, jwks, now=clock.now())

    async def test_modes_apply_only_where_chosen(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """A per-request mode leaves other requests normal; resetting the global mode restores normal."""
        await http.patch("/_emulator/webhooks/config", json={"mode": "bad_signature"})
        await http.patch("/_emulator/webhooks/config", json={"mode": "normal"})
        odd = await submit(http, receiver.url, **{"x-emulator-webhook-mode": "bad_signature"})
        plain = await submit(http, receiver.url)
        clock.advance(0)
        await attempts_of(hooks, plain, 1)
        await attempts_of(hooks, odd, 1)
        modes = {a.request_id: a.mode.value for a in hooks.attempts()}
        assert modes == {odd: "bad_signature", plain: "normal"}


class TestKeys:
    async def test_rotation_publishes_both_and_signs_with_the_new_key(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock, tmp_path: Path
    ) -> None:
        """After rotation the JWKS holds old and new keys, the new one signs, and a restart keeps both."""
        (old,) = (await served_jwks(http))["keys"]
        rotated = await http.post("/_emulator/webhooks/keys/rotate")
        new_kid = rotated.json()["kid"]
        jwks = await served_jwks(http)
        assert [k["kid"] for k in jwks["keys"]] == [new_kid, old["kid"]]
        rid = await submit(http, receiver.url)
        clock.advance(0)
        await attempts_of(hooks, rid, 1)
        (call,) = receiver.calls
        assert independent_check(jwks, call.body, call.headers) == new_kid
        with pytest.raises(InvalidSignature):
            independent_check({"keys": [old]}, call.body, call.headers)
        restarted = Emulator.build(Settings(profile="instant", data_dir=tmp_path), clock=clock)
        assert restarted.webhooks.jwks() == jwks
        assert restarted.webhooks.keys.active().kid == new_kid


class TestControl:
    async def test_attempts_are_listed_and_filtered(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """GET /_emulator/webhooks lists every attempt with what was sent; ?request_id= filters; DELETE clears."""
        first = await submit(http, receiver.url)
        second = await submit(http, receiver.url)
        clock.advance(0)
        await attempts_of(hooks, first, 1)
        await attempts_of(hooks, second, 1)
        listed = (await http.get("/_emulator/webhooks")).json()
        assert {a["request_id"] for a in listed["attempts"]} == {first, second}
        (only,) = (await http.get("/_emulator/webhooks", params={"request_id": second})).json()["attempts"]
        assert only["url"] == receiver.url and only["attempt"] == 1 and only["outcome"] == "delivered"
        assert only["status_code"] == 200 and only["error"] is None and only["latency"] > 0
        assert json.loads(only["body"])["request_id"] == second
        (call,) = [c for c in receiver.calls if c.headers["X-Fal-Webhook-Request-Id"] == second]
        assert call.body == only["body"].encode()
        assert only["headers"]["X-Fal-Webhook-Signature"] == call.headers["X-Fal-Webhook-Signature"]
        assert only["headers"]["Content-Length"] == str(len(call.body))
        latest = (await http.get("/_emulator/webhooks", params={"limit": 1})).json()["attempts"]
        assert latest == listed["attempts"][-1:]
        assert (await http.get("/_emulator/webhooks", params={"limit": "x"})).status_code == 422
        assert (await http.delete("/_emulator/webhooks")).status_code == 204
        assert (await http.get("/_emulator/webhooks")).json() == {"attempts": [], "pending": 0}

    async def test_the_control_clock_advances_retries(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher
    ) -> None:
        """POST /_emulator/clock/advance moves a waiting retry to its turn, like the manual clock itself."""
        receiver.answer(500)
        rid = await submit(http, receiver.url)
        await http.post("/_emulator/clock/advance", json={"seconds": 0})
        await attempts_of(hooks, rid, 1)
        await http.post("/_emulator/clock/advance", json={"seconds": FAL_DELAYS[0]})
        first, second = await attempts_of(hooks, rid, 2)
        assert second.at - first.at == FAL_DELAYS[0] and second.outcome is Outcome.DELIVERED

    async def test_reset_forgets_attempts_and_unsent_webhooks(
        self, http: httpx.AsyncClient, hooks: Dispatcher, clock: ManualClock
    ) -> None:
        """POST /_emulator/reset for a key drops its attempts and waiting retries; other keys keep theirs."""
        mine = await submit(http, refused_url())
        theirs = await submit(http, refused_url(), authorization="Key other-key:secret")
        clock.advance(0)
        await attempts_of(hooks, mine, 1)
        await attempts_of(hooks, theirs, 1)
        assert hooks.pending() == 2
        await http.post("/_emulator/reset", json={"namespace": "test-key"})
        assert hooks.attempts(mine) == [] and len(hooks.attempts(theirs)) == 1 and hooks.pending() == 1
        await http.post("/_emulator/reset")
        assert hooks.attempts() == [] and hooks.pending() == 0

    async def test_config_reads_and_rejects_bad_values(self, http: httpx.AsyncClient) -> None:
        """The config endpoint shows the schedule and answers 422 for an unknown mode or a bad time scale."""
        config = (await http.get("/_emulator/webhooks/config")).json()
        assert config["attempts"] == 10 and config["timeout"] == 15 and config["delays"] == list(FAL_DELAYS)
        assert config["mode"] == "normal" and "out_of_order" in config["modes"]
        assert (await http.patch("/_emulator/webhooks/config", json={"mode": "chaos"})).status_code == 422
        assert (await http.patch("/_emulator/webhooks/config", json={"time_scale": -1})).status_code == 422
        assert (await http.patch("/_emulator/webhooks/config", content=b"[")).status_code == 422
        scaled = await http.patch("/_emulator/webhooks/config", json={"time_scale": 0.5})
        assert scaled.json()["time_scale"] == 0.5

    async def test_unknown_mode_header_is_rejected(self, http: httpx.AsyncClient) -> None:
        """Submitting with an unknown x-emulator-webhook-mode answers 422 naming the header."""
        response = await http.post(
            "/fal-ai/any-llm", json={"prompt": "x"}, headers={"x-emulator-webhook-mode": "sometimes"}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["header", "x-emulator-webhook-mode"]

    @pytest.mark.parametrize(
        "url", ["nope", "ftp://hooks.example.test/x", "/relative/path", "hooks.example.test/x", "http://", "http:// x"]
    )
    async def test_webhook_must_be_an_absolute_http_url(self, http: httpx.AsyncClient, url: str) -> None:
        """A fal_webhook that is not an absolute http(s) URL is refused at submit with 422 naming it."""
        response = await http.post("/fal-ai/any-llm", params={"fal_webhook": url}, json={"prompt": "x"})
        assert response.status_code == 422
        assert any(d["loc"] == ["query", "fal_webhook"] for d in response.json()["detail"])


class TestNeverBlocks:
    async def test_a_silent_receiver_delays_nothing_else(
        self, http: httpx.AsyncClient, receiver: Receiver, hooks: Dispatcher, clock: ManualClock, core: Emulator
    ) -> None:
        """While one delivery hangs, other webhooks are delivered and other requests complete."""
        with Blackhole() as hole:
            stuck = await submit(http, hole.url)
            clock.advance(0)
            await wait_until(hooks, lambda: hooks.sending == 1)
            fine = await submit(http, receiver.url)
            plain = (await http.post("/fal-ai/any-llm", json={"prompt": "x"})).json()["request_id"]
            clock.advance(0)
            (attempt,) = await attempts_of(hooks, fine, 1)
            assert attempt.outcome is Outcome.DELIVERED
            assert hooks.attempts(stuck) == [] and hooks.sending == 1
            status = await http.get(f"/fal-ai/any-llm/requests/{plain}/status")
            assert status.json()["status"] == "COMPLETED"

    async def test_senders_are_bounded(self, tmp_path: Path, clock: ManualClock) -> None:
        """With two senders, a third delivery waits in the queue while two hang."""
        emulator = Emulator.build(Settings(profile="instant", data_dir=tmp_path, webhook_senders=2), clock=clock)
        hooks = emulator.webhooks.dispatcher
        app = create_app(emulator=emulator)
        with Blackhole() as hole:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, headers=AUTH) as http,
            ):
                for _ in range(3):
                    await submit(http, hole.url)
                clock.advance(0)
                await wait_until(hooks, lambda: hooks.sending == 2)
                await asyncio.to_thread(hole.wait_for_connections, 2)
                assert hooks.sending == 2 and hooks.pending() == 3

    async def test_a_webhook_failure_never_stalls_the_queue(
        self, http: httpx.AsyncClient, core: Emulator, clock: ManualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Even if queueing a webhook fails, the request completes and the next one starts."""

        def broken(delivery: object) -> None:
            raise RuntimeError("dispatcher bug")

        core.webhooks.dispatcher.submit = broken  # type: ignore[method-assign]
        ids = [await submit(http, refused_url()) for _ in range(core.settings.runners + 1)]
        clock.advance(0)
        statuses = [(await http.get(f"/fal-ai/any-llm/requests/{rid}/status")).json()["status"] for rid in ids]
        assert statuses == ["COMPLETED"] * len(ids)
        assert "could not queue the webhook" in caplog.text

    async def test_deliveries_wait_for_the_senders_to_start(self, core: Emulator, clock: ManualClock) -> None:
        """Completion only queues a webhook; nothing is sent until the lifespan starts the senders."""
        transport = httpx.ASGITransport(app=create_app(emulator=core))
        async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as http:
            await submit(http, refused_url())
            clock.advance(0)
        hooks = core.webhooks.dispatcher
        assert not hooks.running and hooks.pending() == 1 and hooks.attempts() == []


@pytest.mark.socket
def test_over_a_real_socket(tmp_path: Path, receiver: Receiver) -> None:
    """Served by uvicorn, the lifespan starts the senders; the JWKS fetched over the socket verifies the call."""
    settings = Settings(profile="instant", port=0, data_dir=tmp_path, webhook_time_scale=0.001)
    with start_server(settings) as server, httpx.Client(base_url=server.base_url, headers=AUTH) as http:
        receiver.answer(503)
        response = http.post("/fal-ai/any-llm", params={"fal_webhook": receiver.url}, json={"prompt": "echo: hi"})
        rid = response.json()["request_id"]
        first, second = receiver.wait_for_calls(2)
        jwks = http.get("/.well-known/jwks.json").json()
        # The emulator records an attempt once the answer is back, a moment after the receiver saw it.
        deadline = time.monotonic() + 5
        while len(listed := http.get("/_emulator/webhooks", params={"request_id": rid}).json()["attempts"]) < 2:
            assert time.monotonic() < deadline, listed
    assert first.body == second.body and json.loads(first.body)["payload"]["output"] == "echo: hi"
    independent_check(jwks, second.body, second.headers)
    assert [a["status_code"] for a in listed] == [503, 200]


def test_settings_read_the_environment_and_flags() -> None:
    """--webhook-time-scale and ANY_LLM_EMULATOR_WEBHOOK_TIME_SCALE set the scale; a negative one is refused."""
    env = {"ANY_LLM_EMULATOR_WEBHOOK_TIME_SCALE": "0.001", "ANY_LLM_EMULATOR_WEBHOOK_SENDERS": "4"}
    from_env = settings_from(build_parser().parse_args(["serve"]), env)
    assert (from_env.webhook_time_scale, from_env.webhook_senders) == (0.001, 4)
    flags = build_parser().parse_args(["serve", "--webhook-time-scale", "0.5", "--webhook-senders", "2"])
    assert (settings_from(flags, env).webhook_time_scale, settings_from(flags, env).webhook_senders) == (0.5, 2)
    with pytest.raises(SettingsError, match="webhook_time_scale"):
        Settings(webhook_time_scale=-1)


async def test_attempt_log_is_bounded_and_client_injectable(tmp_path: Path, clock: ManualClock) -> None:
    """Through an injected MockTransport client, only the latest log_size attempts are kept."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        keys = KeyRing(tmp_path / "keys.json")
        hooks = Dispatcher(clock=clock, keys=keys, http_client=client, log_size=3, senders=1)
        await hooks.start()
        try:
            for n in range(5):
                hooks.submit(Delivery(f"req-{n}", "user", "https://hooks.example.test/in", b"{}"))
            await wait_until(hooks, lambda: len(seen) == 5 and hooks.pending() == 0)
        finally:
            await hooks.stop()
    assert [a.request_id for a in hooks.attempts()] == ["req-2", "req-3", "req-4"]
    assert all(a.outcome is Outcome.DELIVERED for a in hooks.attempts())
    assert verify(seen[0].content, seen[0].headers, keys.jwks(), now=clock.now())


async def test_control_token_guards_webhook_controls_not_the_jwks(tmp_path: Path, clock: ManualClock) -> None:
    """With --control-token, webhook controls need the token; the JWKS, like fal's, stays public."""
    emulator = Emulator.build(Settings(profile="instant", data_dir=tmp_path, control_token="s3cret"), clock=clock)
    transport = httpx.ASGITransport(app=create_app(emulator=emulator))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        assert (await http.get("/_emulator/webhooks")).status_code == 401
        assert (await http.post("/_emulator/webhooks/keys/rotate")).status_code == 401
        allowed = await http.get("/_emulator/webhooks", headers={"x-emulator-token": "s3cret"})
        assert allowed.status_code == 200
        assert (await http.get("/.well-known/jwks.json")).status_code == 200
