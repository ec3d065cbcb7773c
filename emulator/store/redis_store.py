"""The Redis store: one queue that several emulator processes serve.

Redis holds the truth: every record as JSON, one sorted set per namespace as the queue
(ordered by priority, then a global sequence), and a sorted set of leases on the requests
being run. Each process mirrors the records it has seen, kept fresh by a pub/sub channel
that every write goes through and read afresh on a status poll, so the scheduler's
synchronous reads still work. A process claims work with a Lua script that pops the queue
head and takes a lease in one step, so each request has exactly one runner; it renews the
leases of its runs, and any process puts a request whose lease expired back in the queue,
so a runner that dies mid-request does not strand it. A run that fails with a runner error
(the queue's retry) goes back in the queue the same way, for any process to claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from emulator.core.models import RequestRecord, State
from emulator.store import redis_scripts as scripts
from emulator.store.base import Runners, StoreError
from emulator.store.codec import decode, encode
from emulator.store.memory import MemoryStore

log = logging.getLogger("emulator.store")
T = TypeVar("T")

# What a call on a connection that went away can raise. redis-py raises AttributeError when
# another task tore the connection down while this one was still connecting on it.
_GONE = (RedisConnectionError, OSError, AttributeError)
_UNAVAILABLE = (RedisError, OSError, AttributeError)

# How often a process renews its leases, reaps expired ones and looks for work when nothing woke it.
TICK_SECONDS = 0.1
DEFAULT_LEASE_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class RedisAddress:
    """Where the server is and how this emulator uses it, from ``redis://host:port/db?lease=S&prefix=P``."""

    url: str
    lease_seconds: float
    prefix: str

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise StoreError(f"store {url!r} is not a redis://host:port/db URL")
        query = parse_qs(parts.query)
        try:
            lease = float(query.pop("lease", [str(DEFAULT_LEASE_SECONDS)])[0])
            port = parts.port
        except ValueError as exc:
            raise StoreError(f"store {url!r}: {exc}") from exc
        if not lease > 0:
            raise StoreError(f"store {url!r}: lease must be a positive number of seconds")
        prefix = query.pop("prefix", ["any-llm-emulator"])[0] + ":"
        if query:
            raise StoreError(f"store {url!r}: unknown option {sorted(query)[0]!r} (known: lease, prefix)")
        host = f"{parts.hostname}:{port or 6379}"
        return cls(urlunsplit((parts.scheme, host, parts.path, "", "")), lease, prefix)


class RedisStore(MemoryStore):
    """Records mirrored in memory, the truth and the queue in Redis; also the shared queue itself."""

    def __init__(self, url: str, *, retention_seconds: float = 3600.0, retention_count: int = 100_000) -> None:
        super().__init__(retention_seconds=retention_seconds, retention_count=retention_count)
        self.address = RedisAddress.parse(url)
        self.where = urlsplit(self.address.url).netloc
        _check_reachable(self.address.url, self.where)
        self.owner = uuid.uuid4().hex
        self.channel = self.address.prefix + "events"
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._runners: Runners | None = None
        self._pending: list[tuple[Any, ...]] = []
        self._queued = 0
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._kick: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._leases: dict[tuple[str, str], str] = {}
        self._positions: dict[tuple[str, str], int] = {}
        self._lengths: dict[str, int] = {}
        self._down: str | None = None
        # The data generation this process last saw in Redis: a new one means Redis lost its data.
        self._generation: bytes | str | None = None
        # Why the writer task stopped for good; every later write fails with it.
        self._dead: str | None = None

    def _key(self, kind: str, *parts: str) -> str:
        return self.address.prefix + kind + ":" + ":".join(parts)

    # -- the Store protocol ----------------------------------------------------------------

    def add(self, record: RequestRecord) -> None:
        super().add(record)
        self._put(("submit", record.namespace, record.id, int(record.priority), encode(record)))

    def save(self, record: RequestRecord, now: float) -> None:
        key = (record.namespace, record.id)
        if self.get(*key) is not None:
            lease = self._leases.pop(key, None) if record.done else None
            # Started (by a runner or by hand) or finished: no longer for anyone to claim.
            dequeue = record.state is not State.IN_QUEUE
            self._put(("put", record.namespace, record.id, record.done, dequeue, lease, encode(record)))
        super().save(record, now)

    def clear(self, namespace: str | None = None) -> None:
        super().clear(namespace)
        self._put(("clear", namespace))

    def durable(self) -> Awaitable[None] | None:
        if self._written >= self._queued and self._dead is None:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._dead is not None:
            future.set_exception(StoreError(self._dead))
        else:
            self._waiters.append((self._queued, future))
        return future

    def close(self) -> None:
        """The connection closes with the shared queue (``stop``), which drains the writes first."""

    def failure(self) -> str | None:
        return self._dead

    # -- the SharedQueue protocol ----------------------------------------------------------

    async def start(self, runners: Runners) -> None:
        self._runners = runners
        # A connection idle across a Redis restart is stale: the health check finds that out before using it.
        self._client = aioredis.Redis.from_url(
            self.address.url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=1
        )
        sources = {"submit": scripts.SUBMIT, "claim": scripts.CLAIM, "renew": scripts.RENEW}
        sources |= {"reap": scripts.REAP, "clear": scripts.CLEAR, "restore": scripts.RESTORE}
        sources |= {"requeue": scripts.REQUEUE}
        self._scripts = {name: self._client.register_script(source) for name, source in sources.items()}
        self._kick, self._wake = asyncio.Event(), asyncio.Event()
        if self._pending:
            self._kick.set()
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="redis-store-writer"),
            asyncio.create_task(self._tick_loop(), name="redis-store-runner"),
            asyncio.create_task(self._listen_loop(), name="redis-store-listener"),
        ]

    async def stop(self) -> None:
        # Writes first: a late write of a run's state must not take it out of the queue once re-queued.
        if self._pending and self._kick is not None:
            # Let the writer finish what is pending, for a bounded time: Redis may be gone.
            with contextlib.suppress(TimeoutError, StoreError):
                await asyncio.wait_for(asyncio.ensure_future(self._drained()), 5.0)
        if self._leases and self._client is not None:
            # Runs stopped with this process: expire their leases now, so another process takes them at once.
            with contextlib.suppress(RedisError, OSError):
                await self._client.zadd(self._key("leases"), dict.fromkeys(self._leases.values(), 0))
            self._leases.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _drained(self) -> None:
        pending = self.durable()
        if pending is not None:
            await pending

    def position(self, record: RequestRecord) -> int:
        return self._positions.get((record.namespace, record.id), 0)

    def queued(self, namespace: str) -> int:
        return self._lengths.get(namespace, 0)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def requeue(self, record: RequestRecord) -> None:
        lease = self._leases.pop((record.namespace, record.id), None)
        self._put(("requeue", record.namespace, record.id, int(record.priority), lease or ""))

    def refresh(self, namespace: str, request_id: str) -> Awaitable[None] | None:
        cached = self.get(namespace, request_id)
        if cached is not None and self._runners is not None and self._runners.is_local(cached):
            return None
        return self._refresh(namespace, request_id)

    async def _refresh(self, namespace: str, request_id: str) -> None:
        client = self._connected()

        async def read() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(self._key("req", namespace, request_id))
                pipe.zrank(self._key("queue", namespace), request_id)
                return await pipe.execute()

        try:
            body, rank = await self._retrying(read)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        if body is not None:
            self._mirror(decode(body))
        else:
            cached = self.get(namespace, request_id)
            if cached is not None and not cached.done:
                # Accepted, not finished, and gone from Redis (which lost its data): write it back.
                try:
                    await self._retrying(functools.partial(self._restore, [cached]))
                except _UNAVAILABLE as exc:
                    raise self._unavailable(exc) from exc
        if rank is not None:
            self._positions[(namespace, request_id)] = int(rank)

    # -- writes ----------------------------------------------------------------------------

    def _connected(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError(f"Redis store at {self.where} is not started")
        return self._client

    def _unavailable(self, exc: BaseException) -> StoreError:
        return StoreError(f"Redis at {self.where} is unavailable ({type(exc).__name__}: {exc})")

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Call once more on fresh connections if the first try finds the connection dead.

        Connections idle in the pool across a Redis restart are closed by then; dropping them all
        at the first such error keeps the next calls from tripping over them one by one. Both
        callers are idempotent (records are written whole, queue entries by id).
        """
        try:
            return await call()
        except _GONE:
            await self._connected().connection_pool.disconnect()
            return await call()

    def _put(self, op: tuple[Any, ...]) -> None:
        self._pending.append(op)
        self._queued += 1
        if self._kick is not None:
            self._kick.set()

    async def _write_loop(self) -> None:
        try:
            await self._write_batches()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Nothing more will be written: fail the waiting and later submits and the health check, loudly.
            self._dead = f"Redis store at {self.where}: the writer stopped ({type(exc).__name__}: {exc})"
            log.critical("%s", self._dead, exc_info=True)
            waiters, self._waiters = self._waiters, []
            for _, future in waiters:
                if not future.done():
                    future.set_exception(StoreError(self._dead))
            raise

    async def _write_batches(self) -> None:
        assert self._kick is not None
        while True:
            await self._kick.wait()
            self._kick.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            failure: StoreError | None = None
            try:
                await self._retrying(functools.partial(self._write, batch))
            except (RedisError, OSError) as exc:
                failure = self._unavailable(exc)
                log.error("%s", failure)
            except Exception as exc:
                # A batch Redis or its client refuses (not the connection): those writes fail, the writer goes on.
                failure = StoreError(f"Redis store at {self.where} cannot write: {type(exc).__name__}: {exc}")
                log.exception("%s", failure)
            self._written += len(batch)
            due = [w for w in self._waiters if w[0] <= self._written]
            self._waiters = [w for w in self._waiters if w[0] > self._written]
            for _, future in due:
                if future.done():
                    continue
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(failure)

    async def _write(self, batch: list[tuple[Any, ...]]) -> None:
        client = self._connected()
        submitted: list[tuple[str, str]] = []
        requeued = False
        async with client.pipeline(transaction=False) as pipe:
            for op in batch:
                kind = op[0]
                if kind == "submit":
                    _, ns, rid, priority, body = op
                    keys = [
                        self._key("req", ns, rid),
                        self._key("queue", ns),
                        self._key("seq"),
                        self._key("namespaces"),
                    ]
                    message = f"{self.owner}\nput\n{body}"
                    await self._scripts["submit"](keys, [body, priority, ns, rid, self.channel, message], client=pipe)
                    submitted.append((ns, rid))
                elif kind == "requeue":
                    _, ns, rid, priority, lease = op
                    keys = [self._key("queue", ns), self._key("leases"), self._key("seq"), self._key("namespaces")]
                    await self._scripts["requeue"](keys, [lease, priority, rid, ns], client=pipe)
                    requeued = True
                elif kind == "put":
                    _, ns, rid, done, dequeue, lease, body = op
                    pipe.set(self._key("req", ns, rid), body)
                    if done:
                        # Completed records expire in Redis as they do in each process's mirror.
                        pipe.expire(self._key("req", ns, rid), max(1, int(self.retention_seconds)))
                    if dequeue:
                        pipe.zrem(self._key("queue", ns), rid)
                    if lease is not None:
                        pipe.zrem(self._key("leases"), lease)
                    pipe.publish(self.channel, f"{self.owner}\nput\n{body}")
                else:
                    namespace = op[1]
                    if namespace is None:
                        patterns = [self.address.prefix + "*"]
                    else:
                        patterns = [self._key("req", namespace, "*"), self._key("queue", namespace)]
                    await self._scripts["clear"]([self._key("generation")], patterns, client=pipe)
                    pipe.publish(self.channel, f"{self.owner}\nclear\n{namespace or ''}")
            results = await pipe.execute()
        ranks = iter(r for op, r in zip(batch, _submit_results(batch, results), strict=True) if op[0] == "submit")
        for key, rank in zip(submitted, ranks, strict=True):
            if rank is not None:
                self._positions[key] = int(rank)
        if submitted or requeued:
            self.wake()  # new work: claim it now, not at the next tick

    # -- claims, leases, the mirror ---------------------------------------------------------

    async def _tick_loop(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self._tick()
                if self._down is not None:
                    log.warning("Redis at %s is back", self.where)
                    self._down = None
            except (RedisError, OSError) as exc:
                if self._down is None:
                    self._down = str(exc)
                    log.error("%s", self._unavailable(exc))
            except Exception:
                # One unreadable record must not stop the claims and lease renewals of every other.
                log.exception("Redis store at %s: a runner tick failed", self.where)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            self._wake.clear()

    async def _tick(self) -> None:
        client = self._connected()
        runners = self._runners
        assert runners is not None
        await self._check_generation(client)
        lease = self.address.lease_seconds
        held = list(self._leases.values())
        if held:
            await self._scripts["renew"]([self._key("leases")], [lease, *held])
        await self._scripts["reap"]([self._key("leases")], [self.address.prefix, scripts.COMPLETED])
        members = await client.smembers(self._key("namespaces"))
        namespaces = sorted(n.decode() if isinstance(n, bytes) else n for n in members)
        for namespace in namespaces:
            while runners.free_slots(namespace) > 0:
                keys = [self._key("queue", namespace), self._key("leases")]
                args = [lease, self.owner, namespace, self._key("req", namespace, ""), scripts.COMPLETED]
                claimed = await self._scripts["claim"](keys, args)
                if not claimed:
                    break
                member, body = claimed
                record = self._mirror(decode(body), claimed=True)
                self._leases[(record.namespace, record.id)] = member.decode()
                self._positions.pop((record.namespace, record.id), None)
                runners.run_claimed(record)
        if namespaces:
            async with client.pipeline(transaction=False) as pipe:
                for namespace in namespaces:
                    pipe.zcard(self._key("queue", namespace))
                lengths = await pipe.execute()
            self._lengths = {namespace: int(n) for namespace, n in zip(namespaces, lengths, strict=True)}

    async def _check_generation(self, client: aioredis.Redis) -> None:
        """Notice that Redis lost its data (a restart without persistence) and write back what this process holds.

        The first process to find the generation key missing sets a new one; every process
        that sees a generation other than the one it knew writes its records back, so a request
        any process still holds is not lost and all processes agree again.
        """
        key = self._key("generation")
        seen = await client.get(key)
        if seen is None:
            await client.set(key, uuid.uuid4().hex, nx=True)
            seen = await client.get(key)
        if seen is None or seen == self._generation:
            return
        first, self._generation = self._generation is None, seen
        held = sorted(MemoryStore.records(self), key=lambda r: (r.seq, r.submitted_at))
        if not held:
            return
        written = await self._restore(held)
        if not first:
            log.warning(
                "Redis at %s lost its data: wrote back %d of the %d requests this process holds",
                self.where,
                written,
                len(held),
            )

    async def _restore(self, records: list[RequestRecord]) -> int:
        """Write records back where Redis has no newer copy; mirror the copies Redis keeps instead."""
        client = self._connected()
        runners = self._runners
        async with client.pipeline(transaction=False) as pipe:
            for record in records:
                ns, rid = record.namespace, record.id
                body = encode(record)
                local = runners is not None and runners.is_local(record)
                lease = self._leases.get((ns, rid), "") if local else ""
                queued = record.state is State.IN_QUEUE and not local
                keys = [
                    self._key("req", ns, rid),
                    self._key("queue", ns),
                    self._key("seq"),
                    self._key("namespaces"),
                    self._key("leases"),
                ]
                args = [
                    body,
                    record.version,
                    int(record.priority),
                    ns,
                    rid,
                    "1" if queued else "0",
                    "1" if record.done else "0",
                    max(1, int(self.retention_seconds)),
                    self.channel,
                    f"{self.owner}\nput\n{body}",
                    lease,
                    self.address.lease_seconds,
                ]
                await self._scripts["restore"](keys, args, client=pipe)
            results = await pipe.execute()
        written = 0
        for kept in results:
            if kept is None:
                written += 1
            else:
                self._mirror(decode(kept))
        self.wake()
        return written

    async def _listen_loop(self) -> None:
        while True:
            try:
                async with self._connected().pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            try:
                                self._heard(message["data"])
                            except Exception:
                                log.exception("Redis store at %s: an event could not be applied", self.where)
            except (RedisError, OSError):
                # Gone with the server: the runner loop reports it; listen again once it is back.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.Event().wait(), TICK_SECONDS)

    def _heard(self, data: bytes) -> None:
        origin, kind, rest = data.decode().split("\n", 2)
        if origin == self.owner:
            return
        if kind == "put":
            record = self._mirror(decode(rest))
            if record.state is State.IN_QUEUE:
                self.wake()  # another process queued work: a free runner here may take it
        elif kind == "clear":
            MemoryStore.clear(self, rest or None)

    def _mirror(self, fresh: RequestRecord, *, claimed: bool = False) -> RequestRecord:
        """Bring this process's copy of a record up to date, in place, so holders of it see the change."""
        key = (fresh.namespace, fresh.id)
        record = self.get(*key)
        runners = self._runners
        local = record is not None and runners is not None and runners.is_local(record)
        if record is not None and local and not claimed and not fresh.done:
            return record  # this process runs it: its own copy is the newer one
        if record is None:
            record = fresh
            MemoryStore.add(self, record)
        else:
            for item in dataclasses.fields(RequestRecord):
                setattr(record, item.name, getattr(fresh, item.name))
        if record.state is not State.IN_QUEUE:
            self._positions.pop(key, None)
        if record.done:
            MemoryStore.save(self, record, time.time())
        if runners is not None and not claimed:
            runners.remote_changed(record)
        return record


def _submit_results(batch: list[tuple[Any, ...]], results: list[Any]) -> list[Any]:
    """Pair each op with its submit script's answer (the rank), given the pipeline's flat results."""
    paired: list[Any] = []
    index = 0
    for op in batch:
        kind = op[0]
        if kind == "submit":
            paired.append(results[index])
            index += 1
        elif kind == "requeue":
            paired.append(None)
            index += 1
        elif kind == "put":
            paired.append(None)
            index += 2 + bool(op[3]) + bool(op[4]) + (op[5] is not None)
        else:
            paired.append(None)
            index += 2
    return paired


def _check_reachable(url: str, where: str) -> None:
    """Fail at start, with one clear line, when the server cannot be reached."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise StoreError(f"cannot reach Redis at {where} ({exc}); is redis-server running?") from exc
    finally:
        client.close()
