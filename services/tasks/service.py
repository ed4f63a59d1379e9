"""The running parts of the tasks service, started and stopped together by the API's lifespan."""

from __future__ import annotations

import logging

from schemas.messages import InstanceEvent, StepCommand
from schemas.topics import COMMAND_V1, INSTANCE_EVENTS
from services.common.db import make_engine, make_sessionmaker
from services.common.kafka import EventProducer
from services.common.settings import Settings
from services.tasks import inbox, journey
from services.tasks.consumers import BatchConsumer, Handler
from services.tasks.models import Base
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
    """Database, producer and consumer of one tasks process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.db_url(SERVICE))
        self.sessions = make_sessionmaker(self.engine)
        self.store = Store(self.sessions)
        self.producer = EventProducer(settings, SERVICE)
        self.consumer = BatchConsumer(settings, self.sessions, self.producer,
                                      handlers(settings), consumer_group(settings), SERVICE)

    async def start(self) -> None:
        # Alembic takes over once the schema has to evolve; until then create what is missing.
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        await self.producer.start()
        await self.consumer.start()
        log.info("tasks service consuming %s", ", ".join(handlers(self.settings)))

    async def stop(self) -> None:
        for part in (self.consumer, self.producer):
            try:
                await part.stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s", type(part).__name__)
        await self.engine.dispose()
