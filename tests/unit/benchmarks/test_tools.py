"""The benchmarks' tools: the null Kinesis endpoint answers like Kinesis where the producers
look (routing by hash key, ListShards with a filter, 100-continue, TLS) and counts what it was
sent; the /proc reader the benchmarks count CPU with; the end-to-end step's CPU summary."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import signal
import ssl
import subprocess
from collections import Counter
from pathlib import Path

import boto3

from benchmarks import null_kinesis
from benchmarks.end_to_end import Step
from benchmarks.procstat import snapshot, tree, tree_cpu
from local_stack.certs import ensure_tls
from local_stack.processes import free_port
from producer.shards import ShardMap
from tests.polling import eventually


def _entry(key: str, data: bytes, explicit: int | None = None) -> dict[str, str]:
    entry = {"PartitionKey": key, "Data": base64.b64encode(data).decode()}
    if explicit is not None:
        entry["ExplicitHashKey"] = str(explicit)
    return entry


def test_put_records_lands_each_entry_on_the_shard_its_hash_key_falls_in() -> None:
    # GIVEN the shards ListShards (with the KPL's AT_LATEST filter) answers
    shards = json.loads(null_kinesis.answer("Kinesis_20131202.ListShards", b'{"ShardFilter": {}}'))
    ranges = [
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in shards["Shards"]
    ]
    assert ranges[0][0] == 0 and ranges[-1][1] == 2**128 - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    # WHEN entries are put by partition key and by explicit hash key
    keys = [f"key-{i}" for i in range(50)]
    entries = [_entry(k, b"x") for k in keys] + [_entry("any", b"x", explicit=ranges[3][0])]
    body = json.dumps({"StreamName": "s", "Records": entries}).encode()
    answer = json.loads(null_kinesis.answer("Kinesis_20131202.PutRecords", body))
    # THEN each lands where Kinesis would put it (MD5 of the key, else the explicit hash key)
    assert answer["FailedRecordCount"] == 0
    for key, result in zip(keys, answer["Records"], strict=False):
        value = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
        index = next(i for i, (lo, hi) in enumerate(ranges) if lo <= value <= hi)
        assert result["ShardId"] == shards["Shards"][index]["ShardId"]
    assert answer["Records"][-1]["ShardId"] == shards["Shards"][3]["ShardId"]


def test_it_counts_calls_records_bytes_and_payload_units() -> None:
    # GIVEN records of 3, 101, 25,600 and 51,201 bytes with their 2-byte keys
    stats: Counter[str] = Counter()
    sizes = [1, 99, 25_600 - 2, 51_201 - 2]
    entries = [_entry(f"k{i}", os.urandom(n)) for i, n in enumerate(sizes)]
    # WHEN they are put in two calls
    null_kinesis.answer(
        "Kinesis_20131202.PutRecords", json.dumps({"Records": entries[:2]}).encode(), stats
    )
    null_kinesis.answer(
        "Kinesis_20131202.PutRecords", json.dumps({"Records": entries[2:]}).encode(), stats
    )
    # THEN it counts the decoded sizes and a payload unit per started 25 KB of each record
    assert stats["Calls"] == 2 and stats["KinesisRecords"] == 4
    assert stats["Bytes"] == sum(n + 2 for n in sizes[:2]) + sum(n + 2 for n in sizes[2:])
    assert stats["PayloadUnits"] == 1 + 1 + 1 + 3
    assert json.loads(null_kinesis.answer(null_kinesis.STATS_TARGET, b"{}", stats)) == dict(stats)


def test_it_serves_boto3_over_tls_and_answers_100_continue(tmp_path: Path) -> None:
    # GIVEN the endpoint on HTTPS with the local certificate
    tls = ensure_tls(tmp_path / "tls")
    context = null_kinesis.tls_context(str(tls.cert), str(tls.key))

    async def scenario() -> tuple[str, bytes]:
        stats: Counter[str] = Counter()
        server = await asyncio.start_server(
            lambda r, w: null_kinesis.handle(r, w, 0.0, stats=stats), "127.0.0.1", 0, ssl=context
        )
        port = server.sockets[0].getsockname()[1]
        async with server:
            client = boto3.client(
                "kinesis", endpoint_url=f"https://127.0.0.1:{port}", region_name="us-east-1",
                verify=str(tls.cert), aws_access_key_id="a", aws_secret_access_key="b",
            )  # fmt: skip
            # WHEN a verifying boto3 client loads the shard map and puts a record
            shard_map = await asyncio.to_thread(ShardMap.load, client, "s")
            put = await asyncio.to_thread(
                client.put_record, StreamName="s", Data=b"d", PartitionKey="k"
            )
            # AND a client sends Expect: 100-continue before its body (as curl does)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ssl.create_default_context(cafile=str(tls.cert)),
                server_hostname="localhost",
            )  # fmt: skip
            body = b'{"Records": []}'
            writer.write(
                b"POST / HTTP/1.1\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n"
                b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.write(body)
            final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.close()
        assert len(shard_map.shards) == null_kinesis.SHARDS
        return put["ShardId"], interim + final

    shard_id, answers = asyncio.run(scenario())
    # THEN both get Kinesis's answers, the second after a 100 Continue
    assert shard_id.startswith("shardId-")
    assert answers.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")


def test_procstat_counts_a_process_and_its_children() -> None:
    # GIVEN a shell whose child burns CPU (up to 5 CPU-seconds; a busy machine gives it less)
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 5: pass"
    shell = subprocess.Popen(["sh", "-c", f"python3 -c '{burn}'"])
    try:
        # WHEN the tree's CPU is read while the child runs
        def cpu_of_the_tree() -> float:
            assert shell.poll() is None, "the shell ended before its child's CPU was counted"
            return tree_cpu(shell.pid)

        used = eventually(
            cpu_of_the_tree,
            until=lambda seconds: seconds >= 0.3,
            timeout=30,
            interval=0.02,
            what="0.3 CPU-seconds counted in the shell's tree",
        )
    finally:
        for proc in tree(snapshot(), shell.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        shell.wait(timeout=30)
    # THEN the child's time is in it (the shell itself uses almost none)
    assert used >= 0.3


def test_describe_stream_lists_the_same_shards() -> None:
    target = "Kinesis_20131202.DescribeStream"
    described = json.loads(null_kinesis.answer(target, b"{}"))["StreamDescription"]
    listed = json.loads(null_kinesis.answer("Kinesis_20131202.ListShards", b"{}"))["Shards"]
    assert described["Shards"] == listed and described["HasMoreShards"] is False


def test_a_null_endpoint_spawned_with_more_shards_lists_and_routes_to_them() -> None:
    # GIVEN the endpoint as the HTTP benchmark spawns it for its batch rows: 32 shards
    port = free_port()
    proc = null_kinesis.spawn(port, lifetime=60, shards=32)
    try:
        client = boto3.client(
            "kinesis", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="t", aws_secret_access_key="t",
        )  # fmt: skip
        # WHEN a client loads the shard map and puts records under many keys
        shard_map = ShardMap.load(client, "s")
        keys = [f"key-{i}" for i in range(200)]
        put = client.put_records(
            StreamName="s", Records=[{"Data": b"d", "PartitionKey": k} for k in keys]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # THEN it has the 32 shards, and each record went where Kinesis would route it
    assert len(shard_map.shards) == 32
    assert [r["ShardId"] for r in put["Records"]] == [shard_map.shard_for(k).shard_id for k in keys]
    assert len({r["ShardId"] for r in put["Records"]}) > 5


def test_the_end_to_end_step_names_the_busiest_process_and_groups_the_rest() -> None:
    # GIVEN a step where one of five record processors and DynamoDB Local are busiest
    cpu = {1: 97.0, 2: 40.0, 3: 10.0, 4: 10.0, 5: 12.0, 6: 11.0, 7: 10.0}
    names = {1: "dynamodb-local", 2: "kinesis-mock"} | {
        pid: "consumer/python" for pid in range(3, 8)
    }
    step = Step(4000, 3990.0, 60_000, 1.0, 3900.0, 1500.0, 3000.0, cpu, names)
    # THEN the busiest is named with its core share and the machine's, the rest grouped
    busiest = step.busiest()
    assert busiest.startswith("dynamodb-local 97% (a full core); all 190% of")
    assert step.by_process() == (
        "dynamodb-local 97%, consumer/python x5 53% (max 12%), kinesis-mock 40%"
    )
