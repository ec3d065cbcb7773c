"""Short-lived tokens, as ``POST rest.fal.ai/tokens/`` hands them out for client-side calls.

A browser must not hold a fal key, so the clients trade the key for a token scoped to a
few apps (``allowed_apps``: app aliases such as ``any-llm``) that expires after
``token_expiration`` seconds, and send it as ``?fal_jwt_token=`` (client-mode streaming,
realtime) or ``Authorization: Bearer``. fal's tokens are JWTs; these are too (HS256, signed
with a secret of this process), so a token is only good at the emulator that issued it.
Time is the emulator's clock: under a manual clock tokens expire when it is advanced.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from emulator.core.clock import Clock

ISSUER = "any-llm-emulator"
# fal's clients ask for 120 seconds; a day is far beyond any use and keeps tokens short-lived.
MAX_SECONDS = 86_400
_HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenError(ValueError):
    """A token that cannot be used here; the message says why (it becomes the 401 detail)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: calls to these apps, on behalf of this namespace, until then."""

    namespace: str
    apps: tuple[str, ...]
    expires_at: float


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Tokens:
    """Issues tokens and checks them, against one secret and one clock."""

    def __init__(self, clock: Clock, secret: bytes) -> None:
        self.clock = clock
        self._secret = secret

    def issue(self, namespace: str, apps: list[str], seconds: int) -> str:
        """A token for ``apps`` on behalf of ``namespace``, valid for ``seconds``."""
        claims = {
            "iss": ISSUER,
            "sub": namespace,
            "allowed_apps": apps,
            "exp": int(self.clock.now()) + seconds,
        }
        signing_input = _encode(json.dumps(_HEADER).encode()) + "." + _encode(json.dumps(claims).encode())
        return signing_input + "." + _encode(self._sign(signing_input))

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest()

    @staticmethod
    def claims_of(token: str) -> dict[str, Any] | None:
        """The claims of a token that says this emulator issued it (not yet verified); None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            claims = json.loads(_decode(parts[1]))
        except (ValueError, binascii.Error):
            return None
        return claims if isinstance(claims, dict) and claims.get("iss") == ISSUER else None

    def check(self, token: str, app: str | None) -> Grant:
        """The grant of a token valid now for ``app`` (an app alias); TokenError otherwise."""
        claims = self.claims_of(token)
        signing_input, _, signature = token.rpartition(".")
        try:
            valid = claims is not None and hmac.compare_digest(_decode(signature), self._sign(signing_input))
        except (ValueError, binascii.Error):
            valid = False
        if not valid or claims is None:
            raise TokenError("Invalid token: it was not issued by this emulator's /tokens/ or was altered")
        grant = Grant(str(claims.get("sub")), tuple(claims.get("allowed_apps") or ()), float(claims.get("exp", 0)))
        if self.clock.now() >= grant.expires_at:
            raise TokenError("Token expired: ask /tokens/ for a new one")
        if app is None or app not in grant.apps:
            allowed = ", ".join(grant.apps) or "no app"
            raise TokenError(f"This token is valid for {allowed}, not for {app or 'this call'}")
        return grant


def token_request(data: Any) -> tuple[list[str], int, list[dict[str, Any]]]:
    """``allowed_apps`` and ``token_expiration`` from a /tokens/ body, and FastAPI-style errors."""
    if data is None:
        return [], 0, [{"loc": ["body"], "msg": "Field required", "type": "missing", "input": None}]
    if not isinstance(data, dict):
        message = "Input should be a valid dictionary or object to extract fields from"
        return [], 0, [{"loc": ["body"], "msg": message, "type": "model_attributes_type", "input": data}]
    errors: list[dict[str, Any]] = []
    apps = data.get("allowed_apps")
    if apps is None:
        errors.append({"loc": ["body", "allowed_apps"], "msg": "Field required", "type": "missing", "input": data})
    elif not isinstance(apps, list) or not apps or not all(isinstance(app, str) and app for app in apps):
        errors.append(
            {
                "loc": ["body", "allowed_apps"],
                "msg": "Input should be a non-empty list of app aliases (strings), e.g. ['any-llm']",
                "type": "value_error",
                "input": apps,
            }
        )
    seconds = data.get("token_expiration", 120)
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        errors.append(
            {
                "loc": ["body", "token_expiration"],
                "msg": "Input should be a valid integer",
                "type": "int_type",
                "input": seconds,
            }
        )
    elif not 1 <= seconds <= MAX_SECONDS:
        word, bound, kind = (
            ("greater", 1, "greater_than_equal") if seconds < 1 else ("less", MAX_SECONDS, "less_than_equal")
        )
        errors.append(
            {
                "loc": ["body", "token_expiration"],
                "msg": f"Input should be {word} than or equal to {bound}",
                "type": kind,
                "input": seconds,
            }
        )
    return (apps if isinstance(apps, list) else []), (seconds if isinstance(seconds, int) else 0), errors
