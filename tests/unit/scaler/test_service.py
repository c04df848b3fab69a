"""The scaler service with fakes: sources, the stream's calls, dry run, refusals, metrics."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from common.kinesis import Shard, even_shards
from scaler.config import ScalerSettings
from scaler.model import Action, Load, Sample
from scaler.policy import Policy, PolicyConfig
from scaler.service import Scaler
from scaler.sources import CloudWatchSource, ProducerSource, parse_shard_counts
from scaler.stream import StreamAdmin, StreamNotActive
from tests.fakes import FakeKinesis

MIB = 1024 * 1024


class FakeKinesisAdmin:
    """Just the stream calls the scaler makes, recorded (not applied: a test sets the shards a
    reshard leaves). ListShards is the shared fake's, in pages of two with a closed shard."""

    def __init__(self, shards: list[Shard], refuse: str | None = None) -> None:
        self.shards = shards
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.statuses = ["ACTIVE"]
        self.refuse = refuse

    def describe_stream_summary(self, StreamName: str) -> dict[str, Any]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"StreamDescriptionSummary": {"StreamStatus": status}}

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        closed = [Shard("shardId-closed", 0, 1)]
        return FakeKinesis(self.shards, closed=closed, page_size=2).list_shards(**kwargs)

    def _call(self, name: str, **kwargs: Any) -> None:
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse, "Message": "no"}}, name)
        self.calls.append((name, kwargs))

    def update_shard_count(self, **kwargs: Any) -> None:
        self._call("update_shard_count", **kwargs)

    def split_shard(self, **kwargs: Any) -> None:
        self._call("split_shard", **kwargs)

    def merge_shards(self, **kwargs: Any) -> None:
        self._call("merge_shards", **kwargs)


class ListSource:
    def __init__(self, samples: list[Sample]) -> None:
        self._samples = samples

    def samples(self, shards: Any, count: int) -> list[Sample]:
        return self._samples[-count:]

    def now(self) -> int:
        return self._samples[-1].minute + 1 if self._samples else 0


def busy(units: float, minutes: int = 5) -> list[Sample]:
    return [Sample(m, Load(units * MIB, 0)) for m in range(minutes)]


def scaler(kinesis: FakeKinesisAdmin, samples: list[Sample], **kwargs: Any) -> Scaler:
    admin = StreamAdmin(kinesis, "s", sleep=lambda _s: None)
    return Scaler(admin, ListSource(samples), Policy(PolicyConfig()), **kwargs)


def test_scale_up_calls_update_shard_count_and_waits_for_active() -> None:
    kinesis = FakeKinesisAdmin(even_shards(4))
    kinesis.statuses = ["ACTIVE", "UPDATING", "UPDATING", "ACTIVE"]
    out = io.StringIO()
    decision = scaler(kinesis, busy(3.8), metrics_out=out).check()
    assert decision.action is Action.UPDATE_SHARD_COUNT
    expected = {"StreamName": "s", "TargetShardCount": 6, "ScalingType": "UNIFORM_SCALING"}
    assert kinesis.calls == [("update_shard_count", expected)]
    assert kinesis.statuses == ["ACTIVE"]  # polled until ACTIVE
    emf = json.loads(out.getvalue())
    assert (emf["OpenShards"], emf["TargetShards"], emf["ScalingOperations"]) == (4, 6, 1)
    assert emf["Utilisation"] == 95.0
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "KinesisIngest/Scaler"


def test_dry_run_decides_and_logs_but_calls_nothing(caplog: pytest.LogCaptureFixture) -> None:
    kinesis = FakeKinesisAdmin(even_shards(4))
    caplog.set_level("INFO")
    decision = scaler(kinesis, busy(3.8), dry_run=True).check()
    assert decision.action is Action.UPDATE_SHARD_COUNT and kinesis.calls == []
    record = next(r for r in caplog.records if r.getMessage().startswith("decision"))
    # the decision's fields, set on the log record by `extra`
    assert (record.applied, record.dry_run, record.target) == (False, True, 6)  # type: ignore[attr-defined]  # logging's extra
    assert "92%" in record.getMessage() or "95%" in record.getMessage()


def test_a_refused_update_switches_to_split_until_the_budget_returns() -> None:
    kinesis = FakeKinesisAdmin(even_shards(4), refuse="LimitExceededException")
    service = scaler(kinesis, busy(3.8))
    service.check()
    assert not service.policy.update_allowed and service.history == []
    kinesis.refuse = None
    assert service.check().action is Action.SPLIT
    assert kinesis.calls[0][0] == "split_shard"


def test_an_updating_stream_is_left_alone() -> None:
    kinesis = FakeKinesisAdmin(even_shards(4))
    kinesis.statuses = ["UPDATING"]
    decision = scaler(kinesis, busy(3.8)).check()
    assert (decision.action, decision.reason) == (Action.HOLD, "stream is UPDATING")


def test_wait_active_gives_up_after_its_timeout() -> None:
    kinesis = FakeKinesisAdmin(even_shards(1))
    kinesis.statuses = ["UPDATING"]
    ticks = iter(range(100))
    admin = StreamAdmin(kinesis, "s", sleep=lambda _s: None, clock=lambda: next(ticks))
    with pytest.raises(StreamNotActive):
        admin.wait_active(timeout=5)


def test_open_shards_skips_closed_ones_across_pages() -> None:
    shards = even_shards(3)
    assert StreamAdmin(FakeKinesisAdmin(shards), "s").open_shards() == shards


PROMETHEUS = """# TYPE producer_shard_kinesis_records_put_total counter
producer_shard_kinesis_records_put_total{shard="a"} %d
producer_shard_kinesis_bytes_put_total{shard="a"} %d
producer_shard_throttled_total{shard="a"} %d
producer_user_records_put_total 5
"""


def test_producer_source_turns_counter_increases_into_rates() -> None:
    # GIVEN two producers scraped 10 s apart; the second restarted in between
    pages = {"p1": [(10, 1000, 0), (110, 11_000, 2)], "p2": [(500, 9000, 0), (20, 2000, 1)]}
    clock = iter([0.0, 10.0])
    source = ProducerSource(["p1", "p2"], fetch=lambda u: PROMETHEUS % pages[u].pop(0),
                            clock=lambda: next(clock), sample_seconds=10,
                            wall=lambda: 1_000_025.0)  # fmt: skip
    shards = [Shard("a", 0, 1), Shard("b", 2, 3)]
    assert source.samples(shards, 5) == []  # the first scrape is the baseline
    (sample,) = source.samples(shards, 5)
    # THEN rates per shard (p2's counters restarted: their values count whole)
    assert sample.shards["a"] == Load((10_000 + 2000) / 10, (100 + 20) / 10)
    assert sample.shards["b"] == Load()  # open, nothing written to it
    assert sample.throttled == 3 and sample.stream == sample.shards["a"]
    # time in check intervals of the wall clock: a restarted scaler's history stays comparable
    assert source.now() == sample.minute == 100_002


def test_producer_source_does_not_count_a_producer_again_after_a_missed_scrape() -> None:
    # GIVEN a producer that does not answer one scrape, then answers with its counts grown
    pages: list[Any] = [(10, 1000, 0), OSError("timed out"), (30, 3000, 0)]

    def fetch(_url: str) -> str:
        page = pages.pop(0)
        if isinstance(page, Exception):
            raise page
        return PROMETHEUS % page

    clock = iter([0.0, 10.0, 20.0])
    source = ProducerSource(["p"], fetch=fetch, clock=lambda: next(clock), sample_seconds=10)
    shards = [Shard("a", 0, 1)]
    # WHEN it samples three times
    for _ in range(3):
        samples = source.samples(shards, 5)
    # THEN the last sample has the growth since the last answer, not the whole count again
    assert [s.stream for s in samples] == [Load(), Load(2000 / 10, 20 / 10)]


def test_parse_shard_counts_ignores_other_metrics() -> None:
    counts = parse_shard_counts(PROMETHEUS % (1, 2, 3))
    assert set(counts) == {"producer_shard_kinesis_records_put_total",
                           "producer_shard_kinesis_bytes_put_total",
                           "producer_shard_throttled_total"}  # fmt: skip


class FakeCloudWatch:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        stamps = [datetime(2026, 1, 1, 0, m, tzinfo=UTC) for m in (1, 2)]
        values = {"sb": [60 * MIB, 120 * MIB], "sr": [600, 1200], "st": [0, 30],
                  "h0b": [60 * MIB, 120 * MIB], "h0r": [600, 1200]}  # fmt: skip
        results = [{"Id": q["Id"], "Timestamps": stamps, "Values": values.get(q["Id"], [0, 0])}
                   for q in kwargs["MetricDataQueries"]]  # fmt: skip
        return {"MetricDataResults": results}


def test_cloudwatch_source_reads_stream_and_shard_sums_per_minute() -> None:
    client = FakeCloudWatch()
    now = datetime(2026, 1, 1, 0, 4, 30, tzinfo=UTC).timestamp()
    source = CloudWatchSource(client, "s", shard_level=True, clock=lambda: now)
    shards = [Shard("shardId-0", 0, 2**128 - 1)]
    first, second = source.samples(shards, 2)
    assert second.stream == Load(2 * MIB, 20) and second.throttled == 30
    assert second.shards == {"shardId-0": Load(2 * MIB, 20)}
    assert (first.minute, second.minute, source.now()) == (
        int(datetime(2026, 1, 1, 0, 1, tzinfo=UTC).timestamp() // 60),
        first.minute + 1, first.minute + 3)  # fmt: skip
    (request,) = client.requests
    assert request["EndTime"] == datetime(2026, 1, 1, 0, 3, tzinfo=UTC)  # last full minute
    names = {q["MetricStat"]["Metric"]["MetricName"] for q in request["MetricDataQueries"]}
    assert names == {"IncomingBytes", "IncomingRecords", "WriteProvisionedThroughputExceeded"}


def test_settings_defaults_are_the_simulated_policy() -> None:
    settings = ScalerSettings(stream_name="s")
    assert settings.policy_config() == PolicyConfig()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"scale_down_pct": 80}, "scale_down_pct < target_pct"),
        ({"metrics_source": "producer"}, "needs producer_metrics_urls"),
        ({"scale_up_step": "fast"}, "step must be"),
    ],
)
def test_invalid_settings_fail_clearly(env: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScalerSettings(stream_name="s", **env)
