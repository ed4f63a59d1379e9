"""The issue's targets, as (label, where in the result, target, floor, higher_is_better, unit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    label: str
    path: tuple[str, ...]
    target: float | None
    floor: float | None = None
    higher_is_better: bool = True
    unit: str = ""


TARGETS: tuple[Target, ...] = (
    Target("router: routed completions/s", ("throughput", "per_second"), 2500, 1000,
           unit="/s"),
    Target("router: start requests/s", ("throughput", "starts", "per_second"), None, unit="/s"),
    Target("raw aiokafka loop: completions/s", ("raw", "per_second"), None, unit="/s"),
    Target("router / raw", ("summary", "router_over_raw"), 0.3),
    Target("router CPU per completion", ("throughput", "router_cpu_ms_per_completion"), None,
           higher_is_better=False, unit="ms"),
    Target("raw loop CPU per completion", ("raw", "raw_loop_cpu_ms_per_completion"), None,
           higher_is_better=False, unit="ms"),
    Target("broker CPU per completion, routed", ("throughput", "broker_cpu_ms_per_completion"),
           None, higher_is_better=False, unit="ms"),
    Target("broker CPU per completion, raw loop", ("raw", "broker_cpu_ms_per_completion"),
           None, higher_is_better=False, unit="ms"),
    Target("latency p50: completion → command visible", ("latency", "visible_ms", "p50"), 5,
           higher_is_better=False, unit="ms"),
    Target("latency p99: completion → command visible", ("latency", "visible_ms", "p99"), 25,
           higher_is_better=False, unit="ms"),
    Target("latency p50 at 50/s (no queueing): → command visible",
           ("latency", "light", "visible_ms", "p50"), None, higher_is_better=False, unit="ms"),
    Target("latency p99 at 50/s (no queueing): → command visible",
           ("latency", "light", "visible_ms", "p99"), None, higher_is_better=False, unit="ms"),
    Target("latency achieved send rate", ("latency", "achieved_rate"), None, unit="/s"),
    Target("latency: the broker's JIT compiler meanwhile (measured rounds, 1 worker)",
           ("latency", "broker_jit_cores"), None, higher_is_better=False, unit="cores"),
    *(Target(f"latency: the machine's fixed work during the measured rounds, 1 worker, {q} "
             "(lower is quicker)", ("latency", "machine_during", f"{q}_ms"), None,
             higher_is_better=False, unit="ms") for q in ("p50", "p90")),
    Target("latency p50, 2 router workers: → command visible",
           ("latency", "two_workers", "visible_ms", "p50"), 5, higher_is_better=False,
           unit="ms"),
    Target("latency p99, 2 router workers: → command visible",
           ("latency", "two_workers", "visible_ms", "p99"), 25, higher_is_better=False,
           unit="ms"),
    *(Target(f"raw loop latency {q}{at}: → command visible", ("latency", key, "visible_ms", q),
             None, higher_is_better=False, unit="ms")
      for key, at in (("raw", ""), ("raw_light", " at 50/s")) for q in ("p50", "p99")),
    Target("recovery: kill -9 → first new command (worst)", ("recovery", "resume_s", "max"),
           10, higher_is_better=False, unit="s"),
    Target("recovery: kill -9 → backlog caught up (worst)", ("recovery", "caught_up_s", "max"),
           None, higher_is_better=False, unit="s"),
    Target("tasks fold: completions/s into SQLite (no broker)",
           ("fold", "sqlite", "completions_per_second"), 1000, unit="/s"),
    Target("tasks fold: completions/s into PostgreSQL (no broker)",
           ("fold", "postgres", "completions_per_second"), 1000, unit="/s"),
    Target("idle stack: broker CPU (cores)", ("idle", "broker_cores"), None,
           higher_is_better=False, unit="cores"),
    Target("idle stack: all processes' CPU (cores)", ("idle", "stack_cores"), None,
           higher_is_better=False, unit="cores"),
    Target("inbox p99: completion (Kafka) → inbox row committed",
           ("inbox", "kafka", "inbox_ms", "p99"), 75, higher_is_better=False, unit="ms"),
    Target("inbox p50: completion (Kafka) → inbox row committed",
           ("inbox", "kafka", "inbox_ms", "p50"), None, higher_is_better=False, unit="ms"),
    Target("inbox p99: POST completion → inbox row committed",
           ("inbox", "gateway", "inbox_ms", "p99"), None, higher_is_better=False, unit="ms"),
    Target("gateway POST /completions p50 under load", ("inbox", "gateway", "post_ms", "p50"),
           None, higher_is_better=False, unit="ms"),
    Target("gateway POST /completions p99 under load", ("inbox", "gateway", "post_ms", "p99"),
           None, higher_is_better=False, unit="ms"),
    Target("inbox: achieved send rate (gateway)", ("inbox", "gateway", "achieved_rate"), None,
           unit="/s"),
    Target("inbox: the broker's JIT compiler meanwhile (Kafka rounds)",
           ("inbox", "kafka", "broker_jit_cores"), None, higher_is_better=False, unit="cores"),
    Target("scaling: routed completions/s, 1 worker", ("scaling", "per_second_1"), None,
           unit="/s"),
    Target("scaling: routed completions/s, 2 workers", ("scaling", "per_second_2"), None,
           unit="/s"),
    Target("router RSS per 1M instances (extrapolated below 1M)",
           ("memory", "rss_mb_per_1m_instances"),
           250, higher_is_better=False, unit="MB"),
    Target("changelog bytes per instance (broker disk)",
           ("memory", "changelog_bytes_per_instance"), None, higher_is_better=False, unit="B"),
    *(Target(f"core per completion, chain of {n} steps (decide + JSON)",
             ("graphs", f"chain_{n}", "us_per_completion"), None, higher_is_better=False,
             unit="µs") for n in (10, 100, 1000)),
    *(Target(f"stored state, chain of {n} steps walked", ("graphs", f"chain_{n}", "state_bytes"),
             None, higher_is_better=False, unit="B") for n in (10, 1000)),
    *(Target(f"core per completion, {k} rework loops", ("graphs", f"loop_{k}",
                                                         "us_per_completion"),
             None, higher_is_better=False, unit="µs") for k in (1, 100)),
)


def lookup(result: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = result.get("scenarios", {})
    if path[0] == "summary":
        node = result
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def verdict(t: Target, value: float | None) -> str:
    if value is None:
        return "—"
    if t.target is None:
        return ""

    def meets(bound: float) -> bool:
        return value >= bound if t.higher_is_better else value <= bound

    if meets(t.target):
        return "meets target"
    if t.floor is not None and meets(t.floor):
        return "above floor"
    return "MISSES"
