"""Run a worker: `flowline worker` (see `services.cli`)."""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import Sequence

from services.common import logs
from services.workers import analysis  # noqa: F401  (registers the built-in handlers)
from services.workers.client import JobsClient
from services.workers.registry import REGISTRY
from services.workers.worker import Worker


def load_modules(modules: Sequence[str]) -> None:
    """Import modules that register more handlers (`@handler("name")`)."""
    for module in modules:
        importlib.import_module(module)


async def serve(url: str, *, handlers: Sequence[str] = (), modules: Sequence[str] = (),
                name: str | None = None, lease_s: float = 30.0, concurrency: int = 1) -> None:
    """Claim and run jobs from the tasks service at `url` until SIGINT or SIGTERM."""
    load_modules(modules)
    client = JobsClient(url)
    worker = Worker(client, registry=REGISTRY, handlers=list(handlers) or None, name=name,
                    lease_s=lease_s, concurrency=concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.run(stop)
    finally:
        await client.aclose()


def run(url: str, *, handlers: Sequence[str] = (), modules: Sequence[str] = (),
        name: str | None = None, lease_s: float = 30.0, concurrency: int = 1,
        log_level: str = "INFO") -> None:
    logs.setup(log_level)
    asyncio.run(serve(url, handlers=handlers, modules=modules, name=name, lease_s=lease_s,
                      concurrency=concurrency))
