"""The raw limit: a plain aiokafka consume → small transform → produce loop, as a process.

`python -m bench.rawloop BOOTSTRAP IN_TOPIC GROUP COMMANDS EVENTS STATE SHAPE_JSON
[--fetch-max-wait-ms N] [--linger-ms N] [--commit-interval-ms N]`

Per input record it writes what the router writes (one step command, `events_per_input`
instance events and one state record, each padded to the router's measured size) with the
input's CloudEvents headers, awaits the acks per fetched batch, then commits (after every
batch, or once per `--commit-interval-ms`). No decide, no table, no faust: the ceiling the
router's Python shell is measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def _padded(base: dict[str, Any], size: int) -> bytes:
    raw = json.dumps(base).encode()
    pad = max(0, size - len(raw) - 10)
    return json.dumps({**base, "pad": "x" * pad}).encode()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rawloop")
    for name in ("bootstrap", "in_topic", "group", "commands", "events", "state", "shape"):
        parser.add_argument(name)
    # The throughput scenario's defaults; the latency scenario passes the router's settings.
    parser.add_argument("--fetch-max-wait-ms", type=int, default=20)
    parser.add_argument("--linger-ms", type=float, default=5)
    # Each batch's acks are awaited before the next fetch, as the router does; the commit
    # follows every batch (0) or, as the router's, once N ms have passed since the last.
    parser.add_argument("--commit-interval-ms", type=float, default=0)
    return parser.parse_args(argv)


async def main(argv: list[str]) -> None:
    args = parse(argv)
    commands, events, state = args.commands, args.events, args.state
    shape = json.loads(args.shape)
    consumer = AIOKafkaConsumer(args.in_topic, bootstrap_servers=args.bootstrap,
                                group_id=args.group, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                fetch_max_wait_ms=args.fetch_max_wait_ms, max_poll_records=500)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=args.linger_ms,
                                acks="all")
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    interval = args.commit_interval_ms / 1000
    committed_at = loop.time()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            pending = []
            for records in batches.values():
                for r in records:
                    data = json.loads(r.value)  # the small transform: parse, reshape, dump
                    iid = data["instance_id"]
                    base = {"instance_id": iid, "after": data["step"], "visit": data["visit"]}
                    pending.append(await producer.send(
                        commands, _padded(base, shape["command_bytes"]), key=r.key,
                        headers=list(r.headers)))
                    for n in range(shape["events_per_input"]):
                        pending.append(await producer.send(
                            events, _padded({**base, "n": n}, shape["event_bytes"]),
                            key=r.key, headers=list(r.headers)))
                    pending.append(await producer.send(
                        state, _padded(base, shape["state_bytes"]), key=r.key))
            if pending:
                await asyncio.gather(*pending)
                if loop.time() - committed_at >= interval:
                    await consumer.commit()  # the positions: all fetched, all of it acked
                    committed_at = loop.time()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
