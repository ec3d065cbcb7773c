"""The SQLite store: records in memory for reads, every change written through to a WAL database.

Writes never run on the event loop. ``save`` snapshots the record as JSON and hands it to a
writer thread, which commits whatever has piled up in one transaction (group commit) and
then resolves the futures ``durable`` handed out, so submit can answer only once its record
is on disk while a burst of transitions costs one fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Awaitable
from pathlib import Path

from emulator.core.models import RequestRecord
from emulator.store.base import StoreError
from emulator.store.codec import decode, encode
from emulator.store.memory import MemoryStore

log = logging.getLogger("emulator.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    namespace TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE TABLE IF NOT EXISTS webhooks_settled (
    namespace TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (namespace, id)
);
"""

# ("put", namespace, id, seq, body) | ("delete", namespace, id) | ("clear", namespace or None)
# | ("settled", namespace, id)
_Op = tuple[str | int | None, ...]


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database in WAL mode; StoreError with the reason if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"SQLite store {path}: cannot switch to WAL mode (got {mode!r})")
        # FULL: a commit is on disk before submit answers, even across a power cut, not only a kill.
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot use SQLite store {path}: {exc}") from exc
    return db


class SqliteStore(MemoryStore):
    """A MemoryStore whose every change is also committed, off the event loop, to a SQLite file."""

    def __init__(self, path: Path, *, retention_seconds: float = 3600.0, retention_count: int = 100_000) -> None:
        super().__init__(retention_seconds=retention_seconds, retention_count=retention_count)
        self.path = path
        self._db = connect(path)
        self._unsent: list[RequestRecord] = []
        self._load()
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._written = 0
        self._failure: str | None = None
        # Why the writer thread stopped for good; set once, and every later write fails with it.
        self._dead: str | None = None
        # Why the last record handed to ``save`` could not be encoded: its submit answers 503.
        self._refused: str | None = None
        self._waiters: list[tuple[int, asyncio.Future[None], asyncio.AbstractEventLoop]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="sqlite-store-writer", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            rows = self._db.execute("SELECT body FROM requests ORDER BY seq").fetchall()
            settled = set(self._db.execute("SELECT namespace, id FROM webhooks_settled").fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read SQLite store {self.path}: {exc}") from exc
        finished = []
        for (body,) in rows:
            record = decode(body)
            MemoryStore.add(self, record)
            if record.done:
                finished.append(record)
        finished.sort(key=lambda r: r.completed_at or 0.0)
        for record in finished:
            self._settle(record, 0.0)  # into the eviction queue, in completion order
            if record.webhook_url is not None and (record.namespace, record.id) not in settled:
                self._unsent.append(record)

    # -- the Store protocol ----------------------------------------------------------------

    def save(self, record: RequestRecord, now: float) -> None:
        if self.get(record.namespace, record.id) is not None:
            try:
                body = encode(record)
            except (TypeError, ValueError) as exc:
                # Never raised into the scheduler's transition: the submit waiting on durable() hears it.
                self._refused = f"SQLite store {self.path} cannot keep request {record.id}: {exc}"
                log.error("%s", self._refused)
            else:
                self._put(("put", record.namespace, record.id, record.seq, body))
        super().save(record, now)

    def _forget(self, key: tuple[str, str]) -> None:
        super()._forget(key)
        self._put(("delete", *key))

    def clear(self, namespace: str | None = None) -> None:
        super().clear(namespace)
        self._put(("clear", namespace))

    def failure(self) -> str | None:
        return self._dead

    def durable(self) -> Awaitable[None] | None:
        with self._lock:
            target = self._queued
            refused, self._refused = self._refused, None
            # An earlier batch's failure is not this one's: with writes still pending, wait for them.
            failure = self._dead or refused or (self._failure if self._written >= target else None)
            if self._written >= target and failure is None:
                return None
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            if failure is not None:
                future.set_exception(StoreError(failure))
            else:
                self._waiters.append((target, future, loop))
            return future

    def webhook_settled(self, namespace: str, request_id: str) -> None:
        self._put(("settled", namespace, request_id))

    def unsent_webhooks(self) -> list[RequestRecord]:
        unsent, self._unsent = self._unsent, []
        return unsent

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ops.put(None)
        self._thread.join()
        self._db.close()

    # -- the writer thread -----------------------------------------------------------------

    def _put(self, op: _Op) -> None:
        if self._closed:
            return
        with self._lock:
            self._queued += 1
        self._ops.put(op)

    def _write_loop(self) -> None:
        try:
            self._write_batches()
        except BaseException as exc:
            # Nothing more will be written: say so loudly, and fail every waiting and later submit
            # (durable) and the health check (failure) rather than let them wait for ever.
            reason = f"SQLite store {self.path}: the writer stopped ({type(exc).__name__}: {exc})"
            log.critical("%s", reason, exc_info=True)
            with self._lock:
                self._dead = reason
                waiters, self._waiters = self._waiters, []
            for _, future, loop in waiters:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, future, reason)

    def _write_batches(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._ops.get()]
            while True:
                try:
                    batch.append(self._ops.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            ops = [op for op in batch if op is not None]
            failure = None
            try:
                self._commit(ops)
            except sqlite3.Error as exc:
                failure = f"SQLite store {self.path} cannot write: {exc}"
                log.error("%s", failure)
            except Exception as exc:
                # Not the disk but one operation SQLite refuses: the batch was rolled back, so
                # commit it again one by one and leave out only what still fails.
                log.warning("SQLite store %s: a batch failed (%r); writing it one by one", self.path, exc)
                failure = self._commit_each(ops)
            self._written_up_to(len(ops), failure)

    def _commit_each(self, ops: list[_Op]) -> str | None:
        failure = None
        for op in ops:
            try:
                self._commit([op])
            except Exception as exc:
                failure = f"SQLite store {self.path} cannot write {op[0]} of {op[1:3]}: {exc!r}"
                log.error("%s", failure)
        return failure

    def _commit(self, ops: list[_Op]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            for op in ops:
                kind = op[0]
                if kind == "put":
                    db.execute("INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?)", op[1:])
                elif kind == "delete":
                    db.execute("DELETE FROM requests WHERE namespace = ? AND id = ?", op[1:])
                    db.execute("DELETE FROM webhooks_settled WHERE namespace = ? AND id = ?", op[1:])
                elif kind == "settled":
                    db.execute("INSERT OR IGNORE INTO webhooks_settled VALUES (?, ?)", op[1:])
                elif op[1] is None:
                    db.execute("DELETE FROM requests")
                    db.execute("DELETE FROM webhooks_settled")
                else:
                    db.execute("DELETE FROM requests WHERE namespace = ?", op[1:])
                    db.execute("DELETE FROM webhooks_settled WHERE namespace = ?", op[1:])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _written_up_to(self, count: int, failure: str | None) -> None:
        with self._lock:
            self._written += count
            self._failure = failure
            due = [w for w in self._waiters if w[0] <= self._written]
            self._waiters = [w for w in self._waiters if w[0] > self._written]
        for _, future, loop in due:
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, failure)


def _settle(future: asyncio.Future[None], failure: str | None) -> None:
    if future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(StoreError(failure))
