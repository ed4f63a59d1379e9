"""How the router takes records from faust in batches, and stores state for one of them.

`batches` yields what is waiting, as soon as something is: no linger, so at a low rate a
batch is one record and latency is one round trip, while under load a batch is whatever
arrived during the previous one's round trip. faust's own `Stream.take_events` instead waits
`within` seconds for a full buffer, and acknowledges its records in a `finally` — even when
the agent is cancelled halfway through a batch whose outputs were never acknowledged.
Here the caller acknowledges, and only after the batch's state is stored.

`as_current` makes an event faust's "current event" for a table read or write. faust picks
a table's changelog partition (and the RocksDB store its partition database) from that
task-local event; a batch stores its states after every record has been read, so it names
each state's own record explicitly, exactly as faust's stream loop does per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from faust.streams import _current_event
from faust.types import EventT


async def batches(stream: Any, max_size: int) -> AsyncGenerator[list[EventT], None]:
    """Yield lists of up to `max_size` events; the caller must `await stream.ack(e)` each.

    A task of its own takes events from the stream into a queue of `max_size`. Once the first
    event of a batch is there, the batch waits while that task moves what the stream buffer
    holds at that moment (up to `max_size`), then takes it all. Not what arrives meanwhile: the
    task moves one record per loop round, and while fetches kept adding records about as fast,
    waiting for an empty buffer held a batch back 130 ms at 1,000/s (session 18, after the
    broker paused ~15 ms): the router routed nothing while its backlog grew.

    It never waits for a record that has not arrived: faust drops a queued record without
    yielding it while flow is suspended (a stop, a rebalance) or when it is from an earlier
    generation, so an event followed by one of those would wait, unacknowledged, for a record
    that might never come. At a stop, faust waits for every taken record to be acknowledged
    before it stops the agent: it then waited forever (found by the exactly-once kill test,
    session 6). Taking only what the task's queue held when the first event arrived (not the
    stream buffer) made batches small under a backlog on Tansu (no batch over 200 records in
    48, where the stream buffer held hundreds).
    """
    stream.enable_acks = False
    taken: asyncio.Queue[EventT] = asyncio.Queue(maxsize=max_size)

    async def take() -> None:
        async for event in stream.events():
            await taken.put(event)

    buffered = stream.channel.queue  # what faust has delivered and the stream not yet taken
    taking = asyncio.ensure_future(take())
    first: asyncio.Future[EventT] | None = None
    try:
        while True:
            if taken.empty():
                first = asyncio.ensure_future(taken.get())
                await asyncio.wait((first, taking), return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    taking.result()  # the stream's error, if it raised one
                    return  # the stream ended
                batch = [first.result()]
                first = None
            else:
                batch = [taken.get_nowait()]
            # What had arrived when the batch began, and only that: the task moves one record
            # per loop round (each is either queued or dropped), so records that kept arriving
            # meanwhile held the batch back for as long as they came faster than that.
            want = min(max_size - len(batch), taken.qsize() + buffered.qsize())
            # (A yield, not a poll: every round makes progress, and nothing else signals it.)
            while (taken.qsize() < want and not buffered.empty()  # noqa: ASYNC110
                   and not taking.done()):
                await asyncio.sleep(0)
            while len(batch) < max_size and not taken.empty():
                batch.append(taken.get_nowait())
            yield batch
    finally:
        taking.cancel()
        if first is not None:
            first.cancel()


@contextlib.contextmanager
def as_current(event: EventT) -> Iterator[None]:
    """Within the block, faust's table sees `event` as the record being processed."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
