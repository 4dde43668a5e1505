"""The worker's metrics: every one is exported, and the batch histograms expose what
prometheus-client's own `Histogram` would for the same observations."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from streams import metrics
from streams.metrics import BatchHistogram

BUCKETS = (0.001, 0.01, 0.1, 1, 5)


def _exposition(registry: CollectorRegistry) -> tuple[str, float]:
    """The exposition text but the sum, and the sum. Histogram adds a `_created` sample (its
    creation time); the buckets and the count must match to the byte, and the sum, added in
    another order, to rounding."""
    lines, total = [], 0.0
    for line in generate_latest(registry).decode().splitlines():
        if "_sum " in line:
            total = float(line.split()[-1])
        elif "_created" not in line:
            lines.append(line)
    return "\n".join(lines), total


def _same(ours: CollectorRegistry, theirs: CollectorRegistry) -> None:
    (text, total), (ref_text, ref_total) = _exposition(ours), _exposition(theirs)
    assert text == ref_text
    assert math.isclose(total, ref_total, rel_tol=1e-12, abs_tol=1e-12)


def test_every_worker_metric_is_exported_on_the_workers_endpoint() -> None:
    text = generate_latest(metrics.REGISTRY).decode()
    defined = [
        m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase | BatchHistogram)
    ]
    assert len(defined) > 20
    missing = []
    for m in defined:
        name = m._name if isinstance(m, MetricWrapperBase) else m.name
        if not re.search(rf"^# HELP {re.escape(name)}(_total)? ", text, re.M):
            missing.append(name)
    assert missing == []


values = st.one_of(
    st.sampled_from([0.0, *BUCKETS]),  # on a bound: counted in that bound's bucket
    st.floats(min_value=0, max_value=20, allow_nan=False),
)


@given(batches=st.lists(st.tuples(values, st.integers(1, 5)), max_size=20))
def test_observing_a_value_n_times_at_once_is_observing_it_n_times(
    batches: list[tuple[float, int]],
) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    h = BatchHistogram("t_seconds", "doc", BUCKETS, ours)
    ref = Histogram("t_seconds", "doc", buckets=BUCKETS, registry=theirs)
    for value, times in batches:
        h.observe(value, times)
        for _ in range(times):
            ref.observe(value)
    _same(ours, theirs)


@given(batches=st.lists(st.lists(values, max_size=10), max_size=10))
def test_observing_a_batch_of_values_is_observing_each(batches: list[list[float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    h = BatchHistogram("t_seconds", "doc", BUCKETS, ours)
    ref = Histogram("t_seconds", "doc", buckets=BUCKETS, registry=theirs)
    for batch in batches:
        h.observe_all(iter(batch))
        for value in batch:
            ref.observe(value)
    _same(ours, theirs)
