"""``python -m scaler``: the shard scaler service. SIGTERM or SIGINT ends it between checks."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import boto3

from common.logs import configure_logging
from common.settings import load
from scaler.config import ScalerSettings, get_settings
from scaler.notify import ConsumerCapacity, Notifier, SnsNotifier
from scaler.policy import Policy
from scaler.service import Scaler
from scaler.sources import CloudWatchSource, MetricSource, ProducerSource, fetch_with_key
from scaler.state import DynamoDBStateStore, StateStore
from scaler.stream import StreamAdmin


def build(settings: ScalerSettings) -> Scaler:
    session = boto3.session.Session(region_name=settings.region)
    kinesis = session.client("kinesis", endpoint_url=settings.kinesis_endpoint)
    source: MetricSource
    if settings.metrics_source == "producer":
        key = settings.producer_api_key
        source = ProducerSource(
            settings.urls,
            fetch_with_key(key.get_secret_value() if key else None),
            sample_seconds=settings.sample_seconds,
        )
    else:
        cloudwatch = session.client("cloudwatch", endpoint_url=settings.cloudwatch_endpoint)
        source = CloudWatchSource(cloudwatch, settings.stream_name, settings.shard_level_metrics)
    state: StateStore | None = None
    if settings.state_table:
        dynamodb = session.client("dynamodb", endpoint_url=settings.dynamodb_endpoint)
        state = DynamoDBStateStore(
            dynamodb, settings.state_table, settings.stream_name, settings.sample_seconds
        )
    notifier: Notifier | None = None
    if settings.notification_topic_arn:
        sns = session.client("sns", endpoint_url=settings.sns_endpoint)
        notifier = SnsNotifier(sns, settings.notification_topic_arn)
    consumers = None
    if settings.consumer_service:
        autoscaling = session.client(
            "application-autoscaling", endpoint_url=settings.application_autoscaling_endpoint
        )
        consumers = ConsumerCapacity(
            autoscaling,
            settings.consumer_service,
            settings.consumer_min_tasks,
            settings.consumer_max_tasks,
        )
    return Scaler(
        StreamAdmin(kinesis, settings.stream_name),
        source,
        Policy(settings.policy_config()),
        dry_run=settings.dry_run,
        wait_active_seconds=settings.wait_active_seconds,
        metrics_out=sys.stdout if settings.emf else None,
        state=state,
        notifier=notifier,
        consumers=consumers,
        sample_seconds=settings.sample_seconds,
    )


def main(argv: list[str] | None = None) -> None:
    settings = load(ScalerSettings, "python -m scaler", __doc__, argv, get_settings)
    configure_logging("scaler", level=settings.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    build(settings).run(settings.check_interval_seconds, stop, Path(settings.heartbeat_path))


if __name__ == "__main__":
    main()
