"""Run the tasks service: `run(settings)` serves the API (and its consumers) with uvicorn."""

from __future__ import annotations

from urllib.parse import urlsplit

import uvicorn

from services.common import logs
from services.common.settings import Settings
from services.tasks.api import create_app


def bind_address(url: str) -> tuple[str, int]:
    """The host and port to listen on, from the URL the other services use to reach us."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def run(settings: Settings) -> None:
    """Serve until interrupted."""
    logs.setup(settings.log_level)
    host, port = bind_address(settings.tasks_url)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower(),
                access_log=False)


if __name__ == "__main__":
    run(Settings())
