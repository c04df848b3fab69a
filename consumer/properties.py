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
    """``key = value`` lines for the daemon, which reads them with ``java.util.Properties``.

    ``executable`` is the processor's command line (the daemon splits it on spaces).
    ``retrievalMode`` is always written and no polling-only key ever is; the endpoints,
    ``workerId`` and ``leaseAssignmentIntervalMillis`` only when set (local runs). Raises
    ``ValueError`` when a value spans more than one line.
    """
    values: dict[str, str | int | None] = {
        "executableName": executable,
        "streamName": settings.stream_name,
        "applicationName": settings.application_name,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "regionName": settings.region,
        # AT_TIMESTAMP is not accepted as initialPositionInStream; its moment goes in
        # initialPositionInStreamExtended, epoch seconds (KCL 3.1.3 multilang:
        # MultiLangDaemonConfiguration's converter, KinesisClientLibConfiguratorTest)
        "initialPositionInStream": (
            None if settings.initial_position == "AT_TIMESTAMP" else settings.initial_position
        ),
        "initialPositionInStreamExtended": settings.initial_epoch_seconds,
        "retrievalMode": settings.retrieval_mode,
        "kinesisEndpoint": settings.kinesis_endpoint,
        "dynamoDBEndpoint": settings.dynamodb_endpoint,
        "metricsLevel": settings.metrics_level,
        "failoverTimeMillis": settings.failover_time_millis,
        # MultiLangDaemonConfiguration.leaseAssignmentIntervalMillis (KCL 3.1.3); unset: the
        # KCL's 2 x failoverTimeMillis (LeaseManagementConfig)
        "leaseAssignmentIntervalMillis": settings.lease_assignment_interval_millis,
        "shardSyncIntervalMillis": settings.shard_sync_interval_millis,
        "parentShardPollIntervalMillis": settings.parent_shard_poll_interval_millis,
        "shutdownGraceMillis": settings.shutdown_grace_millis,
        # MultiLangDaemonConfiguration.setWorkerId (KCL 3.1.3 multilang); unset: a random UUID
        "workerId": settings.worker_id,
        "maxLeasesForWorker": settings.max_leases_for_worker,
    }
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"{key} must be a single line")
        lines.append(f"{key} = {_escape(text)}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """``text`` as a java.util.Properties value: backslashes doubled, non-ASCII as \\uXXXX."""
    out = []
    for char in text.replace("\\", "\\\\"):
        if char.isascii():
            out.append(char)
            continue
        encoded = char.encode("utf-16-be", errors="surrogatepass")
        out.extend(f"\\u{encoded[i : i + 2].hex()}" for i in range(0, len(encoded), 2))
    return "".join(out)
