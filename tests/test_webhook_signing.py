"""The webhook core without HTTP: payloads, the key file, signing and the public verify helper."""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from emulator.core.models import CANCELLED, REQUEST_TIMEOUT, Failure, RequestRecord, State
from emulator.webhooks import KeyFileError, KeyRing, WebhookVerificationError, check, verify, webhook_body
from emulator.webhooks.keys import KEY_FILE, MAX_KEYS
from emulator.webhooks.payload import PAYLOAD_ERROR
from emulator.webhooks.signing import b64url, signature_headers

NOW = 1_735_689_600


def record(output: object = None, failure: Failure | None = None) -> RequestRecord:
    done = RequestRecord("req-1", "key-1", "fal-ai/any-llm", "fal-ai/any-llm", {"prompt": "x"}, 0.0, 1)
    done.state = State.COMPLETED
    done.output = output  # type: ignore[assignment]
    done.failure = failure
    return done


def signed(body: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers for ``body`` signed by a fresh key at NOW, and a JWKS holding that key."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes_raw()
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": "k1"}]}
    return signature_headers(key, "req-1", "key-1", NOW, body), jwks


class TestPayload:
    def test_ok_body_is_fal_shape_with_sorted_keys(self) -> None:
        """A success posts status OK, the output as payload, error null, keys sorted as json.dumps does."""
        output = {"output": "hi", "partial": False, "error": None}
        body = webhook_body(record(output))
        assert (
            body
            == json.dumps(
                {
                    "request_id": "req-1",
                    "gateway_request_id": "req-1",
                    "status": "OK",
                    "payload": output,
                    "error": None,
                },
                sort_keys=True,
            ).encode()
        )
        assert body.startswith(b'{"error": null, "gateway_request_id": "req-1", "payload": {')

    def test_app_error_reports_its_status_code(self) -> None:
        """A failed request posts status ERROR, 'Invalid status code: N' and the error body as payload."""
        detail = [{"loc": ["body", "prompt"], "msg": "rejected", "type": "value_error"}]
        data = json.loads(webhook_body(record(failure=Failure(422, detail))))
        assert data == {
            "request_id": "req-1",
            "gateway_request_id": "req-1",
            "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": {"detail": detail},
        }

    @pytest.mark.parametrize(("failure", "code"), [(CANCELLED, 499), (REQUEST_TIMEOUT, 504)])
    def test_cancellation_and_timeout_are_errors(self, failure: Failure, code: int) -> None:
        """Cancelled and timed-out requests post ERROR with their code and fal's detail and error_type."""
        data = json.loads(webhook_body(record(failure=failure)))
        assert data["status"] == "ERROR" and data["error"] == f"Invalid status code: {code}"
        assert data["payload"] == {"detail": failure.detail, "error_type": failure.error_type}

    def test_unserialisable_output_becomes_payload_error(self) -> None:
        """Output json cannot encode posts payload null with payload_error, the rest intact."""
        data = json.loads(webhook_body(record({"when": datetime.date(2025, 1, 1)})))
        assert data["payload"] is None and data["payload_error"] == PAYLOAD_ERROR
        assert data["status"] == "OK" and data["request_id"] == "req-1"


class TestKeyRing:
    def test_nothing_is_written_before_first_use(self, tmp_path: Path) -> None:
        """Building a key ring touches no file; the key is created when first needed."""
        ring = KeyRing(tmp_path / "sub" / KEY_FILE)
        assert not ring.path.exists()
        ring.active()
        assert ring.path.exists()

    def test_key_is_private_and_reused(self, tmp_path: Path) -> None:
        """The key file is owner-only, and a second ring on it signs with the same key."""
        first = KeyRing(tmp_path / KEY_FILE).active()
        assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
        again = KeyRing(tmp_path / KEY_FILE)
        assert again.active().kid == first.kid
        assert again.jwks() == {"keys": [first.public_jwk()]}
        assert set(first.public_jwk()) == {"kty", "crv", "x", "kid"}

    def test_rotation_keeps_old_keys_up_to_a_limit(self, tmp_path: Path) -> None:
        """Rotation publishes the new key first and keeps the previous ones, at most MAX_KEYS."""
        ring = KeyRing(tmp_path / KEY_FILE)
        first = ring.active()
        new = ring.rotate()
        assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid, first.kid]
        for _ in range(MAX_KEYS + 2):
            ring.rotate()
        assert len(ring.jwks()["keys"]) == MAX_KEYS
        assert KeyRing(ring.path).active().kid == ring.active().kid

    def test_corrupt_file_is_named(self, tmp_path: Path) -> None:
        """An unreadable key file raises KeyFileError naming the file, never a new key over it."""
        path = tmp_path / KEY_FILE
        path.write_text("{not json")
        with pytest.raises(KeyFileError, match=str(path)):
            KeyRing(path).active()
        assert path.read_text() == "{not json"


class TestVerify:
    def test_genuine_call_verifies_whatever_the_header_case(self) -> None:
        """verify() accepts a genuine call with headers in any letter case."""
        headers, jwks = signed(b"{}")
        assert verify(b"{}", headers, jwks, now=NOW)
        assert verify(b"{}", {k.lower(): v for k, v in headers.items()}, jwks, now=NOW + 299)

    def test_one_changed_byte_fails(self) -> None:
        """Changing one byte of the body makes the call fail verification."""
        headers, jwks = signed(b'{"a": 1}')
        assert not verify(b'{"a": 2}', headers, jwks, now=NOW)
        with pytest.raises(WebhookVerificationError, match="no key"):
            check(b'{"a": 2}', headers, jwks, now=NOW)

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"X-Fal-Webhook-Signature": ""}, "missing header X-Fal-Webhook-Signature"),
            ({"X-Fal-Webhook-Timestamp": "soon"}, "not a unix time"),
            ({"X-Fal-Webhook-Timestamp": str(NOW - 301)}, "more than 300 s"),
            ({"X-Fal-Webhook-Signature": "zz"}, "not hex"),
            ({"X-Fal-Webhook-User-Id": "someone-else"}, "no key"),
        ],
    )
    def test_rejections_say_why(self, change: dict[str, str], reason: str) -> None:
        """check() names the reason a call is rejected: missing header, bad timestamp, skew, bad signature."""
        headers, jwks = signed(b"{}")
        with pytest.raises(WebhookVerificationError, match=reason):
            check(b"{}", headers | change, jwks, now=NOW)

    def test_keys_of_other_types_are_skipped(self) -> None:
        """Non-Ed25519 entries in the JWKS are ignored; one valid key among them still verifies."""
        headers, jwks = signed(b"{}")
        mixed = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, {"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}
        with pytest.raises(WebhookVerificationError, match="no Ed25519 key"):
            check(b"{}", headers, mixed, now=NOW)
        assert verify(b"{}", headers, {"keys": mixed["keys"] + jwks["keys"]}, now=NOW)
