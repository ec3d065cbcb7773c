"""Request ids: UUIDv7 strings, as fal issues them, reproducible when seeded."""

from __future__ import annotations

import random
from collections.abc import Iterable

from emulator.core.clock import Clock

# Seeded ids count milliseconds from this instant instead of reading the clock, so two
# runs with the same seed hand out the same ids whatever the time of day.
_SEEDED_EPOCH_MS = 1_735_689_600_000


class IdFactory:
    """Hands out UUIDv7 ids; with a seed, the same sequence every run."""

    def __init__(self, clock: Clock, seed: int | None = None) -> None:
        self._clock = clock
        self._seeded = seed is not None
        self._rng = random.Random(seed)
        self._count = 0
        # Ids an earlier run of a seeded sequence handed out that this one must not hand out again.
        self._taken: set[str] = set()

    def new(self) -> str:
        made = self._make()
        while self._taken and made in self._taken:
            self._taken.discard(made)  # the sequence has passed it: it cannot come up again
            made = self._make()
        return made

    def _make(self) -> str:
        if self._seeded:
            millis = _SEEDED_EPOCH_MS + self._count
        else:
            millis = int(self._clock.now() * 1000)
        self._count += 1
        rand = self._rng.getrandbits(74)
        value = (millis & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76  # version 7
        value |= (rand >> 62) << 64  # 12 bits rand_a
        value |= 0b10 << 62  # RFC 4122 variant
        value |= rand & ((1 << 62) - 1)  # 62 bits rand_b
        # str(uuid.UUID(int=value)), without building the object.
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def skip(self, count: int, taken: Iterable[str] = ()) -> None:
        """Carry a seeded sequence on after an earlier run of it: past ``count`` ids it surely handed out,
        and never to one of ``taken`` (the ids its kept requests hold).

        The earlier run may have taken more ids than it kept requests (a chat completion's own id, a
        retry's gateway id), so the ids after the first ``count`` can be a kept request's: those are
        passed over as the sequence reaches them, and the sequence stays the same from one restart to
        the next.
        """
        if self._seeded:
            ahead = self._taken | set(taken)
            for _ in range(count):
                ahead.discard(self._make())  # passed: it cannot come up again
            self._taken = ahead
