"""`python -m bench.run`: run the benchmark scenarios and write bench/results/<stamp>.{json,md}.

    python -m bench.run                       # everything, Apache Kafka, full sizes (minutes)
    python -m bench.run --quick               # seconds per scenario (the smoke test uses this)
    python -m bench.run --broker tansu --only raw,throughput
    python -m bench.run --profile             # py-spy on the router during `throughput`
    FLOWLINE_ROUTER_GUARANTEE=exactly_once python -m bench.run --only throughput,recovery
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import calibrate, report, warmup
from bench.brokers import broker_data_dir, broker_pid, broker_version, make_broker
from bench.context import FULL, QUICK, Context
from bench.machine import machine_info
from bench.scenarios import (
    fold,
    graphs,
    idle,
    inbox,
    latency,
    memory,
    raw,
    recovery,
    scaling,
    throughput,
)
from bench.stack import drop_topics
from services.common.brokers import fetch_max_wait_ms
from services.common.settings import Settings

Scenario = Callable[[Context], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {
    "raw": raw.run,
    "throughput": throughput.run,
    "latency": latency.run,
    "recovery": recovery.run,
    "inbox": inbox.run,
    "fold": fold.run,
    "scaling": scaling.run,
    "graphs": graphs.run,
    "idle": idle.run,
    "memory": memory.run,  # last: ~7.5 min of routing a million starts
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", choices=("kafka", "tansu"), default="kafka",
                   help="Apache Kafka (the reference) or the local Tansu broker")
    p.add_argument("--bootstrap", help="use a running broker at host:port instead of starting one")
    p.add_argument("--quick", action="store_true", help="small sizes: seconds per scenario")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--instances", type=int, help="override the throughput/raw instance count")
    p.add_argument("--partitions", type=int, help="partitions per topic (default 12)")
    p.add_argument("--size", action="append", default=[], metavar="NAME=VALUE",
                   help="override a size from bench/context.py, e.g. memory_instances=5000")
    p.add_argument("--profile", action="store_true", help="py-spy the router in `throughput`")
    p.add_argument("--keep-work", action="store_true",
                   help="keep the work dir (service logs, py-spy's raw stacks) after success")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--name", help="result file stem (default: <date>-<broker>[-quick])")
    return p.parse_args(argv)


# Scenarios that never touch the broker: a run of only these needs no warm-up.
NO_BROKER = frozenset({"fold", "graphs"})


async def run_all(ctx: Context, names: list[str], warm_broker: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    seconds = ctx.sizes.warmup_seconds
    if warm_broker and seconds > 0 and set(names) - NO_BROKER:
        ctx.say(f"warming the broker for {seconds:.0f}s (bench/warmup.py)")
        ctx.extra["warmup"] = await warmup.warm(ctx.bootstrap, seconds, ctx.sizes.partitions,
                                                fetch_max_wait_ms(ctx.broker_kind))
    for name in names:
        # How quick the machine is just now (it swung between ~115 and ~230 ms within one
        # session): each scenario's figures are read beside it.
        speed = ctx.extra.setdefault("speeds", {})[name] = calibrate.measure(repeats=3)
        ctx.say(f"== {name} (machine: {speed['best_ms']} ms for the fixed work)")
        started = time.monotonic()
        try:
            results[name] = await SCENARIOS[name](ctx)
        except Exception as exc:  # one failed scenario must not hide the others' numbers
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            await drop_topics(ctx)  # the next scenario finds only its own topics
        except Exception:  # numbers already taken must still be written
            traceback.print_exc()
        ctx.say(f"== {name} done in {time.monotonic() - started:.1f}s: "
                f"{json.dumps(_headline(results[name]))}")
    return results


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    """The scenario's scalar numbers, for the progress log (a killed run still shows them)."""
    return {k: v for k, v in result.items() if isinstance(v, int | float | str)}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    sizes = dataclasses.replace(QUICK if args.quick else FULL)
    if args.instances:
        sizes.instances = args.instances
    if args.partitions:
        sizes.partitions = args.partitions
    for item in args.size:
        name, _, value = item.partition("=")
        if not hasattr(sizes, name):
            print(f"unknown size {name!r}; see bench/context.py", file=sys.stderr)
            return 2
        setattr(sizes, name, type(getattr(sizes, name))(value))
    machine = machine_info()
    print("timing the machine's fixed Python work ...", file=sys.stderr, flush=True)
    speed = {"start": calibrate.measure()}
    started_at = datetime.now().astimezone()
    work = Path(tempfile.mkdtemp(prefix="flowline-bench-"))
    broker = make_broker(args.broker, args.bootstrap, work)
    ctx_started = time.monotonic()
    print(f"starting {args.broker} broker ...", file=sys.stderr, flush=True)
    broker.start()
    try:
        ctx = Context(bootstrap=broker.bootstrap, broker_kind=broker.kind,
                      broker_version=broker_version(broker),
                      broker_data_dir=broker_data_dir(broker), broker_pid=broker_pid(broker),
                      work_dir=work, sizes=sizes,
                      profile_dir=work if args.profile else None, started=ctx_started)
        ctx.say(f"broker {ctx.broker_version} at {ctx.bootstrap}")
        # A broker we started is fresh; one already running (--bootstrap) is left as it is.
        scenarios = asyncio.run(run_all(ctx, names, warm_broker=not args.bootstrap))
    finally:
        broker.close()
    speed["end"] = calibrate.measure()
    speed["scenarios"] = ctx.extra.get("speeds", {})  # before each scenario
    machine["speed"] = speed
    stem = args.name or (f"{started_at:%Y%m%d-%H%M%S}-{broker.kind}"
                         f"{'-quick' if args.quick else ''}")
    profile = (scenarios.get("throughput") or {}).pop("profile", None)
    if profile:
        path = args.out / f"profile-{started_at:%Y%m%d-%H%M%S}.txt"
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(f"py-spy on the router during `throughput` ({stem})\n\n{profile}\n")
        scenarios["throughput"]["profile_file"] = path.name
    result: dict[str, Any] = {
        "meta": {
            "started_at": started_at.isoformat(timespec="seconds"),
            "command": "python -m bench.run " + shlex.join(argv if argv is not None
                                                           else sys.argv[1:]),
            "mode": "quick" if args.quick else "full",
            "sizes": vars(sizes),
            "broker": {"kind": broker.kind, "version": ctx.broker_version,
                       "warmup": ctx.extra.get("warmup")},
            # FLOWLINE_ROUTER_GUARANTEE=exactly_once in the environment reaches every router
            "guarantee": Settings().router_guarantee,
            "machine": machine,
        },
        "scenarios": scenarios,
    }
    report.summarise(result)
    json_path, md_path = report.write(result, args.out, stem)
    failed = any("error" in s for s in scenarios.values())
    if failed:  # the router logs say why: keep them
        print(f"a scenario failed: service logs kept in {work}/*/logs", file=sys.stderr)
    elif args.keep_work:
        print(f"work dir kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(report.markdown(result))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
