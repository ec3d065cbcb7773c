"""Delivery: a bounded pool of senders, fal's retry schedule on the injected clock, every attempt kept.

Completion only queues a delivery, so the request queue never waits on a receiver. A pool
of sender tasks takes deliveries off that queue; a failed attempt schedules its retry with
``clock.call_at``, so waiting retries hold no sender and a manual clock decides when they fire.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emulator.core.clock import Clock, TimerHandle
from emulator.webhooks.keys import KeyFileError, KeyRing
from emulator.webhooks.model import HOLD_SECONDS, STALE_BY, Attempt, Delivery, Mode, Outcome, RetryPolicy
from emulator.webhooks.signing import SIGNATURE, signature_headers

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("emulator.webhooks")

# Deliveries unfinished at once (queued, waiting for a retry, held or being sent), about 3 KB
# each: past this a new webhook is given up at once, recorded and counted, so a receiver that
# never answers cannot make the emulator grow without end. Submits are not refused for it.
MAX_PENDING = 10_000


class _TimedOut(Exception):
    pass


class Dispatcher:
    """Sends deliveries through a bounded pool, retries on schedule, records every attempt."""

    def __init__(
        self,
        *,
        clock: Clock,
        keys: KeyRing,
        policy: RetryPolicy | None = None,
        senders: int = 16,
        time_scale: float = 1.0,
        http_client: httpx.AsyncClient | None = None,
        log_size: int = 10_000,
        timer: Callable[[], float] = time.perf_counter,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if senders < 1:
            raise ValueError("senders must be at least 1")
        self.max_pending = max_pending
        # Webhooks given up unsent because ``max_pending`` were already waiting.
        self.refused = 0
        self.clock = clock
        self.keys = keys
        self.policy = policy or RetryPolicy()
        self.senders = senders
        self.time_scale = time_scale
        self.sending = 0
        self._injected = http_client
        self._own_clients: list[httpx.AsyncClient] = []
        self._ssl: ssl.SSLContext | None = None
        self._timer = timer
        self._log: deque[Attempt] = deque(maxlen=log_size)
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._waiting: dict[int, tuple[Delivery, TimerHandle]] = {}
        self._held: dict[tuple[str, str], tuple[Delivery, TimerHandle]] = {}
        self._watchers: list[asyncio.Future[None]] = []
        self._seq = itertools.count(1)
        # Told when a request's webhook is delivered or given up on, so a durable store stops resending it.
        self.on_settled: list[Callable[[Delivery], None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._workers)

    async def start(self) -> None:
        """Start the senders; deliveries queued before now go out first. Idempotent."""
        if self._workers:
            return
        # A fresh queue binds to this loop; an app restarted on another loop keeps its backlog.
        old, self._queue = self._queue, asyncio.Queue()
        while not old.empty():
            self._queue.put_nowait(old.get_nowait())
        self._workers = [asyncio.create_task(self._work(), name=f"webhook-sender-{n}") for n in range(self.senders)]

    async def stop(self) -> None:
        """Stop the senders; webhooks queued, held or waiting for a retry are dropped."""
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.wait(workers)
        for _, handle in [*self._waiting.values(), *self._held.values()]:
            handle.cancel()
        self._waiting.clear()
        self._held.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        clients, self._own_clients = self._own_clients, []
        for client in clients:
            await client.aclose()

    # -- commands --------------------------------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery now, or hold it for out_of_order; never blocks; gives it up when too many wait."""
        delivery.seq = next(self._seq)
        if self.pending() >= self.max_pending:
            self._refuse(delivery)
            return
        key = (delivery.user_id, delivery.url)
        held = self._held.pop(key, None)
        if held is not None:
            # A later delivery overtakes the held one: it goes first, the held one right after.
            held[1].cancel()
            delivery.release.append(held[0])
            self._enqueue(delivery)
        elif delivery.mode is Mode.OUT_OF_ORDER and delivery.copy == 1:
            when = self.clock.now() + HOLD_SECONDS * self.time_scale
            self._held[key] = (delivery, self.clock.call_at(when, lambda: self._release_held(key)))
            self._notify()
        else:
            self._enqueue(delivery)

    def flush(self, request_id: str | None = None) -> int:
        """Make waiting retries and held deliveries due now; returns how many were released."""
        released = 0
        for seq, (delivery, handle) in list(self._waiting.items()):
            if request_id is None or delivery.request_id == request_id:
                handle.cancel()
                del self._waiting[seq]
                self._enqueue(delivery)
                released += 1
        for key, (delivery, _) in list(self._held.items()):
            if request_id is None or delivery.request_id == request_id:
                self._release_held(key)
                released += 1
        return released

    def clear(self, user_id: str | None = None) -> None:
        """Forget recorded attempts and drop unsent deliveries (all, or one user's); sends in flight finish."""

        def kept(delivery: Delivery | Attempt) -> bool:
            return user_id is not None and delivery.user_id != user_id

        self._log = deque((a for a in self._log if kept(a)), maxlen=self._log.maxlen)
        for seq, (delivery, handle) in list(self._waiting.items()):
            if not kept(delivery):
                handle.cancel()
                del self._waiting[seq]
        for key, (delivery, handle) in list(self._held.items()):
            if not kept(delivery):
                handle.cancel()
                del self._held[key]
        queued = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        for delivery in queued:
            if kept(delivery):
                self._queue.put_nowait(delivery)
        self._notify()

    # -- queries ---------------------------------------------------------------------------

    def attempts(self, request_id: str | None = None) -> list[Attempt]:
        return [a for a in self._log if request_id is None or a.request_id == request_id]

    def pending(self) -> int:
        """Deliveries not finished: queued, waiting for a retry, held, or being sent."""
        return self._queue.qsize() + len(self._waiting) + len(self._held) + self.sending

    def changed(self) -> asyncio.Future[None]:
        """A future done at the next change: an attempt started or recorded, a delivery queued or held."""
        # A plain future, registered before the caller awaits it, so no change slips in between.
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append(future)
        return future

    # -- internals -------------------------------------------------------------------------

    def _notify(self) -> None:
        watchers, self._watchers = self._watchers, []
        for future in watchers:
            if not future.done():
                future.set_result(None)

    def _enqueue(self, delivery: Delivery) -> None:
        self._queue.put_nowait(delivery)
        self._notify()

    def _release_held(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            held[1].cancel()
            self._enqueue(held[0])

    def _new_client(self) -> httpx.AsyncClient:
        """A sender's own client, made on its first delivery, so an app that sends none pays nothing."""
        import httpx  # here, not at the top: importing it costs serving ~60 ms at start-up

        if self._ssl is None:
            # One context for all senders (loading the CA bundle is the slow part); honours SSL_CERT_FILE.
            self._ssl = httpx.create_ssl_context()
        # One connection per client: a shared pool's bookkeeping grows with its connections and halves
        # throughput at 16 senders. trust_env off: a proxy must not capture loopback receivers.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        client = httpx.AsyncClient(trust_env=False, verify=self._ssl, limits=limits)
        self._own_clients.append(client)
        return client

    async def _work(self) -> None:
        client = self._injected
        while True:
            delivery = await self._queue.get()
            if client is None:
                client = self._new_client()
            try:
                await self._attempt(client, delivery)
            except asyncio.CancelledError:
                raise
            except Exception:  # a sender must outlive any one bad delivery
                log.exception("webhook delivery for request %s failed unexpectedly", delivery.request_id)

    def _headers(self, delivery: Delivery, now: float) -> dict[str, str]:
        timestamp = int(now - STALE_BY) if delivery.mode is Mode.STALE_TIMESTAMP else int(now)
        key = self.keys.active().private
        headers = {"Content-Type": "application/json"}
        headers |= signature_headers(key, delivery.request_id, delivery.user_id, timestamp, delivery.body)
        if delivery.mode is Mode.BAD_SIGNATURE:
            # Still 64 well-formed bytes, so only a real Ed25519 check catches it.
            signature = bytearray.fromhex(headers[SIGNATURE])
            signature[0] ^= 0x01
            headers[SIGNATURE] = signature.hex()
        return headers

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        import httpx  # already loaded by the client's maker: a dictionary look-up

        delivery.attempts += 1
        at = self.clock.now()
        status_code: int | None = None
        error: str | None = None
        sent_headers: dict[str, str] = {}
        started = self._timer()
        self.sending += 1
        try:
            # No httpx timeout (5 s by default): the clock's per-attempt timeout is the only one.
            request = client.build_request(
                "POST", delivery.url, content=delivery.body, headers=self._headers(delivery, at), timeout=None
            )
            sent_headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.raw}
            self._notify()
            response = await self._send(client, request, self.policy.timeout_for(self.time_scale))
            status_code = response.status_code
        except _TimedOut:
            error = f"timed out after {self.policy.timeout_for(self.time_scale):g} s"
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError, KeyFileError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            self.sending -= 1
        latency = self._timer() - started
        self._record(delivery, at, status_code, error, latency, sent_headers)

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request, limit: float) -> httpx.Response:
        """Send with the per-attempt timeout measured on the injected clock."""
        expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def expire() -> None:
            if not expired.done():
                expired.set_result(None)

        handle = self.clock.call_at(self.clock.now() + limit, expire)
        send = asyncio.ensure_future(client.send(request, follow_redirects=False))
        try:
            either: list[asyncio.Future[Any]] = [send, expired]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            handle.cancel()
            expired.cancel()
            if not send.done():
                send.cancel()
                await asyncio.wait({send})
            if not send.cancelled():
                # Retrieve it here: a send that fails while the senders stop is no unhandled error.
                send.exception()
        if send.cancelled():
            raise _TimedOut
        return send.result()

    def _record(
        self,
        delivery: Delivery,
        at: float,
        status_code: int | None,
        error: str | None,
        latency: float,
        headers: dict[str, str],
    ) -> None:
        next_at: float | None = None
        if status_code is not None and 200 <= status_code < 300:
            outcome = Outcome.DELIVERED
        elif status_code is not None and 300 <= status_code < 400:
            outcome = Outcome.GAVE_UP  # fal treats a redirect as a permanent failure
            error = error or f"redirect ({status_code}) is a permanent failure"
        elif delivery.attempts >= self.policy.attempts:
            outcome = Outcome.GAVE_UP
        else:
            outcome = Outcome.RETRYING
            next_at = self.clock.now() + self.policy.delays[delivery.attempts - 1] * self.time_scale
            self._schedule(delivery, next_at)
        self._log.append(
            Attempt(
                request_id=delivery.request_id,
                user_id=delivery.user_id,
                url=delivery.url,
                attempt=delivery.attempts,
                copy=delivery.copy,
                mode=delivery.mode,
                at=at,
                status_code=status_code,
                error=error,
                latency=latency,
                body=delivery.body.decode(),
                headers=headers,
                outcome=outcome,
                next_attempt_at=next_at,
            )
        )
        if outcome is not Outcome.RETRYING and delivery.copy == 1:
            for listener in self.on_settled:
                listener(delivery)
        if delivery.attempts == 1:
            self._release(delivery.release)
        if outcome is Outcome.DELIVERED and delivery.mode is Mode.DUPLICATE and delivery.copy == 1:
            self.submit(Delivery(delivery.request_id, delivery.user_id, delivery.url, delivery.body, delivery.mode, 2))
        self._notify()

    def _refuse(self, delivery: Delivery) -> None:
        """Give a delivery up unsent: recorded as an attempt, settled, counted, logged (the first and every 1000th)."""
        self.refused += 1
        error = f"not sent: {self.max_pending} webhooks already pending (the limit)"
        if self.refused % 1000 == 1:
            log.warning(
                "webhook of request %s given up unsent: %d webhooks pending, the limit (%d given up so far)",
                delivery.request_id,
                self.pending(),
                self.refused,
            )
        self._log.append(
            Attempt(
                request_id=delivery.request_id,
                user_id=delivery.user_id,
                url=delivery.url,
                attempt=0,
                copy=delivery.copy,
                mode=delivery.mode,
                at=self.clock.now(),
                status_code=None,
                error=error,
                latency=0.0,
                body=delivery.body.decode(errors="replace"),
                headers={},
                outcome=Outcome.GAVE_UP,
                next_attempt_at=None,
            )
        )
        if delivery.copy == 1:
            for listener in self.on_settled:
                listener(delivery)
        self._release(delivery.release)
        self._notify()

    def _release(self, held: list[Delivery]) -> None:
        while held:
            self._enqueue(held.pop(0))

    def _schedule(self, delivery: Delivery, when: float) -> None:
        def due() -> None:
            if self._waiting.pop(delivery.seq, None) is not None:
                self._enqueue(delivery)

        self._waiting[delivery.seq] = (delivery, self.clock.call_at(when, due))
