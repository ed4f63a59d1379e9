"""Run the definitions service: ``run(settings)`` serves on the host/port of definitions_url."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import uvicorn

from services.common import logs
from services.common.kafka import create_topics
from services.common.settings import Settings
from services.definitions.api import create_app

log = logging.getLogger(__name__)


def run(settings: Settings) -> None:
    """Create the topics (idempotent), then serve until interrupted."""
    logs.setup(settings.log_level)
    url = urlsplit(settings.definitions_url)
    try:
        asyncio.run(create_topics(settings))
    except Exception as exc:  # the outbox keeps approvals until the broker is back
        log.warning("could not create topics at %s: %r", settings.kafka_bootstrap, exc)
    uvicorn.run(create_app(settings), host=url.hostname or "127.0.0.1", port=url.port or 80,
                log_level=settings.log_level.lower(), access_log=False)
