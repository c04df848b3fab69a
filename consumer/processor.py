"""The KCL record processor: a thin adapter from the MultiLang protocol to the DynamoDB sink.

Run by the MultiLangDaemon as ``python -m consumer.processor``, one process per leased shard.
Its stdout is the protocol channel: this module and everything it calls log to stderr only.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, NoReturn

import boto3
from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3 import processor
from botocore.config import Config

from consumer.config import ConsumerSettings, get_settings
from consumer.logs import configure_logging
from consumer.records import KinesisRecord, PoisonRecord, to_item
from consumer.sink import DynamoDBSink, SinkWriteError

log = logging.getLogger(__name__)

EXIT_WRITE_FAILED = 70
CHECKPOINT_RETRIES = 5


def fail_stop(reason: str) -> NoReturn:
    """End this processor without checkpointing so the KCL replays from the last checkpoint.

    amazon_kclpy catches every exception from ``process_records`` and reports the batch done,
    which would let a later checkpoint skip the unwritten records; only SystemExit gets through.
    """
    log.error("stopping the record processor without checkpoint", extra={"reason": reason})
    sys.exit(EXIT_WRITE_FAILED)


class RecordProcessor(processor.RecordProcessorBase):  # type: ignore[misc]
    """Writes every record of a batch, then checkpoints at the batch's last record."""

    def __init__(self, sink: DynamoDBSink, sleep: Any = time.sleep) -> None:
        self._sink = sink
        self._sleep = sleep
        self.shard_id = "unknown"

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        log.info("processing shard", extra={"shard_id": self.shard_id})

    def process_records(self, process_records_input: Any) -> None:
        records = process_records_input.records
        if not records:
            return
        items = []
        for raw in records:
            record = KinesisRecord(
                data=raw.binary_data,
                partition_key=raw.partition_key,
                sequence_number=raw.sequence_number,
                sub_sequence_number=int(raw.sub_sequence_number or 0),
                arrival_time=raw.timestamp_millis,
            )
            try:
                items.append(to_item(record, self.shard_id))
            except PoisonRecord as poison:
                log.error(
                    "poison record skipped",
                    extra={"shard_id": self.shard_id, "sequence_number": record.sequence_number,
                           "sub_sequence_number": record.sub_sequence_number,
                           "reason": poison.reason},
                )  # fmt: skip
        try:
            self._sink.write(items)
        except SinkWriteError as exc:
            fail_stop(str(exc))
        last = records[-1]
        self._checkpoint(process_records_input.checkpointer, last.sequence_number,
                         int(last.sub_sequence_number or 0))  # fmt: skip

    def lease_lost(self, lease_lost_input: Any) -> None:
        log.info("lease lost; not checkpointing", extra={"shard_id": self.shard_id})

    def shard_ended(self, shard_ended_input: Any) -> None:
        log.info("shard ended; checkpointing at its end", extra={"shard_id": self.shard_id})
        self._checkpoint(shard_ended_input.checkpointer, None, None)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        log.info("shutdown requested; checkpointing", extra={"shard_id": self.shard_id})
        self._checkpoint(shutdown_requested_input.checkpointer, None, None)

    def _checkpoint(self, checkpointer: Any, sequence: str | None, sub: int | None) -> None:
        """Checkpoint, retrying throttling; a shutdown means another worker takes over."""
        for attempt in range(1, CHECKPOINT_RETRIES + 1):
            try:
                checkpointer.checkpoint(sequence, sub)
                return
            except CheckpointError as exc:
                extra = {"shard_id": self.shard_id, "error": exc.value, "attempt": attempt}
                if exc.value == "ThrottlingException" and attempt < CHECKPOINT_RETRIES:
                    log.warning("checkpoint throttled; retrying", extra=extra)
                    self._sleep(0.2 * 2**attempt)
                    continue
                if exc.value == "ShutdownException":
                    log.warning("checkpoint refused: shutting down", extra=extra)
                    return
                log.error("checkpoint failed", extra=extra)
                raise


def build_sink(settings: ConsumerSettings) -> DynamoDBSink:
    client = boto3.client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.dynamodb_endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )
    return DynamoDBSink(settings.records_table, client, settings.write_deadline_seconds)


def main() -> None:
    configure_logging("consumer")
    settings = get_settings()
    kcl.KCLProcess(RecordProcessor(build_sink(settings))).run()


if __name__ == "__main__":
    main()
