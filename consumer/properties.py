"""The KCL MultiLangDaemon's properties file, rendered from validated settings."""

from __future__ import annotations

from consumer.config import ConsumerSettings

# Keys that make the KCL poll (GetRecords) instead of using enhanced fan-out when
# retrievalMode is DEFAULT. This module never writes them and always writes retrievalMode.
POLLING_ONLY_KEYS = frozenset(
    {
        "maxRecords",
        "idleTimeBetweenReadsInMillis",
        "retryGetRecordsInSeconds",
        "maxGetRecordsThreadPool",
        "maxCacheByteSize",
        "maxPendingProcessRecordsInput",
        "maxRecordsCount",
    }
)


def render_properties(settings: ConsumerSettings, executable: str) -> str:
    """``key = value`` lines for the daemon; endpoints only when set (local runs)."""
    values: dict[str, str | int | None] = {
        "executableName": executable,
        "streamName": settings.stream_name,
        "applicationName": settings.application_name,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "regionName": settings.region,
        "initialPositionInStream": settings.initial_position,
        "retrievalMode": settings.retrieval_mode,
        "kinesisEndpoint": settings.kinesis_endpoint,
        "dynamoDBEndpoint": settings.dynamodb_endpoint,
        "metricsLevel": settings.metrics_level,
        "failoverTimeMillis": settings.failover_time_millis,
        "shardSyncIntervalMillis": settings.shard_sync_interval_millis,
        "parentShardPollIntervalMillis": settings.parent_shard_poll_interval_millis,
        "shutdownGraceMillis": settings.shutdown_grace_millis,
    }
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"{key} must be a single line")
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
