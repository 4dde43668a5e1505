"""Output partitioning: where Kafka's default partitioner puts a key."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams.worker.publisher import key_partition

# Kafka's own murmur2 test vectors (the Java client's Utils.murmur2, signed 32-bit).
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2)
@pytest.mark.parametrize("partitions", [1, 3, 8, 12, 64])
def test_a_key_goes_where_the_java_client_puts_it(
    key: bytes, java_hash: int, partitions: int
) -> None:
    # Java: Utils.toPositive(Utils.murmur2(key)) % numPartitions
    assert key_partition(key, partitions) == (java_hash & 0x7FFFFFFF) % partitions


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=256))
def test_the_cached_partition_is_aiokafkas(key: bytes, partitions: int) -> None:
    parts = list(range(partitions))
    assert key_partition(key, partitions) == DefaultPartitioner()(key, parts, parts)
    assert key_partition(key, partitions) == key_partition(key, partitions)  # from the cache
