"""`flowline router`: run one router worker until interrupted."""

from __future__ import annotations

import asyncio
import shutil

import uvloop
from faust.worker import Worker

from services.common import logs
from services.common.kafka import create_topics
from services.common.settings import Settings
from services.router.app import create_app
from services.router.definitions_view import DefinitionsView


def run(settings: Settings) -> None:
    logs.setup(settings.log_level)
    (settings.data_dir / "router").mkdir(parents=True, exist_ok=True)
    asyncio.run(create_topics(settings))
    if settings.event_loop == "uvloop":
        # Also the policy: faust's consumer thread makes a loop of its own with it.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())  # faust's worker runs its own loop
    view = DefinitionsView(settings.kafka_bootstrap, settings.definitions_topic,
                           settings.fetch_max_wait_ms)
    app = create_app(settings, view)
    # The table's RocksDB copy is a cache of its changelog, and after a crash it can be ahead
    # of it: a state is put into RocksDB when it is stored, its changelog record is acked
    # later, and a replayed input then finds its own event id already applied and rewrites
    # nothing. Starting from the changelog alone keeps the changelog the only truth.
    shutil.rmtree(app.conf.tabledir, ignore_errors=True)
    # The definitions reader is a service of its own: started before, stopped after the app.
    worker = Worker(app, view, loglevel=settings.log_level.lower(), quiet=True,
                    redirect_stdouts=False, override_logging=False)
    worker.execute_from_commandline()
