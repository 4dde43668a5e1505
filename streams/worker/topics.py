"""Creating the topics Pulse reads and writes (idempotent), with the configured partitions."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import WorkerSettings


def topic_names(settings: WorkerSettings) -> list[str]:
    """Every topic Pulse needs before a worker starts (Faust creates its own changelog)."""
    names = [
        settings.events_topic,
        settings.ticks_topic,
        settings.dlq_topic,
        *settings.output_topics.values(),
    ]
    return list(dict.fromkeys(names))  # several output kinds share a topic


async def ensure_topics(settings: WorkerSettings) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_names(settings) if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another process won the race; the topic is there either way
        return missing
    finally:
        await admin.close()
