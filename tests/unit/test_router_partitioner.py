"""The router's partitioner puts every key where Kafka's own clients put it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.partitioner import MemoPartitioner

PARTITIONS = st.integers(min_value=1, max_value=64).map(lambda n: list(range(n)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(keys=st.lists(st.binary(max_size=80), min_size=1, max_size=40), partitions=PARTITIONS)
def test_each_key_goes_to_the_partition_kafka_s_default_partitioner_picks(
        keys: list[bytes], partitions: list[int]) -> None:
    memo, default = MemoPartitioner(size=8), DefaultPartitioner()
    for key in keys + keys:  # the second pass is answered from the memo (or after a clear)
        assert memo(key, partitions, partitions) == default(key, partitions, partitions)


def test_the_memo_stays_within_its_size() -> None:
    memo = MemoPartitioner(size=10)
    for n in range(1000):
        memo(f"SN-{n}".encode(), [0, 1, 2], [0, 1, 2])
    assert len(memo._hashes) <= 10


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    memo = MemoPartitioner()
    assert {memo(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
