"""Cost against graph size and path length: the routing core alone, no broker.

Issue 6 asks how cost grows with instance count and graph size. Instance count is the
`throughput` scenario's (2,000 against 10,000 instances: the table is RocksDB, so it is a
matter of cache and disk). Graph size and path length only change the core's work and the
size of what an instance carries, so they are measured here without Kafka, with the router's
own functions:

- `chain_N`: a process of N task steps in a line, which one instance walks to its end. Per
  completion: `decide`, then the stored state as the table writes it (`stored_value`, JSON)
  and the outputs as the router sends them (`.dump()`, JSON). Also how long `Graph.of` takes
  to compile the version, and the bytes of the last state and of the last step command (both
  carry the visit table, which then has N entries).
- `loop_K`: the remanufacturing process with `inspect` failing K times in a row (rework's
  `max_visits` above K): the visit table keeps its size and one count grows.

The figures are per completion, on one core of a shared machine: read them against each
other, not as the router's rate (Kafka and faust add ~1 ms per completion, `throughput`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from bench import workload
from bench.context import Context
from schemas.graph import ProcessVersion
from schemas.messages import StartInstance, StepCompletion
from services.router.app import stored_value
from services.router.routing import Graph, InstanceState, decide

CHAINS = (10, 100, 1000)
LOOPS = (1, 10, 100)
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def chain(n: int) -> ProcessVersion:
    steps: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    steps += [{"id": f"s{i}", "type": "task", "role": "operator"} for i in range(1, n + 1)]
    steps.append({"id": "done", "type": "terminal", "terminal_status": "completed"})
    ids = [step["id"] for step in steps]
    edges = [{"from": a, "to": b} for a, b in zip(ids, ids[1:], strict=False)]
    return ProcessVersion.model_validate({"key": f"chain-{n}", "name": f"Chain of {n}",
                                         "steps": steps, "edges": edges, "version": 1,
                                         "status": "approved"})


def reman_looping(k: int) -> ProcessVersion:
    data = workload.load_template(workload.PROCESS)
    steps = [{**s, "max_visits": k + 1} if s["id"] == "rework" else s for s in data["steps"]]
    return workload.process_version({**data, "steps": steps})


class Walk:
    """One instance through `graph`, timing each completion the way the router handles it."""

    def __init__(self, graph: Graph, key: str) -> None:
        self.graph, self.iid = graph, f"walk-{key}"
        self.state: InstanceState | None = None
        self.seconds = 0.0
        self.completions = 0
        self.command_bytes = 0
        start = StartInstance(instance_id=self.iid, process=key,  # type: ignore[arg-type]
                              subject={"type": "part", "id": self.iid})  # type: ignore[arg-type]
        self.state = self._handled(start, 0)

    def _handled(self, message: Any, n: int) -> InstanceState:
        decision = decide(self.graph, self.state, message, f"e{n}", NOW)
        if decision.rejection is not None or decision.state is None:
            raise RuntimeError(f"{self.iid}: {message!r} was not routed: {decision.rejection}")
        json.dumps(stored_value(decision.state), default=str)
        for command in decision.commands:
            self.command_bytes = len(json.dumps(command.dump()))
        for event in decision.events:
            json.dumps(event.dump())
        return decision.state

    def complete(self, step: str, outcome: str | None = None) -> None:
        message = StepCompletion(instance_id=self.iid, step=step, outcome=outcome,
                                 operator="bench")
        began = time.perf_counter()
        self.state = self._handled(message, self.completions + 1)
        self.seconds += time.perf_counter() - began
        self.completions += 1

    def figures(self) -> dict[str, Any]:
        assert self.state is not None  # set by the start, in __init__
        return {"completions": self.completions,
                "us_per_completion": round(1e6 * self.seconds / self.completions, 1),
                "state_bytes": len(json.dumps(stored_value(self.state), default=str)),
                "command_bytes": self.command_bytes}


def compiled(version: ProcessVersion) -> tuple[Graph, float]:
    began = time.perf_counter()
    graph = Graph.of(version)
    return graph, round(1000 * (time.perf_counter() - began), 2)


async def run(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for n in CHAINS:
        graph, ms = compiled(chain(n))
        walk = Walk(graph, f"chain-{n}")
        for i in range(1, n + 1):
            walk.complete(f"s{i}")
        result[f"chain_{n}"] = {"steps": n, "compile_ms": ms, **walk.figures()}
        ctx.say(f"graphs: chain of {n}: {result[f'chain_{n}']}")
    for k in LOOPS:
        graph, ms = compiled(reman_looping(k))
        walk = Walk(graph, workload.PROCESS)
        for step in ("receive", "disassemble", "clean"):
            walk.complete(step)
        for _ in range(k):
            walk.complete("inspect", "fail")
            walk.complete("rework")
        result[f"loop_{k}"] = {"rework_visits": k, "compile_ms": ms, **walk.figures()}
        ctx.say(f"graphs: {k} rework loop(s): {result[f'loop_{k}']}")
    return result
