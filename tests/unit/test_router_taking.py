"""`batches` over a real faust stream (an in-process channel; nothing connects to a broker)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import faust

from services.router.batches import batches


def channel_stream() -> tuple[faust.App, Any, Any]:
    app = faust.App("batches-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.flow_control.resume()  # as the consumer does once partitions are assigned
    channel = app.channel()
    return app, channel, app.stream(channel)


async def test_a_batch_is_not_held_for_records_faust_then_drops() -> None:
    # A stop suspends flow while records wait in the stream buffer; faust drops those without
    # yielding them. The record taken before must still reach the agent, or the stop waits
    # forever for its acknowledgement (the exactly-once kill test hung so).
    app, channel, stream = channel_stream()

    def suspend_after_a(value: str) -> str:
        if value == "a":
            app.flow_control.suspend()
        return value

    stream.add_processor(suspend_after_a)
    for value in ("a", "b", "c"):
        await channel.send(value=value)
    async with contextlib.aclosing(batches(stream, 10)) as taken:
        batch = await asyncio.wait_for(anext(taken), timeout=5)
    assert [event.value for event in batch] == ["a"]


async def test_a_batch_takes_what_the_stream_buffer_holds_in_order() -> None:
    _, channel, stream = channel_stream()
    values = [f"v{n}" for n in range(23)]
    for value in values:
        await channel.send(value=value)
    seen: list[str] = []
    sizes: list[int] = []
    async with contextlib.aclosing(batches(stream, 5)) as taken:
        while len(seen) < len(values):
            batch = await asyncio.wait_for(anext(taken), timeout=5)
            sizes.append(len(batch))
            seen.extend(event.value for event in batch)
            for event in batch:
                await stream.ack(event)
    assert seen == values
    assert sizes == [5, 5, 5, 5, 3]  # what the stream buffer held, up to the limit


async def test_records_arriving_while_a_batch_is_taken_wait_for_the_next_one() -> None:
    # The task that feeds a batch moves one record per loop round. Records that kept arriving
    # as fast must not hold the batch back (they held it 130 ms at 1,000/s): it takes what
    # the stream buffer held when it began.
    _, channel, stream = channel_stream()
    for n in range(3):
        await channel.send(value=f"early{n}")

    async def arrive() -> None:  # one record per loop round, for as long as the test runs
        for n in itertools.count():
            await channel.send(value=f"late{n}")
            await asyncio.sleep(0)  # a yield to the loop (the pace), not a wait for a result

    feeder = asyncio.ensure_future(arrive())
    try:
        async with contextlib.aclosing(batches(stream, 10_000)) as taken:
            first = await asyncio.wait_for(anext(taken), timeout=5)
            second = await asyncio.wait_for(anext(taken), timeout=5)
    finally:
        feeder.cancel()
    values = [event.value for event in first]
    assert values[:3] == ["early0", "early1", "early2"]
    # The buffer held the three, and at most a few that came in the rounds before the
    # batch began; not the thousands an empty buffer took to come.
    assert len(first) < 10, len(first)
    assert second and second[0].value.startswith("late")


async def test_a_stream_error_reaches_the_agent() -> None:
    _, channel, stream = channel_stream()

    def refuse(value: str) -> str:
        if value == "bad":
            raise ValueError("refused")
        return value

    stream.add_processor(refuse)
    await channel.send(value="bad")
    async with contextlib.aclosing(batches(stream, 10)) as taken:
        try:
            await asyncio.wait_for(anext(taken), timeout=5)
        except ValueError as error:
            assert str(error) == "refused"
        else:
            raise AssertionError("the stream's error was swallowed")
