"""The emulator as one object: the core services wired together, with no HTTP in sight."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from emulator.config import Settings
from emulator.core.clock import Clock, ManualClock, SystemClock
from emulator.core.events import Hub
from emulator.core.faults import Faults
from emulator.core.fixture_files import load_fixtures
from emulator.core.ids import IdFactory
from emulator.core.images import ImageUrlCheck
from emulator.core.journal import Journal
from emulator.core.lifecycle import PROFILES
from emulator.core.outputs import Outputs
from emulator.core.scheduler import Scheduler
from emulator.core.spec import Spec
from emulator.core.storage import Storage
from emulator.store import Store, open_store
from emulator.webhooks import Webhooks


@dataclass
class Emulator:
    """Settings, spec, clock, store, outputs, scheduler and uploaded files of one running emulator."""

    settings: Settings
    spec: Spec
    clock: Clock
    store: Store
    outputs: Outputs
    scheduler: Scheduler
    faults: Faults
    journal: Journal
    webhooks: Webhooks
    files: Storage
    events: Hub

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        spec: Spec | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> Emulator:
        """Wire the core from settings; every piece can be injected instead. Raises on bad fixtures."""
        if clock is None:
            clock = ManualClock() if settings.clock == "manual" else SystemClock()
        if store is None:
            store = open_store(
                settings.store,
                retention_seconds=settings.retention_seconds,
                retention_count=settings.retention_count,
            )
        spec = spec or Spec.load(settings.spec_path)
        # Uploaded files (the storage surfaces) live in the data directory; nothing is written until an upload.
        files = Storage(
            settings.resolved_data_dir(os.environ) / "storage", clock=clock, max_bytes=settings.max_upload_bytes
        )
        outputs = Outputs(
            load_fixtures(settings.fixtures), seed=settings.seed, checks=[ImageUrlCheck(files, [settings.host])]
        )
        faults = Faults(settings.seed)
        scheduler = Scheduler(
            clock=clock,
            store=store,
            outputs=outputs,
            profile=PROFILES[settings.profile],
            runners=settings.runners,
            ids=IdFactory(clock, settings.seed),
            faults=faults,
        )
        journal = Journal(settings.journal_size, settings.journal_body_bytes)
        webhooks = Webhooks.build(
            settings.resolved_data_dir(os.environ),
            clock=clock,
            senders=settings.webhook_senders,
            time_scale=settings.webhook_time_scale,
            http_client=http_client,
        )
        scheduler.shared = store.shared()
        scheduler.on_complete.append(webhooks.on_complete)
        webhooks.dispatcher.on_settled.append(
            lambda delivery: store.webhook_settled(delivery.user_id, delivery.request_id)
        )
        events = Hub()
        scheduler.on_change.append(events.publish)
        return cls(settings, spec, clock, store, outputs, scheduler, faults, journal, webhooks, files, events)

    async def start(self) -> None:
        """Start the senders and pick up where a durable store's last run stopped."""
        await self.webhooks.start()
        shared = self.store.shared()
        if shared is not None:
            # The queue lives in the shared store; leases there hand back what a dead process was running.
            await shared.start(self.scheduler)
            return
        self.scheduler.restore()
        for record in self.store.unsent_webhooks():
            self.webhooks.on_complete(record)

    async def stop(self) -> None:
        """Stop timers and senders, then write out and close the store."""
        self.scheduler.close()
        shared = self.store.shared()
        if shared is not None:
            await shared.stop()
        await self.webhooks.stop()
        self.store.close()

    def reset(self, namespace: str | None = None) -> None:
        """Forget requests, journal entries, fault rules and fixture sequences (all, or one namespace's)."""
        self.scheduler.reset(namespace)
        self.journal.clear(namespace)
        self.faults.clear(namespace)
        self.outputs.reset_counts(namespace)
        self.webhooks.reset(namespace)
        self.events.reset(namespace)

    def reload_fixtures(self) -> int:
        """Read the fixture files again; keep the old ones if a file is bad. Returns the count."""
        fixtures = load_fixtures(self.settings.fixtures)
        self.outputs.fixtures = fixtures
        return len(fixtures)
