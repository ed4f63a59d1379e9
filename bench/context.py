"""What every scenario gets: the broker, sizes for quick or full runs, a progress printer."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Sizes:
    instances: int  # throughput / raw: instances, each routed through start + len(PATH) steps
    latency_instances: int  # latency: instances per round (one completion each per round)
    latency_rounds: int
    latency_rate: float  # completions per second, paced
    light_instances: int  # latency at 50/s (no queueing): instances, × 5 rounds
    recovery_reps: int
    recovery_rate: float  # start requests per second while the router is killed
    memory_instances: int
    inbox_instances: int = 500  # inbox: instances, one completion each per round
    inbox_rate: float = 200  # inbox: completions per second, paced (Kafka, then the gateway)
    fold_instances: int = 5000  # fold: instances walked through the path in SQL, no broker
    fold_batch: int = 170  # fold: completions per transaction (~500 records, one fetch)
    warmup_seconds: float = 30.0  # a fresh broker is driven this long before the scenarios
    idle_settle: float = 8.0  # idle: seconds after the stack is up before measuring
    idle_seconds: float = 15.0  # idle: seconds measured
    partitions: int = 12


QUICK = Sizes(instances=300, latency_instances=500, latency_rounds=2, latency_rate=1000,
              light_instances=20, recovery_reps=1, recovery_rate=50, memory_instances=1000,
              inbox_instances=100, fold_instances=300, warmup_seconds=0.0, idle_settle=1.0,
              idle_seconds=2.0)
FULL = Sizes(instances=10_000, latency_instances=3000, latency_rounds=5, latency_rate=1000,
             light_instances=100, recovery_reps=3, recovery_rate=50,
             # Measured at 1M, not extrapolated: from 100k, RSS noise of a few MB gave 75-343
             # MB "per 1M" over 12 runs, against 227 MB measured (bench/results/NOTES.md).
             memory_instances=1_000_000, inbox_instances=1000)


@dataclass
class Context:
    bootstrap: str
    broker_kind: str
    broker_version: str
    broker_data_dir: Path | None
    broker_pid: int | None
    work_dir: Path
    sizes: Sizes
    profile_dir: Path | None = None
    started: float = field(default_factory=time.monotonic)
    extra: dict[str, Any] = field(default_factory=dict)
    # Topic prefixes the current scenario made (`stack.bench_settings`): its topics are
    # deleted when it ends (`stack.drop_topics`).
    prefixes: list[str] = field(default_factory=list)

    def every(self, seconds: float) -> Callable[[str], None]:
        """A `say` that prints at most once per `seconds` (for progress counters)."""
        last = [0.0]

        def say(text: str) -> None:
            if time.monotonic() - last[0] >= seconds:
                last[0] = time.monotonic()
                self.say(text)

        return say

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", file=sys.stderr, flush=True)
