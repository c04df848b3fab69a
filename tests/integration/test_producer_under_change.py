"""The pipeline on the real local stack while things change under it: the stream resharded
5 -> 10 -> 5 shards during traffic, the producer SIGTERMed under load, poison records (posted,
and put into the stream behind the producer's back), and a client retrying with its own ids
around a producer restart. Every acknowledged record must end up in DynamoDB, once; through
the reshards each partition key's records are in the stream in the order they were sent
(their first copies' sequence numbers increase, across parent and child shards) and each item
holds one of its copies (a PutRecords call retried after a timeout may have been taken too:
the item then holds the copy the consumer wrote last, minted ids being written unconditionally);
a poison record is refused at the door or quarantined whole, and the stack keeps running.

For the order check each key sends its next record only once the previous one is
acknowledged, so the order Kinesis accepted them in is the order they were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from common import envelope
from common.kinesis import list_shards
from consumer.replay import replay, scan_all, whole
from loadgen.stored import stored_items
from local_stack.processes import wait_until
from local_stack.stack import LocalStack, StackConfig
from tests.integration.chaos import leftovers
from tests.integration.traffic import open_shards, send, wait_stored
from tests.kpl import sub_records
from tests.polling import eventually, eventually_async
from tests.ports import PRODUCER_UNDER_CHANGE

pytestmark = pytest.mark.integration

CONFIG = dict(**PRODUCER_UNDER_CHANGE, stream_name="change-stream", shard_count=5)
KEYS = 64  # enough that every shard of ten gets some keys (P(one gets none) ~ 1%)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state: Path = tmp_path_factory.mktemp("stack")
    # POLLING: kinesis-mock's SubscribeToShard stalls once a subscribed shard is closed by a
    # reshard (no further events, no child shards), so the KCL would wait on the parents; the
    # producer's behaviour under test does not depend on how the consumer reads.
    config = StackConfig(state_dir=state, retrieval_mode="POLLING", scaler="off", **CONFIG)
    with LocalStack(config) as running:
        yield running
    assert leftovers(running) == {}  # a clean stop leaves no process and no port behind


async def _key_sender(client: httpx.AsyncClient, key: str, stop: asyncio.Event) -> list[str]:
    """POST records for ``key`` one at a time until ``stop``; the acknowledged ids, in order."""
    acked: list[str] = []
    n = 0
    while not stop.is_set():
        try:
            response = await client.post("/", json={"data": {"n": n}, "partition_key": key})
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200:
            acked.append(response.json()["id"])
        n += 1
        await asyncio.sleep(0.4)
    return acked


def _reshard(stack: LocalStack, target: int, timeout: float = 60) -> None:
    kinesis = stack.client("kinesis")
    kinesis.update_shard_count(
        StreamName=stack.config.stream_name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
    )

    def status_and_shards() -> tuple[str, int]:
        summary = kinesis.describe_stream_summary(StreamName=stack.config.stream_name)
        return summary["StreamDescriptionSummary"]["StreamStatus"], open_shards(stack)

    eventually(
        status_and_shards,
        until=lambda seen: seen == ("ACTIVE", target),
        timeout=timeout,
        interval=0.5,
        what=f"the stream ACTIVE with {target} open shards (status, open shards)",
    )


def test_reshard_5_10_5_under_traffic_keeps_every_record_and_per_key_order(
    stack: LocalStack,
) -> None:
    started = time.time()

    async def scenario() -> dict[str, list[str]]:
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=stack.config.producer_url, timeout=60) as client:
            senders = {
                f"key-{k}": asyncio.create_task(_key_sender(client, f"key-{k}", stop))
                for k in range(KEYS)
            }
            # GIVEN records flowing for 64 keys on 5 shards
            await asyncio.sleep(8)
            # WHEN the stream doubles, then halves again, with the traffic going on
            await asyncio.to_thread(_reshard, stack, 10)
            await asyncio.sleep(12)
            await asyncio.to_thread(_reshard, stack, 5)
            await asyncio.sleep(12)
            stop.set()
            return {key: await task for key, task in senders.items()}

    sent = asyncio.run(scenario())
    acked = [record_id for ids in sent.values() for record_id in ids]
    assert len(acked) > 2000, len(acked)  # ~64 keys x 2/s x 40 s

    # THEN every acknowledged record is stored
    assert wait_stored(stack, acked, timeout=300) == set()
    items = _items(stack, acked)
    # AND the records went through the 5 first shards, their 10 children and the 5 last ones
    shards = {item["shard_id"]["S"] for item in items.values()}
    assert len(shards) >= 18, sorted(shards)
    sys.stderr.write(f"fault table: reshard 5-10-5: {len(acked)} acknowledged, {len(items)} "
                     f"stored, {len(shards)} shards, {KEYS} keys\n")  # fmt: skip
    # AND per key, the records are in the stream in the order they were sent (the first copy
    # of each: a PutRecords call the producer retried after a timeout may have been taken as
    # well, so a record can be in the stream twice), and each item holds one of its copies
    copies = _copies_in_stream(stack, set(acked), since=started)
    stored_later = 0
    for key, ids in sent.items():
        firsts = [copies[i][0] for i in ids]
        assert firsts == sorted(set(firsts)), (key, [(i, copies[i]) for i in ids])
        for i in ids:
            stored = (
                int(items[i]["sequence_number"]["S"]),
                int(items[i]["sub_sequence_number"]["N"]),
            )
            assert stored in copies[i], (i, stored, copies[i])
            stored_later += stored != copies[i][0]
        assert {items[i]["partition_key"]["S"] for i in ids} == {key}
    twice = sum(len(c) > 1 for c in copies.values())
    sys.stderr.write(f"fault table: reshard 5-10-5: {twice} records in the stream twice, "
                     f"{stored_later} stored from a later copy\n")  # fmt: skip


def _copies_in_stream(
    stack: LocalStack, ids: set[str], since: float
) -> dict[str, list[tuple[int, int]]]:
    """Every position (sequence number, sub-record index) each of ``ids`` holds in the stream,
    in order, read from every shard (open or closed) from ``since`` on."""
    kinesis, stream = stack.client("kinesis"), stack.config.stream_name
    copies: dict[str, list[tuple[int, int]]] = {i: [] for i in ids}
    for shard in list_shards(kinesis, stream):
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="AT_TIMESTAMP",
            Timestamp=since)["ShardIterator"]  # fmt: skip
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                for index, (_, _, data) in enumerate(
                    sub_records(record["Data"], record["PartitionKey"])
                ):
                    with contextlib.suppress(envelope.NotAnEnvelope):  # another test's poison
                        found = copies.get(envelope.load(data).id)
                        if found is not None:
                            found.append((int(record["SequenceNumber"]), index))
            caught_up = not page["Records"] and page.get("MillisBehindLatest", 0) == 0
            iterator = None if caught_up else page.get("NextShardIterator")
            time.sleep(0.2)  # 5 GetRecords per second per shard (Kinesis quotas)
    missing = [i for i, found in copies.items() if not found]
    assert missing == [], f"{len(missing)} acknowledged records not in the stream: {missing[:5]}"
    return {i: sorted(found) for i, found in copies.items()}


def _items(stack: LocalStack, ids: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """The stored items of ``ids``, by id."""
    ddb, table = stack.client("dynamodb"), stack.config.records_table
    return {item["id"]["S"]: item for item in stored_items(ddb, table, ids, consistent=True)}


def test_sigterm_under_load_loses_no_acknowledged_record(stack: LocalStack) -> None:
    # GIVEN the producer under steady load
    producer = stack.process("producer")

    async def scenario() -> list[str]:
        acked: list[str] = []
        sender = asyncio.create_task(send(stack.config.producer_url, 400, 100, 0, acked))
        await eventually_async(
            lambda: len(acked),
            until=lambda count: count >= 50,
            timeout=30,
            interval=0.05,
            what="50 records acknowledged",
        )
        # WHEN it gets SIGTERM mid-stream, once 50 records were acknowledged
        producer.signal(signal.SIGTERM)
        return await sender

    acked = asyncio.run(scenario())
    # THEN it shuts down cleanly (uvicorn re-raises the SIGTERM it caught once its shutdown is
    # complete) and every record it acknowledged is in DynamoDB
    assert producer.proc is not None and producer.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in producer.log_tail(5)
    assert 50 <= len(acked) < 400
    assert wait_stored(stack, acked, timeout=180) == set()


def _producer_up(stack: LocalStack) -> None:
    """Start the producer again if a test stopped it, and wait until it answers."""
    producer = stack.process("producer")
    if not producer.running():
        producer = stack.restart("producer")
    health = f"{stack.config.producer_url}/health"
    wait_until("the producer", lambda: httpx.get(health, timeout=2).status_code == 200, 60,
               producer)  # fmt: skip


def _run_id() -> str:
    """A random tag for this run's ids, letters only: a hex tag such as ``4e123abc`` looks like
    a number with a three-digit exponent, which sends the whole body to the exact parser and
    the FastAPI route; the poison test sends such a batch on purpose, beside one that the
    fast path serves, rather than leave the way to chance."""
    return uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))


def _nested(levels: int) -> bytes:
    return b'{"a": ' * levels + b"1" + b"}" * levels


def test_poison_cases_are_refused_or_quarantined_whole_and_ordinary_records_flow(
    stack: LocalStack,
) -> None:
    _producer_up(stack)
    run = _run_id()
    json_type = {"content-type": "application/json"}
    # GIVEN the poison cases, posted to the producer
    posted = {
        "1e126": (b'{"data": 1e126}', 422),
        "1e-131": (b'{"data": 1e-131}', 422),
        "a 70,000-character map key": (b'{"data": {"%s": 1}}' % (b"k" * 70_000), 422),
        "a 500 KB record": (b'{"data": "%s"}' % (b"x" * 500_000), 413),
        "a 5,000-digit integer": (b'{"data": %s}' % (b"7" * 5000), 422),
        "nested 1,000 deep": (b'{"data": %s}' % _nested(1000), 422),
        "nested 5,000 deep": (b'{"data": %s}' % _nested(5000), 422),
        "21 significant digits": (b'{"id": "exact-%s", "data": 123456789.123456789012}'
                                  % run.encode(), 200),
    }  # fmt: skip
    answers = {}
    with httpx.Client(base_url=stack.config.producer_url, timeout=60) as client:
        for case, (body, _) in posted.items():
            answers[case] = client.post("/", content=body, headers=json_type).status_code
        # (the same batch both ways in: "4e123abc" sends its body to the exact parser)
        batch, routed = (client.post("/batch", headers=json_type, content=b'{"records": [{"id":'
                                     b' "batch-%s-%s", "data": 1, "partition_key": "%s"}, '
                                     b'{"data": %s}]}' % (way, run.encode(), way, _nested(1000))
                                     ).json() for way in (b"first", b"4e123abc"))  # fmt: skip
        # AND records the producer would refuse, put into the stream behind its back (another
        # writer, or a gap in the contract): the consumer must quarantine each whole
        kinesis = stack.client("kinesis")
        direct = {
            "900 KB item": b'{"id": "big-%s", "ts": 1, "data": "%s"}' % (run.encode(),
                                                                       b"y" * 900_000),
            "1e126": b'{"id": "n-%s", "ts": 1, "data": [1e126]}' % run.encode(),
            "70,000-byte key": b'{"id": "k-%s", "ts": 1, "data": {"%s": 1}}' % (run.encode(),
                                                                               b"k" * 70_000),
            "5,000-digit integer": b'{"id": "i-%s", "ts": 1, "data": %s}' % (run.encode(),
                                                                            b"7" * 5000),
            "1 MiB, not JSON": b"\xff" + run.encode() + b"\x00" * (1024 * 1024 - 10),
        }  # fmt: skip
        where = {case: kinesis.put_record(StreamName=stack.config.stream_name, Data=raw,
                                          PartitionKey="p")["SequenceNumber"]
                 for case, raw in direct.items()}  # fmt: skip
        # AND then ordinary records
        ordinary = [f"ordinary-{run}-{i}" for i in range(100)]
        statuses = [client.post("/", json={"id": i, "data": {"n": i}}).status_code
                    for i in ordinary]  # fmt: skip
    # THEN each poison case got its 4xx (the exact number 200), no 5xx
    assert answers == {case: status for case, (_, status) in posted.items()}
    for way, answer in (("first", batch), ("4e123abc", routed)):  # one answer both ways in
        assert answer["failed_record_count"] == 1, answer
        assert answer["records"][0]["id"] == f"batch-{way}-{run}"
        assert answer["records"][1]["error"] == "invalid_record"
    assert set(statuses) == {200}
    # AND every ordinary record is stored, and the 21-digit number exactly as sent
    batched = [f"batch-first-{run}", f"batch-4e123abc-{run}"]
    assert wait_stored(stack, [*ordinary, f"exact-{run}", *batched], 180) == set()
    (exact,) = _items(stack, [f"exact-{run}"]).values()
    assert Decimal(exact["data"]["N"]) == Decimal("123456789.123456789012")
    # AND each record put behind the producer's back is in the quarantine, every byte of it
    ddb, table = stack.client("dynamodb"), stack.config.quarantine_table
    found = _quarantined(stack, set(where.values()), timeout=120)
    assert set(found) == set(where.values())
    for case, sequence in where.items():
        raw, _ = whole(ddb, table, found[sequence])
        assert raw == direct[case], case
    # AND the stack still runs (no processor died for a record)
    assert stack.failed() == []
    # WHEN the 900 KB record is replayed from the quarantine
    outcome = replay(kinesis, ddb, stack.config.stream_name, table, reason="item of",
                     say=lambda _: None)  # fmt: skip
    assert outcome.replayed == 1
    # THEN it comes back to the quarantine whole, under its new position
    (head,) = eventually(
        lambda: [
            h for h in scan_all(ddb, table) if "part_of" not in h and "item of" in h["reason"]["S"]
        ],
        timeout=120,
        interval=1,
        what="the replayed 900 KB record back in the quarantine",
    )
    assert head["sequence_number"]["S"] != where["900 KB item"]
    assert whole(ddb, table, head)[0] == direct["900 KB item"]
    sys.stderr.write(f"poison table: posted {answers}, batch {batch['records'][1]['error']}, "
                     f"quarantined whole {sorted(where)}\n")  # fmt: skip


def _quarantined(stack: LocalStack, sequences: set[str], timeout: float) -> dict[str, Any]:
    """The quarantine's head items at ``sequences``, once all are there; fails after
    ``timeout`` with the sequence numbers found."""
    ddb, table = stack.client("dynamodb"), stack.config.quarantine_table

    def heads() -> dict[str, Any]:
        return {
            h["sequence_number"]["S"]: h
            for h in scan_all(ddb, table)
            if "part_of" not in h and h["sequence_number"]["S"] in sequences
        }

    found = eventually(
        heads,
        until=lambda found: len(found) == len(sequences),
        timeout=timeout,
        interval=1,
        what=f"the {len(sequences)} records put behind the producer's back in the quarantine",
    )
    return found


def test_retrying_with_the_same_ids_around_a_producer_restart_leaves_one_item_each(
    stack: LocalStack,
) -> None:
    _producer_up(stack)
    run = _run_id()
    ids = [f"retry-{run}-{i}" for i in range(300)]
    producer = stack.process("producer")

    # GIVEN a client sending 300 records with its own ids when the producer gets SIGTERM
    async def first_try() -> list[str]:
        answered: list[str] = []

        async def one(client: httpx.AsyncClient, i: int) -> None:
            body = {"id": ids[i], "data": {"run": run, "n": i, "copy": 1}}
            with contextlib.suppress(httpx.TransportError):
                if (await client.post("/", json=body)).status_code == 200:
                    answered.append(ids[i])

        async with httpx.AsyncClient(base_url=stack.config.producer_url, timeout=60) as client:
            tasks = []
            for i in range(len(ids)):
                tasks.append(asyncio.create_task(one(client, i)))
                if i == 100:
                    producer.signal(signal.SIGTERM)
                await asyncio.sleep(0.01)
            await asyncio.gather(*tasks)
        return answered

    answered = asyncio.run(first_try())
    assert producer.proc is not None and producer.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert 50 <= len(answered) < len(ids), len(answered)
    # WHEN it comes back, and the client sends every record again with the same id (unsure
    # which were stored): the even ones as before, the odd ones corrected; half in batches
    _producer_up(stack)
    again = [{"id": record_id, "data": {"run": run, "n": i, "copy": 1 + i % 2}}
             for i, record_id in enumerate(ids)]  # fmt: skip
    with httpx.Client(base_url=stack.config.producer_url, timeout=60) as client:
        statuses = [client.post("/", json=body).status_code for body in again[:150]]
        for start in range(150, len(again), 50):
            batch = client.post("/batch", json={"records": again[start : start + 50]}).json()
            statuses += [r.get("error", 200) for r in batch["records"]]
    assert set(statuses) == {200}
    # THEN there is exactly one item per id, none under another id, each the copy sent last
    assert wait_stored(stack, ids, timeout=180) == set()
    mine = [item for item in scan_all(stack.client("dynamodb"), stack.config.records_table)
            if item["data"].get("M", {}).get("run", {}).get("S") == run]  # fmt: skip
    assert sorted(item["id"]["S"] for item in mine) == sorted(ids)
    for item in mine:
        n = int(item["data"]["M"]["n"]["N"])
        assert item["data"]["M"]["copy"] == {"N": str(1 + n % 2)}, item["id"]
        assert item["client_id"] == {"BOOL": True}
    sys.stderr.write(f"retry table: {len(ids)} ids, {len(answered)} answered before the "
                     f"restart, all sent again, {len(mine)} items\n")  # fmt: skip
