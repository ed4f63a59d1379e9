"""Run the gateway: `run(settings)` serves the public API and web page with uvicorn."""

from __future__ import annotations

import uvicorn

from services.common import logs
from services.common.settings import Settings
from services.gateway.api import create_app


def run(settings: Settings) -> None:
    """Serve on 127.0.0.1:`settings.gateway_port` until interrupted."""
    logs.setup(settings.log_level)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.gateway_port,
                log_level=settings.log_level.lower(), access_log=False)


if __name__ == "__main__":
    run(Settings())
