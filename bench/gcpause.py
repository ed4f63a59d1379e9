"""Keep the bench's own garbage collector out of the latencies it measures.

The latency and inbox scenarios time each record with the bench process's clock: it sends,
and its consumer (or its inbox watcher) sees the answer. A collection of the bench's own heap
stops both. In one run at 1,000/s a full collection took 86.5 ms in the middle of the
measured rounds (the records built for every round, the samples, the reader's state): every
completion sent or read meanwhile was late, 143 samples over 25 ms, all of the run's tail
(bench/results/NOTES.md, session 19). The router's own collections were under 1 ms then.

So, as `timeit` does, the bench collects before it measures and not while it measures. The
processes measured are untouched: their collections stay in the figures.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def collections() -> int:
    """How many collections of any generation this process has run."""
    return sum(generation["collections"] for generation in gc.get_stats())


@contextmanager
def no_collections(counted: dict[str, int]) -> Iterator[None]:
    """Collect now, then run the block with the collector off (as it was after).

    `counted["bench_gc_collections"]` is set to the collections that ran in the block anyway:
    0 unless something called `gc.collect()`.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    before = collections()
    try:
        yield
    finally:
        counted["bench_gc_collections"] = collections() - before
        if was_enabled:
            gc.enable()
