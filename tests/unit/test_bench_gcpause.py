"""The bench's collector is off while it measures, and as it was afterwards."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bench.gcpause import collections, no_collections


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_no_collection_runs_in_the_block_however_much_it_allocates() -> None:
    gc.enable()
    counted: dict[str, int] = {}
    before = collections()
    with no_collections(counted):
        assert not gc.isenabled()
        cycles = []
        for _ in range(50_000):  # gen0's threshold is 700 allocations
            node: list[object] = []
            node.append(node)
            cycles.append(node)
    assert counted["bench_gc_collections"] == 0
    assert collections() > before  # the collection it made before the block
    assert gc.isenabled()


def test_an_explicit_collection_in_the_block_is_counted() -> None:
    counted: dict[str, int] = {}
    with no_collections(counted):
        gc.collect()
    assert counted["bench_gc_collections"] == 1


def test_a_collector_that_was_off_stays_off_and_an_error_restores_it() -> None:
    gc.disable()
    with no_collections({}):
        pass
    assert not gc.isenabled()
    gc.enable()
    counted: dict[str, int] = {}
    with pytest.raises(RuntimeError), no_collections(counted):
        raise RuntimeError("a scenario failed")
    assert gc.isenabled() and counted["bench_gc_collections"] == 0
