"""Settings, built explicitly (never at import) from `FLOWLINE_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import (
    DEAD_LETTERS,
    DEFINITIONS,
    INSTANCE_EVENTS,
    INSTANCE_REQUESTS,
    STEP_COMMANDS,
    STEP_COMPLETIONS,
    TASK_EVENTS,
    TopicSpec,
)

# `Settings.fetch_max_wait_ms` for each kind of broker (`brokers.fetch_max_wait_ms`).
KAFKA_FETCH_MAX_WAIT_MS = 500
TANSU_FETCH_MAX_WAIT_MS = 20


class Settings(BaseSettings):
    """Everything a Flowline service needs to find its broker, database and peers."""

    model_config = SettingsConfigDict(env_prefix="FLOWLINE_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "flowline."
    partitions: int = Field(default=12, ge=1)
    data_dir: Path = Path(".flowline")
    database_url: str | None = None  # default: SQLite in data_dir, one file per service
    definitions_url: str = "http://127.0.0.1:8101"
    tasks_url: str = "http://127.0.0.1:8102"
    gateway_port: int = 8100
    router_web_port: int = 8103
    router_id: str | None = None  # default: "<topic_prefix>router", so prefixes never share
    # Static group membership (Kafka's group.instance.id) for this router worker: unique per
    # worker and stable across its restarts. A restarted worker gets its partitions back
    # without a rebalance (bench: kill -9 → routing again 6.0 → 3.2-4.3 s on Apache Kafka).
    # Off by default: Tansu 0.6 never completes a second static member's join.
    router_instance_id: str | None = None
    # "exactly_once": faust's transactions (Apache Kafka only: Tansu 0.6 has none). A batch's
    # outputs, its instances' new states and its input offsets commit together, so a reader
    # with isolation.level=read_committed sees each output once, even across a kill -9.
    # "at_least_once" (the default, every broker): a replay may repeat an output, with the
    # same id and content, and consumers dedupe by id.
    router_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # How long the router's producer waits to fill a request (faust `producer_linger`). 0 keeps
    # the hop short at low rates; a few ms saves CPU under load (bench/results/NOTES.md).
    router_linger_ms: float = Field(default=0.0, ge=0, le=1000)
    # The router's event loop. uvloop (the default) cost about 15 % less CPU per routed
    # completion than asyncio's own loop (bench/results/NOTES.md, session 5); uvicorn picks it
    # for the HTTP services by itself. "asyncio" is the fallback.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    log_level: str = "INFO"
    # How long a consumer's fetch waits at the broker when there is nothing to read. Apache
    # Kafka answers a fetch as soon as a record arrives, so a long wait costs no latency and
    # spares the broker empty polls: an idle stack's broker used 0.32 of a core at 20 ms
    # (bench/results/NOTES.md, session 8). The local Tansu broker's fetch polls instead, so a
    # record waits up to this long there: `LocalBroker.fetch_max_wait_ms` says what to use.
    fetch_max_wait_ms: int = Field(default=KAFKA_FETCH_MAX_WAIT_MS, ge=1, le=30_000)
    sla_sweep_interval: float = Field(default=1.0, gt=0)  # seconds between tasks' SLA sweeps

    @property
    def isolation_level(self) -> str:
        """How Flowline's own consumers read the router's outputs: only committed records
        when the router runs transactions, else a completion could answer a command whose
        transaction a crash then aborts, and reach the router before the replayed start."""
        return "read_committed" if self.router_transactions else "read_uncommitted"

    @property
    def router_transactions(self) -> bool:
        return self.router_guarantee == "exactly_once"

    @property
    def router_app_id(self) -> str:
        """The faust app id: names the router's consumer group and changelog topics."""
        return self.router_id or f"{self.topic_prefix}router"

    def topic(self, spec: TopicSpec) -> str:
        return spec.name(self.topic_prefix)

    @property
    def definitions_topic(self) -> str:
        return self.topic(DEFINITIONS)

    @property
    def requests_topic(self) -> str:
        return self.topic(INSTANCE_REQUESTS)

    @property
    def completions_topic(self) -> str:
        return self.topic(STEP_COMPLETIONS)

    @property
    def commands_topic(self) -> str:
        return self.topic(STEP_COMMANDS)

    @property
    def instance_events_topic(self) -> str:
        return self.topic(INSTANCE_EVENTS)

    @property
    def task_events_topic(self) -> str:
        return self.topic(TASK_EVENTS)

    @property
    def dead_letters_topic(self) -> str:
        return self.topic(DEAD_LETTERS)

    def db_url(self, service: str) -> str:
        """The service's database: `database_url` when set, else SQLite under `data_dir`."""
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"
