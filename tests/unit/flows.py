"""Drive `decide` over several instances the way the router does, for the routing tests.

`World` keeps every instance's state, resolves process versions like the router's start logic
(`resolve_version`: a pinned version, else the latest approved), and delivers each decision's
`requests` (a subprocess's start, a child's completion to its parent) as new input records,
in order, after the decision that produced them. Event ids follow the router's: `start:<id>`
for a start it sends, `<source id>/req/<n>` for a completion.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.messages import StartInstance, StepCompletion, Subject
from services.router.routing import Decision, Graph, InstanceState, decide, resolve_version
from services.router.routing.decide import Message

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


class World:
    def __init__(self, *graphs: Graph) -> None:
        self.graphs: dict[str, dict[int, Graph]] = {}
        for g in graphs:
            self.graphs.setdefault(g.version.key, {})[g.version.version] = g
        self.states: dict[str, InstanceState] = {}
        self.n = 0
        self.log: list[tuple[str, Decision]] = []  # (event id, decision), in feeding order

    def graph_for(self, message: Message) -> Graph | None:
        if isinstance(message, StartInstance):
            versions = self.graphs.get(message.process, {})
            chosen = resolve_version({n: g.version for n, g in versions.items()},
                                     message.version)
            return versions[chosen.version] if chosen else None
        state = self.states.get(message.instance_id)
        return self.graphs.get(state.process_key, {}).get(state.version) if state else None

    def feed(self, message: Message, event_id: str | None = None,
             deliver: bool = True) -> Decision:
        self.n += 1
        event_id = event_id or f"e{self.n}"
        d = decide(self.graph_for(message), self.states.get(message.instance_id), message,
                   event_id, T0 + timedelta(seconds=self.n))
        if d.state is not None:
            self.states[d.state.instance_id] = d.state
        self.log.append((event_id, d))
        if deliver:
            for n, request in enumerate(d.requests):
                rid = (f"start:{request.instance_id}" if isinstance(request, StartInstance)
                       else f"{event_id}/req/{n}")
                self.feed(request, rid)
        return d

    def start(self, process: str, instance: str = "p1", deliver: bool = True,
              **kw: Any) -> Decision:
        return self.feed(StartInstance(instance_id=instance, process=process,
                                       subject=Subject(type="part", id="SN1"), **kw),
                         deliver=deliver)

    def done(self, step: str, outcome: str | None = None, instance: str = "p1",
             **kw: Any) -> Decision:
        event_id = kw.pop("event_id", None)
        return self.feed(StepCompletion(instance_id=instance, step=step, outcome=outcome, **kw),
                         event_id)

    def state(self, instance: str = "p1") -> InstanceState:
        return self.states[instance]

    def at(self, instance: str = "p1") -> list[str]:
        return sorted(self.states[instance].active)


def process(key: str, steps: list[dict[str, Any]], edges: list[Any]) -> dict[str, Any]:
    """A graph; edges as dicts or `(from, to)` / `(from, to, type)` / `(from, to, type, name)`."""
    def edge(e: Any) -> dict[str, Any]:
        if isinstance(e, dict):
            return e
        out = {"from": e[0], "to": e[1]}
        if len(e) > 2 and e[2]:
            out["type"] = e[2]
        if len(e) > 3:
            out["name"] = e[3]
        return out
    return {"key": key, "steps": steps, "edges": [edge(e) for e in edges]}


START = {"id": "start", "type": "start"}
DONE = {"id": "done", "type": "terminal", "terminal_status": "completed"}
SCRAPPED = {"id": "scrapped", "type": "terminal", "terminal_status": "scrapped"}


def task(step_id: str, **kw: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "task", **kw}


def qa(step_id: str) -> dict[str, Any]:
    return {"id": step_id, "type": "decision", "decision_type": "qa_result"}
