"""The running parts of the tasks service, started and stopped together by the API's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from schemas.messages import InstanceEvent, StepCommand
from schemas.topics import COMMAND_V1, INSTANCE_EVENTS
from services.common import migrate
from services.common.db import make_engine, make_sessionmaker
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.tasks import inbox, journey
from services.tasks.clock import Clock, SystemClock
from services.tasks.consumers import BatchConsumer, Handler
from services.tasks.outbox import OutboxPublisher
from services.tasks.sla import SlaSweeper
from services.tasks.store import Store
from services.tasks.timeutil import parse_time

log = logging.getLogger(__name__)

SERVICE = "tasks"


def _check_command(cmd: StepCommand) -> None:
    parse_time(cmd.entered_at)
    parse_time(cmd.due_at)


def _check_event(ev: InstanceEvent) -> None:
    parse_time(ev.at)


def consumer_group(settings: Settings) -> str:
    """One group per topic prefix, so test runs (and tenants of a shared broker) stay apart."""
    return f"{settings.topic_prefix}flowline-tasks"


def handlers(settings: Settings) -> dict[str, Handler]:
    """Commands first: within a batch, a task is created before events may retire it."""
    return {
        settings.commands_topic: Handler(
            frozenset({COMMAND_V1}), StepCommand, inbox.apply_commands, _check_command
        ),
        settings.instance_events_topic: Handler(
            frozenset(INSTANCE_EVENTS.types), InstanceEvent, journey.apply_events, _check_event
        ),
    }


class TasksService:
    """Database, producer, consumer, task-event publisher and SLA sweeper of one tasks process.

    `clock` is where the service's own notion of now comes from (claims, completions, SLA
    breaches); tests pass a `FixedClock`.
    """

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.engine = make_engine(settings.db_url(SERVICE))
        self.sessions = make_sessionmaker(self.engine)
        self.store = Store(self.sessions)
        self.producer = EventProducer(settings, SERVICE)
        self.consumer = BatchConsumer(settings, self.sessions, self.producer,
                                      handlers(settings), consumer_group(settings), SERVICE)
        self.publisher = OutboxPublisher(self.sessions, self.producer,
                                         settings.task_events_topic, self.clock)
        self.sweeper = SlaSweeper(self.sessions, self.clock, settings.sla_sweep_interval,
                                  on_breach=self.publisher.kick)
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await migrate.upgrade(self.settings.db_url(SERVICE), SERVICE)
        await self.producer.start()
        await self.consumer.start()
        self._loops = [asyncio.create_task(self.publisher.run(), name="tasks-outbox"),
                       asyncio.create_task(self.sweeper.run(), name="tasks-sla")]
        log.info("tasks service consuming %s", ", ".join(handlers(self.settings)))

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        for part in (self.consumer, self.producer):
            try:
                await part.stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s", type(part).__name__)
        await self.engine.dispose()
