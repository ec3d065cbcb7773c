"""fal's webhook signature: Ed25519 over the request id, user id, timestamp and body digest."""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

REQUEST_ID = "X-Fal-Webhook-Request-Id"
USER_ID = "X-Fal-Webhook-User-Id"
TIMESTAMP = "X-Fal-Webhook-Timestamp"
SIGNATURE = "X-Fal-Webhook-Signature"
# The skew receivers written for fal allow between the timestamp header and their own clock.
DEFAULT_TOLERANCE = 300.0


class WebhookVerificationError(ValueError):
    """A webhook call that does not verify; the message says why."""


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWK fields are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs: four lines, the last the SHA-256 of the raw body in hex."""
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def signature_headers(
    key: Ed25519PrivateKey, request_id: str, user_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The four ``X-Fal-Webhook-*`` headers for one call."""
    signature = key.sign(signed_message(request_id, user_id, str(timestamp), body))
    return {
        REQUEST_ID: request_id,
        USER_ID: user_id,
        TIMESTAMP: str(timestamp),
        SIGNATURE: signature.hex(),
    }


def public_keys(jwks: Mapping[str, Any]) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document; other key types are skipped."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # on first use: it is heavy

    keys = []
    for jwk in jwks.get("keys", []):
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        try:
            keys.append(Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk.get("x", "")))))
        except (ValueError, binascii.Error):
            continue
    return keys


def check(
    body: bytes,
    headers: Mapping[str, str],
    jwks: Mapping[str, Any],
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Raise ``WebhookVerificationError`` unless a key of ``jwks`` signed this call within ``tolerance``."""
    lowered = {name.lower(): value for name, value in headers.items()}
    values = []
    for name in (REQUEST_ID, USER_ID, TIMESTAMP, SIGNATURE):
        value = lowered.get(name.lower())
        if not value:
            raise WebhookVerificationError(f"missing header {name}")
        values.append(value)
    request_id, user_id, timestamp, signature_hex = values
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError(f"{TIMESTAMP} is not a unix time: {timestamp!r}") from None
    # Receivers compare with their own clock; ``now`` lets a test pass the emulator's.
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError(f"timestamp {sent_at} is more than {tolerance:g} s from now ({current:.0f})")
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        raise WebhookVerificationError(f"{SIGNATURE} is not hex") from None
    message = signed_message(request_id, user_id, timestamp, body)
    from cryptography.exceptions import InvalidSignature

    keys = public_keys(jwks)
    if not keys:
        raise WebhookVerificationError("the JWKS holds no Ed25519 key")
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return
    raise WebhookVerificationError("no key of the JWKS verifies the signature")


def verify(
    body: bytes,
    headers: Mapping[str, str],
    jwks: Mapping[str, Any],
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """True when a key of ``jwks`` signed this call (raw body and headers) within ``tolerance`` seconds."""
    try:
        check(body, headers, jwks, now=now, tolerance=tolerance)
    except WebhookVerificationError:
        return False
    return True
