"""The worker's Prometheus gauges (lag, users by stage, tier and RFM segment, recall cells),
refreshed on a timer from the partitions' indexes rather than per record."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from streams import metrics
from streams.core.lifecycle import Stage

if TYPE_CHECKING:
    from streams.worker.processor import Processor


def refresh_gauges(proc: Processor) -> None:
    """Set the consumer-lag, users-by-stage/tier and recall gauges from the indexes."""
    partitions = proc.partitions
    active = partitions.active_partitions()
    metrics.CONSUMER_LAG.clear()
    stages: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    rfm: Counter[str] = Counter()
    recall: Counter[tuple[str, str, str, str]] = Counter()
    for partition in active:
        partitions.check_log(partition)
        lag = partitions.lag(partition)
        if lag is not None:
            metrics.CONSUMER_LAG.labels(str(partition)).set(lag)
        index = partitions.indexes.get(partition)
        if index is not None:  # not yet rebuilt: nothing handled since the assignment
            stages.update(index.stages)
            tiers.update(index.tiers)
            rfm.update(index.rfm)
            recall.update(index.recall)
    for stage in Stage.ALL:
        metrics.USERS_BY_STAGE.labels(stage).set(stages[stage])
    for tier in proc.policy.tier_names:
        metrics.USERS_BY_TIER.labels(tier).set(tiers[tier])
    for segment in proc.policy.rfm.segments.values():
        metrics.USERS_BY_RFM_SEGMENT.labels(segment).set(rfm[segment])
    # Cells seen before stay at 0 rather than vanish (a scrape never sees a half update).
    proc.recall_cells.update(recall)
    for cell in proc.recall_cells:
        metrics.RECALL_WARNINGS.labels(*cell).set(recall[cell])
