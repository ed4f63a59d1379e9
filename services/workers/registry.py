"""Registered handlers: `@handler("name")` on a function `(JobContext, ActionLogger) -> Result`.

A handler is plain synchronous Python: it gets the job's input and a logger, returns a Result
(or a dict, taken as the output) or raises. `InvalidInput` (and `ActionLogger.fail`) fail the
job for good; any other exception is retried with backoff until the attempts are spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class HandlerError(Exception):
    """A handler failed; `retryable` says whether another attempt could succeed."""

    retryable = True

    def __init__(self, message: str, stack: str | None = None) -> None:
        super().__init__(message)
        self.stack = stack


class InvalidInput(HandlerError):
    """The job's input cannot be processed as it is: retrying will not help."""

    retryable = False


class Failed(HandlerError):
    """The handler gave up on purpose (`ActionLogger.fail`): fail fast, no retry."""

    retryable = False


@dataclass(frozen=True)
class JobContext:
    """What a handler works on: the step, its instance's context and subject, the step's
    params, and the outputs of the instance's finished automated steps (by step id)."""

    job_id: str
    instance_id: str
    step: str
    visit: int
    attempt: int
    context: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    upstream: Mapping[str, Any] = field(default_factory=dict)
    subject: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Result:
    """A handler's answer: `output` is kept with the job (and read downstream), `outcome`
    routes the step, `measurements` go to the router (default: the output), `stats` summarize."""

    output: dict[str, Any]
    outcome: str | None = None
    measurements: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class StepLog(Protocol):
    """What a handler may report while it runs (seed 004's ActionLogger)."""

    def log_step(self, message: str, level: str = "INFO", *, entity_tag: str | None = None,
                 entity_route: str | None = None, entity_id: str | None = None,
                 entity_type: str | None = None) -> None: ...

    def update_progress(self, progress: float, message: str | None = None) -> None: ...

    def complete(self, stats: Mapping[str, Any] | None = None) -> None: ...

    def fail(self, error: str, stack: str | None = None) -> None: ...


Handler = Callable[[JobContext, StepLog], "Result | dict[str, Any]"]


class Registry:
    """Handlers by name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str) -> Callable[[Handler], Handler]:
        def add(fn: Handler) -> Handler:
            if name in self._handlers and self._handlers[name] is not fn:
                raise ValueError(f"handler {name!r} is registered twice")
            self._handlers[name] = fn
            return fn

        return add

    def get(self, name: str) -> Handler:
        try:
            return self._handlers[name]
        except KeyError:
            raise InvalidInput(f"no handler {name!r} in this worker") from None

    def names(self) -> list[str]:
        return sorted(self._handlers)


REGISTRY = Registry()
handler = REGISTRY.register  # `@handler("name")` registers with the default registry
