"""Smoke run of the benchmark harness: seconds, on the session broker; fails if nothing routes.

Not a benchmark (the sizes are tiny and the machine is shared): it checks that `bench.run`
still drives a real router and the raw loop end to end, the tasks fold on SQLite, the
routing core against graph size, and the whole stack for the inbox and idle, and
writes a result with numbers.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.disk import log_dir
from bench.scenarios.latency import WARM_ROUNDS
from services.common.brokers import ApacheKafkaBroker

INSTANCES = 40
BENCH_TOPIC = re.compile(r"b[a-z]+[0-9a-f]{6}\.")  # bench.stack.bench_settings' prefixes


async def bench_topics(bootstrap: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return [t for t in await admin.list_topics() if BENCH_TOPIC.match(t)]
    finally:
        await admin.close()


def quick_run(broker: Any, out: Path, *args: str) -> dict[str, Any]:
    """`bench.run --quick` with `args` on the session's broker; its result file's contents."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--bootstrap", broker.bootstrap,
         "--broker", broker.kind, "--partitions", "4", "--out", str(out), "--name", "smoke",
         *args],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads((out / "smoke.json").read_text())
    return result


def test_quick_raw_throughput_fold_and_graphs_give_positive_numbers(broker: Any,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = quick_run(broker, out, "--only", "raw,throughput,fold,graphs",
                       "--instances", str(INSTANCES))
    assert (out / "smoke.md").read_text().startswith("# Flowline bench")
    raw, routed = result["scenarios"]["raw"], result["scenarios"]["throughput"]
    steps = 6  # bench.workload.PATH: one command per completion
    assert raw["records"] == INSTANCES * steps and raw["per_second"] > 0
    assert routed["completions_phase"]["records"] == INSTANCES * steps
    assert routed["starts"]["per_second"] > 0 and routed["per_second"] > 0
    assert result["summary"]["router_over_raw"] > 0
    # CPU per completion: the raw loop's, and the broker's under each (the broker is local).
    assert raw["raw_loop_cpu_ms_per_completion"] > 0
    assert raw["broker_cpu_ms_per_completion"] >= 0
    assert routed["broker_cpu_ms_per_completion"] >= 0
    assert result["meta"]["machine"]["nproc"] >= 1
    speed = result["meta"]["machine"]["speed"]  # the fixed work, timed before and after
    assert speed["start"]["best_ms"] > 0 and speed["end"]["best_ms"] > 0
    assert set(speed["scenarios"]) == set(result["scenarios"])  # and before each scenario
    assert all(s["best_ms"] > 0 for s in speed["scenarios"].values())
    fold = result["scenarios"]["fold"]["sqlite"]  # the tasks fold, no broker
    assert fold["records"] == fold["instances"] * steps * 3  # a command and two events each
    assert fold["completions_per_second"] > 0
    graphs = result["scenarios"]["graphs"]  # the routing core alone, against graph size
    assert graphs["chain_1000"]["completions"] == 1000
    assert graphs["chain_1000"]["state_bytes"] > 10 * graphs["chain_10"]["state_bytes"]
    assert graphs["loop_100"]["completions"] == 3 + 2 * 100  # to inspect, then fail + rework
    assert all(g["us_per_completion"] > 0 for g in graphs.values())


def test_quick_inbox_reaches_every_row_through_kafka_and_the_gateway(broker: Any,
                                                                   tmp_path: Path) -> None:
    scenarios = quick_run(broker, tmp_path / "results", "--only", "inbox,idle",
                          "--size", "inbox_instances=30")["scenarios"]
    inbox, idle = scenarios["inbox"], scenarios["idle"]
    # The idle stack: every process measured, and the polling costs something.
    assert {"broker", "definitions", "tasks", "router", "gateway"} <= set(idle["cores"])
    assert idle["stack_cores"] > 0
    assert idle["fetch_max_wait_ms"] == broker.fetch_max_wait_ms
    # Unmeasured first: 30 other instances through all six rounds of bench.workload.PATH
    # (the broker's JIT meets the scenario's requests), then the measured ones' first round.
    assert inbox["warmup"]["completions"] == 30 * 6 + 30
    # Then the rest of PATH's six completions: two measured through Kafka, three through the
    # gateway
    for path, rounds in (("kafka", 2), ("gateway", 3)):
        phase = inbox[path]
        assert phase["completions"] == 30 * rounds, path
        assert phase["missing_rows"] == 0, path
        assert phase["inbox_ms"]["n"] == 30 * rounds and phase["inbox_ms"]["p50"] > 0, path
        assert phase["bench_gc_collections"] == 0, path  # the bench's clock never stopped
    posts = inbox["gateway"]["post_ms"]
    assert posts["n"] == 30 * 3 and posts["p50"] > 0  # every POST answered 202


def test_quick_latency_measures_the_router_and_the_raw_loop_at_both_rates(
        broker: Any, tmp_path: Path) -> None:
    m, light = 20, 10
    result = quick_run(broker, tmp_path / "results", "--only", "latency", "--size",
                       f"latency_instances={m}", "--size", f"light_instances={light}")
    latency = result["scenarios"]["latency"]
    rounds = latency["rounds"]  # --quick: 2 measured rounds at the rate, 5 at 50/s
    runs = {"one worker": (latency, m, rounds), "two workers": (latency["two_workers"], m, rounds),
            "light": (latency["light"], light, 5), "raw": (latency["raw"], m, rounds),
            "raw light": (latency["raw_light"], light, 5)}
    for name, (run, instances, measured) in runs.items():
        # Every completion answered by its own command, each timed from its send.
        assert "missing" not in run, name
        assert run["visible_ms"]["n"] == instances * measured, name
        assert 0 < run["visible_ms"]["p50"] <= run["visible_ms"]["p99"], name
        assert run["achieved_rate"] > 0, name
        # Unmeasured first: other instances' warm-up rounds, then the measured ones' first.
        assert run["warmup"]["completions"] == (WARM_ROUNDS + 1) * instances, name
        assert run["bench_gc_collections"] == 0, name  # the bench's clock never stopped
        # The machine's speed through the measured rounds, in the calibration's unit.
        assert run["machine_during"]["probes"] > 0, name
        assert 0 < run["machine_during"]["p50_ms"] <= run["machine_during"]["max_ms"], name
    assert latency["workers"] == 1 and latency["two_workers"]["workers"] == 2
    assert latency["light"]["target_rate"] == 50
    # The raw loop's process is booked apart from the routers'.
    assert "raw loop" in latency["raw"]["cpu"]["cores_by_process"]
    assert "router" in latency["two_workers"]["cpu"]["cores_by_process"]
    assert "raw loop" in (tmp_path / "results" / "smoke.md").read_text()
    # Each run's topics were deleted after it (bench.stack.drop_topics): none is left.
    assert asyncio.run(bench_topics(broker.bootstrap)) == []
    if isinstance(broker, ApacheKafkaBroker):  # the next run began once their files were gone
        data = log_dir(broker.data_dir)
        assert data is not None
        assert [d.name for d in data.iterdir() if BENCH_TOPIC.match(d.name)] == []
