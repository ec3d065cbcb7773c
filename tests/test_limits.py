"""Bad and oversized input on every surface: a clear 4xx, never a 500, and nothing kept unbounded."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from emulator import Emulator, ManualClock, Settings, create_app
from emulator.core.clock import MAX_ADVANCE_SECONDS
from emulator.core.journal import MAX_HEADER_VALUE_BYTES, MAX_HEADERS_BYTES, Journal
from emulator.core.models import RequestRecord
from emulator.core.scheduler import Submission
from emulator.core.spec import MAX_JSON_DEPTH, JSONRejected, parse_json
from emulator.core.tokens import Tokens
from emulator.core.wire import dumps_json
from emulator.http.common import CONTROL_BODY_LIMIT
from emulator.store.codec import decode, encode
from emulator.webhooks import Delivery, Dispatcher, KeyRing, Outcome
from tests.conftest import AUTH
from tests.helpers import drive
from tests.receivers import refused_url, wait_until

pytestmark = pytest.mark.anyio

LONE_SURROGATE = b'{"prompt": "\\ud800 hello"}'
JSON_HEADERS = {"content-type": "application/json"}


def nested(depth: int) -> bytes:
    return b'{"prompt": "deep", "extra": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(profile="instant", seed=7, data_dir=tmp_path)


class TestStrictJson:
    def test_a_lone_surrogate_is_refused_and_a_pair_is_kept(self) -> None:
        """A lone UTF-16 surrogate escape is a string_unicode error at its place; a valid pair parses."""
        with pytest.raises(JSONRejected) as refused:
            parse_json(b'{"a": ["ok", "\\udc00"]}')
        assert refused.value.detail["loc"] == ["body", "a", 1]
        assert refused.value.detail["type"] == "string_unicode"
        assert parse_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}

    def test_nesting_is_bounded_at_the_documented_depth(self) -> None:
        """MAX_JSON_DEPTH levels parse; one more, or a thousand, is a json_invalid error."""
        assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
        for depth in (MAX_JSON_DEPTH + 1, 5000):
            with pytest.raises(JSONRejected) as refused:
                parse_json(b"[" * depth + b"]" * depth)
            assert refused.value.detail["type"] == "json_invalid"
            assert "nested deeper" in refused.value.detail["ctx"]["error"]

    def test_nan_and_infinity_are_not_json(self) -> None:
        """NaN, Infinity and -Infinity are refused; brackets inside strings do not count as depth."""
        for text in (b'{"t": NaN}', b'{"t": Infinity}', b"[-Infinity]"):
            with pytest.raises(JSONRejected):
                parse_json(text)
        assert parse_json(b'["' + b"[" * 500 + b'"]') == ["[" * 500]

    def test_responses_never_carry_nan_or_unencodable_text(self) -> None:
        """dumps_json writes NaN and infinity as null and a lone surrogate as an escape: valid JSON, valid UTF-8."""
        text = dumps_json({"a": math.nan, "b": [math.inf], "c": "\ud800"})
        assert json.loads(text.decode("utf-8")) == {"a": None, "b": [None], "c": "\ud800"}


class TestSurfaces:
    @pytest.mark.parametrize("path", ["/fal-ai/any-llm", "/run/fal-ai/any-llm"])
    async def test_a_lone_surrogate_answers_422_and_breaks_nothing(
        self, client: httpx.AsyncClient, clock: ManualClock, path: str
    ) -> None:
        """A lone surrogate is the app's 422 string_unicode (the queue's result, or the run's answer at once);
        the request list still answers."""
        answer = await client.post(path, content=LONE_SURROGATE, headers=JSON_HEADERS)
        if path == "/fal-ai/any-llm":  # fal's queue accepts the body; the request fails when it runs
            assert answer.status_code == 200, answer.text
            clock.advance(5)
            answer = await client.get(f"/fal-ai/any-llm/requests/{answer.json()['request_id']}")
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body", "prompt"]
        assert answer.json()["detail"][0]["type"] == "string_unicode"
        ok = await drive(clock, client.post("/run/fal-ai/any-llm", json={"prompt": "\U0001f600 fine"}))
        assert ok.status_code == 200
        assert (await client.get("/_emulator/requests")).status_code == 200

    async def test_a_record_holding_a_lone_surrogate_is_still_listed_and_answered(
        self, client: httpx.AsyncClient, core: Emulator, clock: ManualClock
    ) -> None:
        """Text that got into a record another way is written escaped: the list and the result answer 200."""
        record = core.scheduler.submit("test-key", Submission("fal-ai/any-llm", {"prompt": "\udfff"}))
        listed = await client.get("/_emulator/requests")
        assert listed.status_code == 200 and listed.json()["requests"][0]["input"]["prompt"] == "\udfff"
        result = await drive(clock, client.get(f"/fal-ai/any-llm/requests/{record.id}"))
        assert result.status_code == 200
        result.content.decode("utf-8")

    @pytest.mark.parametrize("path", ["/fal-ai/any-llm", "/run/fal-ai/any-llm"])
    async def test_deep_json_answers_422_on_the_api(self, client: httpx.AsyncClient, path: str) -> None:
        """A body nested thousands deep is a 422 json_invalid, not a RecursionError 500."""
        answer = await client.post(path, content=nested(5000), headers=JSON_HEADERS)
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["type"] == "json_invalid"

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("POST", "/_emulator/faults", 400),
            ("POST", "/_emulator/reset", 400),
            ("PATCH", "/_emulator/config", 400),
            ("PATCH", "/_emulator/webhooks/config", 422),
            ("POST", "/rest/storage/upload/initiate", 422),
        ],
    )
    async def test_deep_json_is_refused_by_the_other_surfaces(
        self, client: httpx.AsyncClient, method: str, path: str, status: int
    ) -> None:
        """Control, webhook control and storage bodies nested thousands deep get their surface's 4xx."""
        answer = await client.request(method, path, content=b"[" * 5000 + b"]" * 5000, headers=JSON_HEADERS)
        assert answer.status_code == status, answer.text

    async def test_the_control_api_refuses_a_body_past_its_limit(self, client: httpx.AsyncClient) -> None:
        """A control body over CONTROL_BODY_LIMIT answers 413 naming the limit."""
        padding = "x" * CONTROL_BODY_LIMIT
        answer = await client.post("/_emulator/faults", json={"kind": "latency", "detail": padding})
        assert answer.status_code == 413
        assert str(CONTROL_BODY_LIMIT) in answer.json()["detail"]
        webhooks = await client.patch("/_emulator/webhooks/config", json={"mode": "normal", "pad": padding})
        assert webhooks.status_code == 413


class TestClock:
    @pytest.mark.parametrize("body", [b'{"seconds": 1e308}', b'{"seconds": 3e11}', b'{"seconds": 1e400}'])
    async def test_absurd_advances_are_refused_and_nothing_breaks(
        self, client: httpx.AsyncClient, clock: ManualClock, body: bytes
    ) -> None:
        """Advances past ten years (or infinite) answer 422, the clock stays put and submits still work."""
        before = clock.now()
        answer = await client.post("/_emulator/clock/advance", content=body, headers=JSON_HEADERS)
        assert answer.status_code == 422, answer.text
        assert clock.now() == before
        assert (await client.post("/fal-ai/any-llm", json={"prompt": "after"})).status_code == 200

    async def test_nan_is_not_a_number_of_seconds(self, client: httpx.AsyncClient) -> None:
        """NaN is not JSON: the advance is refused as a bad body."""
        answer = await client.post("/_emulator/clock/advance", content=b'{"seconds": NaN}', headers=JSON_HEADERS)
        assert answer.status_code == 400
        assert "NaN" in answer.json()["detail"]

    def test_ten_years_is_the_largest_step(self) -> None:
        """The manual clock takes exactly ten years and refuses a second more, and never passes the year 3000."""
        clock = ManualClock()
        clock.advance(MAX_ADVANCE_SECONDS)
        with pytest.raises(ValueError, match="ten years"):
            clock.advance(MAX_ADVANCE_SECONDS + 1)
        with pytest.raises(ValueError, match="finite"):
            clock.advance(math.nan)
        with pytest.raises(ValueError, match="3000"):
            ManualClock(start=32_503_680_000.0 - 1).advance(2)

    async def test_a_fault_with_an_infinite_retry_after_is_refused(self, client: httpx.AsyncClient) -> None:
        """retry_after must be a finite number: 1e400 (infinity once parsed) and NaN are refused at parse."""
        for body in (b'{"kind": "http_error", "status": 429, "retry_after": 1e400}', b'{"retry_after": NaN}'):
            answer = await client.post("/_emulator/faults", content=body, headers=JSON_HEADERS)
            assert answer.status_code == 400, answer.text
        assert (await client.get("/_emulator/faults")).json()["faults"] == []


class TestJournal:
    def test_an_entry_keeps_bounded_headers(self) -> None:
        """A huge header value is cut to its cap, and headers past the total are left out and flagged."""
        journal = Journal(max_entries=10, max_body_bytes=16)
        headers = {"x-big": "a" * 1_000_000, **{f"x-{n}": "b" * 1000 for n in range(100)}}
        entry = journal.record(
            time=0.0, namespace="k", method="GET", path="/p", query="q=" + "z" * 100_000, headers=headers, body=b""
        )
        assert len(entry.headers["x-big"]) == MAX_HEADER_VALUE_BYTES
        assert sum(len(k) + len(v) for k, v in entry.headers.items()) <= MAX_HEADERS_BYTES
        assert entry.headers_truncated and len(entry.query) <= 4096
        assert len(json.dumps(entry.as_json())) < MAX_HEADERS_BYTES + 8192

    @pytest.mark.parametrize(
        "raw",
        [
            [(b"host", b"e.test"), (b"authorization", b"Key id:first"), (b"authorization", b"Key other:second")],
            [
                (b"x-big", b"a" * 1_000_000),
                (b"cookie", b"session=1"),
                *[(f"x-{n}".encode(), b"b" * 1000) for n in range(40)],
            ],
            [(b"n" * 300, b"v"), (b"x-fal-key", b"id:secret")],
        ],
        ids=["fits", "too-big", "long-name"],
    )
    def test_raw_headers_are_kept_as_their_decoded_text_would_be(self, raw: list[tuple[bytes, bytes]]) -> None:
        """Headers passed as an ASGI scope's bytes read back masked and capped, exactly as their text would."""
        journal = Journal(max_entries=10)
        text = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}
        from_raw = journal.record(time=0.0, namespace="k", method="GET", path="/p", query="", headers=raw, body=b"")
        from_text = journal.record(time=0.0, namespace="k", method="GET", path="/p", query="", headers=text, body=b"")
        assert from_raw.headers == from_text.headers
        assert from_raw.headers_truncated == from_text.headers_truncated
        assert from_raw.as_json() == {**from_text.as_json(), "seq": from_raw.seq}
        assert all("secret" not in value and "second" not in value for value in from_raw.headers.values())

    @pytest.mark.parametrize(
        ("authorization", "query", "namespace"),
        [
            (b"Key id:secret", b"", "id"),
            (b"Key broken", b"", "(invalid key)"),
            (None, b"", "anonymous"),
            (b"Bearer not-one-of-ours", b"", "bearer-"),
            (b"Bearer TOKEN", b"", "owner"),
            (None, b"fal_jwt_token=TOKEN", "owner"),
            (None, b"pad=" + b"p" * 5000 + b"&fal_jwt_token=TOKEN", "owner"),  # past the query's cap
        ],
    )
    @pytest.mark.parametrize("huge", [False, True], ids=["held-raw", "capped"])
    def test_an_entry_files_the_call_under_the_callers_namespace(
        self, authorization: bytes | None, query: bytes, namespace: str, huge: bool
    ) -> None:
        """Found in the raw headers and query when first read (at once when they are cut), masked headers or not."""
        token = Tokens(ManualClock(), b"secret").issue("owner", ["any-llm"], 60).encode()
        raw = [(b"host", b"e.test")] + ([] if authorization is None else [(b"authorization", authorization)])
        if huge:
            raw.append((b"x-pad", b"p" * 1_000_000))
        raw = [(name, value.replace(b"TOKEN", token)) for name, value in raw]
        journal = Journal(max_entries=10)
        entry = journal.note(0.0, "GET", "/p", query.replace(b"TOKEN", token), raw, b"", 200, [])
        assert entry.headers_truncated is huge
        masked = journal.note(0.0, "GET", "/p", query.replace(b"TOKEN", token), raw, b"", 200, [])
        if authorization is not None:
            assert masked.headers["authorization"].endswith("***")  # read first: masked
        for read in (entry, masked):  # namespace read first, and after the masked headers
            assert read.namespace.startswith(namespace) if namespace == "bearer-" else read.namespace == namespace

    def test_an_entry_reads_the_request_id_from_the_answers_headers(self) -> None:
        """The answer's x-fal-request-id (any case) when read; one set by hand wins."""
        journal = Journal(max_entries=10)
        answer = [(b"content-type", b"application/json"), (b"X-Fal-Request-Id", b"r-1")]
        entry = journal.note(0.0, "GET", "/p", b"", [], b"", 200, answer)
        assert (entry.request_id, entry.status) == ("r-1", 200)
        assert journal.entries(request_id="r-1") == [entry]
        entry.request_id = "r-2"
        assert entry.as_json()["request_id"] == "r-2"
        assert journal.note(0.0, "GET", "/p", b"", [], b"", 404, []).request_id is None

    async def test_a_request_with_a_huge_header_is_journalled_small(self, client: httpx.AsyncClient) -> None:
        """Even a 401 with a megabyte header leaves a journal entry of a few kilobytes."""
        answer = await client.get(
            "/fal-ai/any-llm/requests/x/status", headers={"authorization": "", "x-pad": "p" * 2**20}
        )
        assert answer.status_code in (401, 404)
        journal = await client.get("/_emulator/journal")
        assert len(journal.content) < 32 * 1024
        assert journal.json()["entries"][-1]["headers_truncated"] is True


class TestWebhookControl:
    @pytest.fixture
    async def http(self, core: Emulator) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(emulator=core)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e.test", headers=AUTH) as c,
        ):
            yield c

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8000/_emulator/reset",
            "http://localhost:8000/%5Femulator/reset",
            "http://e.test/x/../_emulator/pause",
            "https://example.com/mount/_emulator/clock/advance",
        ],
    )
    async def test_a_webhook_to_a_control_path_is_refused_at_submit(self, http: httpx.AsyncClient, url: str) -> None:
        """A fal_webhook under /_emulator, however spelled, answers 422 on the query parameter."""
        answer = await http.post("/fal-ai/any-llm", params={"fal_webhook": url}, json={"prompt": "hi"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["query", "fal_webhook"]
        assert (await http.get("/_emulator/requests")).json()["requests"] == []

    async def test_a_signed_webhook_delivery_cannot_drive_the_control_api(self, http: httpx.AsyncClient) -> None:
        """A call carrying fal's webhook signature header is refused 403 by every control endpoint."""
        signed = {"x-fal-webhook-signature": "00" * 64}
        assert (await http.post("/_emulator/pause", headers=signed)).status_code == 403
        assert (await http.post("/_emulator/reset", headers=signed)).status_code == 403
        assert (await http.post("/_emulator/webhooks/flush", headers=signed)).status_code == 403
        assert (await http.get("/_emulator/config")).json()["paused"] is False

    async def test_limit_returns_at_most_that_many_of_the_latest(
        self, http: httpx.AsyncClient, core: Emulator, clock: ManualClock
    ) -> None:
        """?limit=N returns min(N, all) attempts, the latest ones."""
        hooks = core.webhooks.dispatcher
        ids = []
        for n in range(3):
            answer = await http.post("/fal-ai/any-llm", params={"fal_webhook": refused_url()}, json={"prompt": f"{n}"})
            ids.append(answer.json()["request_id"])
            clock.advance(0)
            await wait_until(hooks, lambda: len(hooks.attempts()) == len(ids))
        for limit, expected in ((4, 3), (3, 3), (2, 2), (0, 0)):
            listed = (await http.get("/_emulator/webhooks", params={"limit": limit})).json()["attempts"]
            assert [a["request_id"] for a in listed] == ids[3 - expected :]


def test_pending_webhooks_are_capped_and_the_newest_given_up(tmp_path: Path) -> None:
    """Past max_pending a new delivery is recorded as given up unsent, settled and counted; the queue stays put."""
    dispatcher = Dispatcher(clock=ManualClock(), keys=KeyRing(tmp_path / "keys.json"), max_pending=2)
    settled: list[str] = []
    dispatcher.on_settled.append(lambda delivery: settled.append(delivery.request_id))
    for n in range(3):
        dispatcher.submit(Delivery(f"r{n}", "k", "http://127.0.0.1:9/hook", b'{"n": 1}'))
    assert dispatcher.pending() == 2 and dispatcher.refused == 1
    (given_up,) = dispatcher.attempts()
    assert given_up.request_id == "r2" and given_up.outcome is Outcome.GAVE_UP
    assert given_up.error is not None and "limit" in given_up.error
    assert settled == ["r2"]


def test_the_store_codec_writes_any_text_as_ascii() -> None:
    """A record holding a lone surrogate encodes to ASCII (so SQLite and Redis take it) and decodes the same."""
    record = RequestRecord("r", "k", "e", "a", {"prompt": "\ud800 \u00e9"}, submitted_at=0.0, seq=1)
    text = encode(record)
    assert text.isascii()
    assert decode(text.encode("utf-8")).input == {"prompt": "\ud800 \u00e9"}
