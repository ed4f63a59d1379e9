"""The tasks service's clockwork: due timers fire, expired job leases are taken back.

One loop, polling every `scheduler_interval` (0.25 s by default), so a timer fires within that
of its time: the schedule lives in SQL, which is what makes timers survive a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.tasks import automation
from services.tasks.clock import Clock
from services.tasks.jobs import JobStore

log = logging.getLogger(__name__)


class Scheduler:
    """`run()` is the loop; `on_change` runs after a pass that fired or took back something
    (the service kicks the message outbox and the runners with it)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], jobs: JobStore, clock: Clock,
                 interval: float, on_change: Callable[[], None] = lambda: None) -> None:
        self.sessions, self.jobs, self.clock = sessions, jobs, clock
        self.interval, self.on_change = interval, on_change

    async def run_once(self) -> int:
        now = self.clock.now()
        changed = await automation.fire_due_timers(self.sessions, now)
        changed += await self.jobs.reap_expired(now)
        if changed:
            self.on_change()
        return changed

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a locked or lost database: try again next round
                log.exception("scheduler pass failed")
            await asyncio.sleep(self.interval)
