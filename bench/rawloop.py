"""The raw limit: a plain aiokafka consume → small transform → produce loop, as a process.

`python -m bench.rawloop BOOTSTRAP IN_TOPIC GROUP COMMANDS EVENTS STATE SHAPE_JSON`

Per input record it writes what the router writes (one step command, `events_per_input`
instance events and one state record, each padded to the router's measured size) with the
input's CloudEvents headers, awaits the acks per fetched batch, then commits. No decide, no
table, no faust: the ceiling the router's Python shell is measured against.
"""

from __future__ import annotations

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


async def main(argv: list[str]) -> None:
    bootstrap, in_topic, group, commands, events, state, shape_text = argv
    shape = json.loads(shape_text)
    consumer = AIOKafkaConsumer(in_topic, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20, max_poll_records=500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
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
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
