"""How the router takes records from faust in batches, and stores state for one of them.

`batches` yields what is waiting, as soon as nothing more is: no linger, so at a low rate a
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

import contextlib
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from faust.streams import _current_event
from faust.types import EventT


async def batches(stream: Any, max_size: int) -> AsyncIterator[list[EventT]]:
    """Yield lists of up to `max_size` events; the caller must `await stream.ack(e)` each."""
    stream.enable_acks = False
    waiting = stream.channel.queue
    batch: list[EventT] = []
    async for event in stream.events():
        batch.append(event)
        if len(batch) >= max_size or waiting.empty():
            yield batch
            batch = []


@contextlib.contextmanager
def as_current(event: EventT) -> Iterator[None]:
    """Within the block, faust's table sees `event` as the record being processed."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
