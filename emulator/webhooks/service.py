"""Webhooks for one emulator: completed requests in, signed deliveries out, test modes chosen here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.core.clock import Clock
from emulator.core.models import JSON, RequestRecord
from emulator.webhooks.delivery import Dispatcher
from emulator.webhooks.keys import KEY_FILE, KeyRing, SigningKey
from emulator.webhooks.model import Attempt, Delivery, Mode, RetryPolicy
from emulator.webhooks.payload import webhook_body

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("emulator.webhooks")


class Webhooks:
    """The key ring, the dispatcher and the misbehaviour modes, behind one ``on_complete`` callback."""

    def __init__(self, keys: KeyRing, dispatcher: Dispatcher) -> None:
        self.keys = keys
        self.dispatcher = dispatcher
        self.mode = Mode.NORMAL

    @classmethod
    def build(
        cls,
        data_dir: Path,
        *,
        clock: Clock,
        senders: int = 16,
        time_scale: float = 1.0,
        http_client: httpx.AsyncClient | None = None,
        policy: RetryPolicy | None = None,
    ) -> Webhooks:
        keys = KeyRing(data_dir / KEY_FILE)
        dispatcher = Dispatcher(
            clock=clock, keys=keys, policy=policy, senders=senders, time_scale=time_scale, http_client=http_client
        )
        return cls(keys, dispatcher)

    async def start(self) -> None:
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()

    def on_complete(self, record: RequestRecord) -> None:
        """The scheduler's completion callback: queue the webhook of a request that asked for one."""
        if record.webhook_url is None:
            return
        # A request's own mode (the x-emulator-webhook-mode header at submit) wins over the global one.
        mode = self.mode if record.webhook_mode is None else Mode(record.webhook_mode)
        try:
            delivery = Delivery(record.id, record.namespace, record.webhook_url, webhook_body(record), mode)
            self.dispatcher.submit(delivery)
        except Exception:
            # The scheduler calls this inside its own transition: a webhook bug must never stall the queue.
            log.exception("could not queue the webhook of request %s", record.id)

    def reset(self, namespace: str | None = None) -> None:
        """Forget attempts and unsent webhooks (all, or one API key's); a full reset also restores mode normal."""
        self.dispatcher.clear(namespace)
        if namespace is None:
            self.mode = Mode.NORMAL

    def configure(self, *, mode: Mode | None = None, time_scale: float | None = None) -> None:
        if mode is not None:
            self.mode = mode
        if time_scale is not None:
            self.dispatcher.time_scale = time_scale

    def config(self) -> JSON:
        policy = self.dispatcher.policy
        return {
            "mode": self.mode.value,
            "time_scale": self.dispatcher.time_scale,
            "senders": self.dispatcher.senders,
            "attempts": policy.attempts,
            "delays": list(policy.delays),
            "timeout": policy.timeout,
            "max_pending": self.dispatcher.max_pending,
            "refused_when_full": self.dispatcher.refused,
            "modes": [mode.value for mode in Mode],
        }

    def attempts(self, request_id: str | None = None) -> list[Attempt]:
        return self.dispatcher.attempts(request_id)

    def jwks(self) -> JSON:
        return self.keys.jwks()

    def rotate(self) -> SigningKey:
        return self.keys.rotate()
