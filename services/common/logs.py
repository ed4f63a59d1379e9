"""One logging setup for every service process."""

from __future__ import annotations

import logging


def setup(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level.upper() != "DEBUG":  # at DEBUG, show everything: that is what it is for
        for noisy in ("aiokafka", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # Group joins and assignments are what an operator reads after a restart or rebalance.
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(level.upper())
