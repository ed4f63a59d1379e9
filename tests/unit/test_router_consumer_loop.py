"""The router's consumer is a service on the worker's own event loop (transport.py, point 11)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.common.settings import Settings
from services.router.app import create_app


async def test_the_consumer_runs_on_the_workers_loop_not_a_thread_of_its_own(
        tmp_path: Path) -> None:
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path))
    consumer: Any = app.consumer  # nothing connects until the worker starts it
    thread = consumer._thread
    assert thread.thread_loop is asyncio.get_running_loop()
    assert thread.parent_loop is thread.thread_loop
    assert thread.method_queue.loop is thread.thread_loop
