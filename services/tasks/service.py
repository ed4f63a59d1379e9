"""The running parts of the tasks service, started and stopped together by the API's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from schemas.messages import InstanceEvent, StepCommand
from schemas.topics import COMMAND_V1, INSTANCE_EVENTS
from services.common import migrate
from services.common.db import Transactions, make_engine, make_sessionmaker
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.tasks import inbox, journey
from services.tasks.clock import Clock, SystemClock
from services.tasks.config import AutomationSettings
from services.tasks.consumers import BatchConsumer, Handler
from services.tasks.http_runner import HttpRunner
from services.tasks.jobs import JobStore
from services.tasks.models import Job, MessageOutbox, TaskOutbox
from services.tasks.outbox import OutboxPublisher, message_route
from services.tasks.scheduler import Scheduler
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


def handlers(settings: Settings,
             automation: AutomationSettings | None = None) -> dict[str, Handler]:
    """Commands first: within a batch, a task is created before events may retire it."""
    apply_commands = functools.partial(inbox.apply_commands,
                                       automation_settings=automation or AutomationSettings())
    return {
        settings.commands_topic: Handler(
            frozenset({COMMAND_V1}), StepCommand, apply_commands, _check_command
        ),
        settings.instance_events_topic: Handler(
            frozenset(INSTANCE_EVENTS.types), InstanceEvent, journey.apply_events, _check_event
        ),
    }


class TasksService:
    """Database, producer, consumer, task-event publisher and SLA sweeper of one tasks process,
    and its automation: the message outbox, the scheduler (timers, leases) and the HTTP runner.

    `clock` is where the service's own notion of now comes from (claims, completions, SLA
    breaches, timers, leases); tests pass a `FixedClock`. `automation` defaults to the
    `FLOWLINE_AUTOMATION_*` environment.
    """

    def __init__(self, settings: Settings, clock: Clock | None = None,
                 automation: AutomationSettings | None = None) -> None:
        self.settings = settings
        self.automation = automation or AutomationSettings()
        self.clock: Clock = clock or SystemClock()
        self.engine = make_engine(settings.db_url(SERVICE))
        self.sessions = make_sessionmaker(self.engine)
        self.store = Store(self.sessions)
        self.producer = EventProducer(settings, SERVICE)
        self.transactions = Transactions(self.engine)  # the consumer's and the outboxes' writes
        self.consumer = BatchConsumer(settings, self.transactions, self.producer,
                                      handlers(settings, self.automation),
                                      consumer_group(settings), SERVICE,
                                      on_commit=self._folded)
        self.publisher = OutboxPublisher(self.transactions, self.producer,
                                         settings.task_events_topic, self.clock)
        self.sweeper = SlaSweeper(self.sessions, self.clock, settings.sla_sweep_interval,
                                  on_breach=self.publisher.kick)
        self.messages = OutboxPublisher(
            self.transactions, self.producer, settings.completions_topic, self.clock,
            table=MessageOutbox, route=message_route(settings.topic_prefix),
            idle_interval=self.automation.scheduler_interval)
        self.jobs = JobStore(self.sessions, self.automation)
        self.http = HttpRunner(self.jobs, self.clock, self.automation)
        self.scheduler = Scheduler(self.sessions, self.jobs, self.clock,
                                   self.automation.scheduler_interval, on_change=self.kick)
        self._loops: list[asyncio.Task[None]] = []

    def kick(self) -> None:
        """Something changed: publish what it owes now, and look for ready jobs."""
        self.publisher.kick()
        self.messages.kick()
        self.http.kick()

    def _folded(self, tables: frozenset[str]) -> None:
        """A batch of commands and events committed rows into `tables`: wake only what has new
        work. (Waking all three after every batch cost two queries that found nothing.)"""
        if TaskOutbox.__tablename__ in tables:
            self.publisher.kick()
        if MessageOutbox.__tablename__ in tables:
            self.messages.kick()
        if Job.__tablename__ in tables:
            self.http.kick()

    async def start(self) -> None:
        await migrate.upgrade(self.settings.db_url(SERVICE), SERVICE)
        await self.producer.start()
        # The loops first: joining the consumer group can take seconds after a restart, and
        # due timers, leases and the outboxes need only the database and the producer.
        self._loops = [asyncio.create_task(self.publisher.run(), name="tasks-outbox"),
                       asyncio.create_task(self.sweeper.run(), name="tasks-sla"),
                       asyncio.create_task(self.messages.run(), name="tasks-messages"),
                       asyncio.create_task(self.scheduler.run(), name="tasks-scheduler"),
                       asyncio.create_task(self.http.run(), name="tasks-http")]
        try:
            await self.consumer.start()
        except BaseException:
            await self._stop_loops()
            raise
        log.info("tasks service consuming %s", ", ".join(handlers(self.settings)))

    async def _stop_loops(self) -> None:
        for loop in self._loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def stop(self) -> None:
        await self._stop_loops()
        for part in (self.consumer, self.producer):
            try:
                await part.stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s", type(part).__name__)
        await self.transactions.close()
        await self.engine.dispose()
