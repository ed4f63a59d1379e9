"""The state the router keeps per instance: what `decide` reads and returns.

Stored as a plain JSON dict in the router's changelog-backed table, so it must round-trip through
`to_dict`/`from_dict` exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

RUNNING = "running"
ON_HOLD = "on_hold"
COMPLETED = "completed"
CANCELLED = "cancelled"

RECENT_EVENT_IDS = 16  # duplicates further back are caught as stale: their step is long gone


@dataclass
class InstanceState:
    instance_id: str
    tenant: str
    process_key: str
    version: int
    subject: dict[str, str]
    priority: str = "medium"
    work_order: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    status: str = RUNNING
    terminal_status: str | None = None
    hold_reason: str | None = None
    active: dict[str, int] = field(default_factory=dict)  # step -> the visit it is in
    visits: dict[str, int] = field(default_factory=dict)  # step -> times entered
    operators: dict[str, list[str | None]] = field(default_factory=dict)  # step -> per visit
    recent_event_ids: list[str] = field(default_factory=list)
    started_at: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceState:
        return cls(**data)

    def copy(self) -> InstanceState:
        """A deep-enough copy: `decide` mutates the copy, never its input."""
        return replace(
            self,
            subject=dict(self.subject),
            context=dict(self.context),
            active=dict(self.active),
            visits=dict(self.visits),
            operators={k: list(v) for k, v in self.operators.items()},
            recent_event_ids=list(self.recent_event_ids),
        )

    def remember(self, event_id: str) -> None:
        self.recent_event_ids.append(event_id)
        del self.recent_event_ids[:-RECENT_EVENT_IDS]
