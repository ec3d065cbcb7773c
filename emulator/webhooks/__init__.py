"""Webhooks as fal sends them: the fal payload, Ed25519 signatures, retries, test modes.

Receivers verify a call with ``verify(body, headers, jwks)`` (or ``check`` for the reason).
"""

from emulator.webhooks.delivery import Dispatcher
from emulator.webhooks.keys import KeyFileError, KeyRing, SigningKey
from emulator.webhooks.model import Attempt, Delivery, Mode, Outcome, RetryPolicy
from emulator.webhooks.payload import webhook_body, webhook_payload
from emulator.webhooks.service import Webhooks
from emulator.webhooks.signing import WebhookVerificationError, check, signed_message, verify

__all__ = [
    "Attempt",
    "Delivery",
    "Dispatcher",
    "KeyFileError",
    "KeyRing",
    "Mode",
    "Outcome",
    "RetryPolicy",
    "SigningKey",
    "WebhookVerificationError",
    "Webhooks",
    "check",
    "signed_message",
    "verify",
    "webhook_body",
    "webhook_payload",
]
