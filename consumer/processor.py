"""The KCL record processor: a thin adapter from the MultiLang protocol to the DynamoDB sink.

Run by the MultiLangDaemon as ``python -m consumer.processor``, one process per leased shard.
Its stdout is the protocol channel: this module and everything it calls log to stderr only.

Contract: a batch is checkpointed (at its last record's sequence and sub-sequence number) only
after every record of it is in DynamoDB: in the records table, or, whole, in the quarantine
table (a poison record: not the producer's JSON, failing the storability contract, or refused
by DynamoDB for its own sake, found by the sink's bisection), logged at ERROR. No record can
stall a shard. If the batch cannot be written for a reason that is not about a record
(throttling past the write deadline, network, AccessDenied, a missing table), the processor
publishes ``WriteFailures`` (an alarm watches it) and exits without checkpointing; the daemon
then stops and, once restarted, replays the shard from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3 import processor

from common.logs import configure_logging
from common.settings import load
from consumer.config import ConsumerSettings, get_settings
from consumer.health import Heartbeat
from consumer.metrics import ConsumerMetrics
from consumer.records import KinesisRecord, PoisonRecord, quarantine_items, to_item
from consumer.sink import DynamoDBSink, SinkWriteError, WriteOutcome

log = logging.getLogger(__name__)

EXIT_WRITE_FAILED = 70  # EX_SOFTWARE
CHECKPOINT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of a batch: items written, records quarantined, and copies superseded (not
    written: a later copy of the same id is in the batch or already stored); together, every
    record of the batch."""

    written: list[dict[str, Any]]
    quarantined: int
    superseded: int


class Sink(Protocol):
    """Where items go: ``write`` returns once each is stored, superseded or refused (the
    outcome says which), or raises."""

    def write(self, items: list[dict[str, Any]]) -> WriteOutcome: ...


def _fail_stop(reason: str) -> NoReturn:
    """End this process at once, without checkpointing, so the KCL replays the batch.

    amazon_kclpy catches every exception from ``process_records`` and reports the batch done,
    which would let the next checkpoint skip the unwritten records; so no exception is raised.
    """
    log.critical("stopping the record processor without checkpoint", extra={"reason": reason})
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_WRITE_FAILED)


def convert(raw: Any) -> KinesisRecord:
    """The pure record for one ``amazon_kclpy.messages.Record``."""
    return KinesisRecord(
        data=raw.binary_data,
        partition_key=raw.partition_key,
        sequence_number=raw.sequence_number,
        sub_sequence_number=int(raw.sub_sequence_number or 0),
        # kclpy's approximate_arrival_timestamp is a naive local datetime; this is the epoch ms
        approximate_arrival_timestamp=raw.timestamp_millis,
    )


class RecordProcessor(processor.RecordProcessorBase):  # type: ignore[misc]  # kclpy has no types
    """Writes every record of a batch, then checkpoints at the batch's last record."""

    def __init__(
        self,
        sink: Sink,
        quarantine: Sink,
        sleep: Callable[[float], None] = time.sleep,
        metrics: ConsumerMetrics | None = None,
        heartbeat_dir: str | None = None,
        ttl_seconds: int = 0,
    ) -> None:
        self._sink = sink
        self._ttl_seconds = ttl_seconds
        self._quarantine = quarantine
        self._sleep = sleep
        self._metrics = metrics
        self._heartbeat_dir = heartbeat_dir
        self._heartbeat: Heartbeat | None = None
        self.shard_id = "unknown"

    def initialize(self, initialize_input: Any) -> None:
        """Remember the shard; nothing is checkpointed."""
        self.shard_id = initialize_input.shard_id
        if self._heartbeat_dir is not None:
            self._heartbeat = Heartbeat(self._heartbeat_dir, self.shard_id)
            self._heartbeat.idle()
        log.info("processing shard", extra={"shard_id": self.shard_id})

    def process_records(self, process_records_input: Any) -> None:
        """Write, quarantine, then checkpoint; an empty batch neither writes nor checkpoints."""
        records = process_records_input.records
        if not records:
            return
        if self._heartbeat is not None:
            self._heartbeat.busy()
        try:
            started = time.monotonic()
            retries_before = getattr(self._sink, "retries", 0)
            stored = self._store(records)
        except Exception as exc:  # SinkWriteError, or a bug: either way, nothing may be skipped
            if self._metrics is not None:
                self._metrics.write_failed()
            _fail_stop(f"{type(exc).__name__}: {exc}")
            return  # type: ignore[unreachable]  # reached only when a test replaces _fail_stop
        if self._metrics is not None:
            self._record_metrics(
                process_records_input,
                stored,
                started,
                getattr(self._sink, "retries", 0) - retries_before,
            )
        last = records[-1]
        try:
            self._checkpoint(
                process_records_input.checkpointer,
                last.sequence_number,
                int(last.sub_sequence_number or 0),
            )
        finally:
            if self._heartbeat is not None:
                self._heartbeat.idle()

    def _store(self, records: list[Any]) -> Stored:
        """Write the batch's items, then quarantine its poison records whole: those failing
        the contract, and those DynamoDB refused (the sink isolated them)."""
        items: dict[str, tuple[dict[str, Any], KinesisRecord]] = {}
        poison: list[dict[str, Any]] = []
        quarantined = superseded = 0
        for raw in records:
            record = convert(raw)
            try:
                item = to_item(record, self.shard_id, ttl_seconds=self._ttl_seconds)
            except PoisonRecord as bad:
                poison += self._quarantined(record, bad.reason)
                quarantined += 1
                continue
            if items.pop(item["id"]["S"], None) is not None:
                superseded += 1  # a later copy in the batch: the last one counts
            items[item["id"]["S"]] = (item, record)
        outcome = self._sink.write([item for item, _ in items.values()])
        for refused, why in outcome.refused:
            poison += self._quarantined(items.pop(refused["id"]["S"])[1], f"refused: {why}")
            quarantined += 1
        if poison:
            failed = self._quarantine.write(poison)
            if failed.refused:  # nowhere else to keep it: replay (and see the log)
                raise SinkWriteError(f"the quarantine refused an item: {failed.refused[0][1]}")
        for superseded_item in outcome.superseded:
            items.pop(superseded_item["id"]["S"])
        written = [item for item, _ in items.values()]
        return Stored(written, quarantined, superseded + len(outcome.superseded))

    def _quarantined(self, record: KinesisRecord, reason: str) -> list[dict[str, Any]]:
        """The quarantine items of a poison record; logged at ERROR with where and why."""
        log.error(
            "poison record quarantined",
            extra={
                "shard_id": self.shard_id,
                "sequence_number": record.sequence_number,
                "sub_sequence_number": record.sub_sequence_number,
                "reason": reason,
            },
        )
        return quarantine_items(record, self.shard_id, reason)

    def _record_metrics(self, batch: Any, stored: Stored, started: float, retries: int) -> None:
        assert self._metrics is not None
        write_ms = (time.monotonic() - started) * 1000
        end_to_end = [
            float(int(item["stored_at"]["N"]) - int(item["ingested_at"]["N"]))
            for item in stored.written
            if "ingested_at" in item
        ]
        behind = getattr(batch, "millis_behind_latest", None)
        self._metrics.batch(
            len(stored.written),
            stored.quarantined,
            write_ms,
            behind,
            end_to_end,
            retries,
            stored.superseded,
        )

    def lease_lost(self, lease_lost_input: Any) -> None:
        """Another worker owns the shard now: checkpointing is not possible, nor tried."""
        log.info("lease lost; not checkpointing", extra={"shard_id": self.shard_id})
        self._emit_metrics()

    def _emit_metrics(self) -> None:
        """The processor's end: its last metrics, and no heartbeat left to watch."""
        if self._metrics is not None:
            self._metrics.emit()
        if self._heartbeat is not None:
            self._heartbeat.gone()

    def shard_ended(self, shard_ended_input: Any) -> None:
        """Checkpoint the shard's end so the KCL starts on its children."""
        log.info("shard ended; checkpointing at its end", extra={"shard_id": self.shard_id})
        self._checkpoint(shard_ended_input.checkpointer, None, None)
        self._emit_metrics()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        """Checkpoint what was delivered (all of it is written) before the lease is released."""
        log.info("shutdown requested; checkpointing", extra={"shard_id": self.shard_id})
        self._checkpoint(shutdown_requested_input.checkpointer, None, None)
        self._emit_metrics()

    def _checkpoint(self, checkpointer: Any, sequence: str | None, sub: int | None) -> None:
        """Checkpoint, retrying throttling; a ShutdownException means another worker takes
        over (warning, no error); any other CheckpointError is logged and raised."""
        for attempt in range(1, CHECKPOINT_ATTEMPTS + 1):
            try:
                checkpointer.checkpoint(sequence, sub)
                return
            except CheckpointError as exc:
                extra = {"shard_id": self.shard_id, "error": exc.value, "attempt": attempt}
                if exc.value == "ThrottlingException" and attempt < CHECKPOINT_ATTEMPTS:
                    log.warning("checkpoint throttled; retrying", extra=extra)
                    self._sleep(0.2 * 2**attempt)
                    continue
                if exc.value == "ShutdownException":
                    log.warning("checkpoint refused: shutting down", extra=extra)
                    return
                log.error("checkpoint failed", extra=extra)
                raise


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the MultiLang protocol on stdin/stdout until the daemon closes stdin."""
    configure_logging("consumer")
    # no options (the daemon passes none); -h for a person: the settings, on stdout before any
    # protocol line could be
    settings = load(ConsumerSettings, "python -m consumer.processor", __doc__, argv, get_settings)
    logging.getLogger().setLevel(settings.log_level)
    deadline = settings.write_deadline_seconds
    sink = DynamoDBSink(
        settings.records_table,
        deadline_seconds=deadline,
        max_in_flight=settings.max_writes_in_flight,
    )
    quarantine = DynamoDBSink(settings.quarantine_table, deadline_seconds=deadline)
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # a stray print() in any library must not corrupt the protocol
    metrics = ConsumerMetrics(sys.stderr, settings.metrics_interval_seconds)
    metrics.start_timer()
    processor_ = RecordProcessor(
        sink,
        quarantine,
        metrics=metrics,
        heartbeat_dir=settings.heartbeat_dir,
        ttl_seconds=settings.item_ttl_seconds,
    )
    kcl.KCLProcess(processor_, sys.stdin, protocol_out, sys.stderr).run()


if __name__ == "__main__":
    main()
