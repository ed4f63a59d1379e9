"""An approved process version indexed for routing: steps by id, edges by source and type."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.graph import DecisionType, Edge, EdgeType, ProcessVersion, Step, StepType


@dataclass(frozen=True)
class Graph:
    """Read-only routing view of one process version; build once per version, share freely."""

    version: ProcessVersion
    steps: dict[str, Step]
    outgoing: dict[str, tuple[Edge, ...]]
    start: str | None = field(default=None)

    @classmethod
    def of(cls, version: ProcessVersion) -> Graph:
        steps = {s.id: s for s in version.steps}
        outgoing: dict[str, list[Edge]] = {s: [] for s in steps}
        for edge in version.edges:
            outgoing.setdefault(edge.from_, []).append(edge)
        start = next((s.id for s in version.steps if s.type == StepType.START), None)
        return cls(version, steps, {k: tuple(v) for k, v in outgoing.items()}, start)

    def edge(self, step: str, edge_type: EdgeType) -> Edge | None:
        return next((e for e in self.outgoing.get(step, ()) if e.type == edge_type), None)

    def defaults(self, step: str) -> list[Edge]:
        """`step`'s default edges, in order: one per branch of a parallel split."""
        return [e for e in self.outgoing.get(step, ()) if e.type == EdgeType.DEFAULT]

    def named(self, step: str, name: str) -> Edge | None:
        wanted = name.casefold()
        return next(
            (e for e in self.outgoing.get(step, ()) if e.name and e.name.casefold() == wanted),
            None,
        )

    def outcomes(self, step: Step) -> list[str]:
        """The outcomes a completion of `step` may name (shown to operators and equipment)."""
        names = [e.name for e in self.outgoing.get(step.id, ()) if e.name]
        if step.type == StepType.DECISION and step.decision_type in (
            DecisionType.QA_RESULT, None
        ):
            return ["pass", "fail", *(n for n in names if n.casefold() not in ("pass", "fail"))]
        return names
