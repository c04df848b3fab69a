"""Several workers (PRODUCER_WORKERS > 1): /metrics and the EMF lines give the server's totals,
and each worker listens on a socket of its own."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.procstat import Proc, snapshot, tree
from local_stack.processes import free_port, port_open
from producer.metrics import ProducerMetrics
from producer.workers import WorkerAddress, WorkerMetrics, bound_socket
from tests.polling import eventually


def _worker(
    directory: Path, pid: int, received: int, throttled: int, waited: float
) -> WorkerMetrics:
    metrics = ProducerMetrics()
    metrics.count("UserRecordsReceived", received)
    metrics.response(200)
    metrics.error("ProvisionedThroughputExceededException")
    metrics.shard_put("shardId-000000000001", 1000)
    metrics.shard_throttled["shardId-000000000001"] += throttled
    metrics.observe("BufferingTime", waited)
    return WorkerMetrics(directory, metrics, pid=pid)


def _received(line: str | None) -> int:
    assert line is not None
    return int(json.loads(line)["UserRecordsReceived"])


def test_metrics_of_any_worker_are_the_sum_of_every_worker(tmp_path: Path) -> None:
    # GIVEN two workers that counted different things
    one = _worker(tmp_path, 1, received=10, throttled=1, waited=100.0)
    two = _worker(tmp_path, 2, received=32, throttled=2, waited=300.0)
    two.publish()
    # WHEN the first answers /metrics
    text = one.totals().prometheus()
    # THEN every count is both workers' (the scaler reads the shard counts from here)
    assert "producer_user_records_received_total 42\n" in text
    assert "producer_requests_total 2\n" in text
    assert 'producer_errors_total{code="ProvisionedThroughputExceededException"} 2\n' in text
    assert 'producer_shard_kinesis_bytes_put_total{shard="shardId-000000000001"} 2000\n' in text
    assert 'producer_shard_throttled_total{shard="shardId-000000000001"} 3\n' in text
    assert "producer_buffering_time_count 2\nproducer_buffering_time_sum 400\n" in text
    assert one.totals().distributions["BufferingTime"].maximum == 300.0
    # AND the first's own counts are current, not as of its last publish
    one.own.count("UserRecordsReceived", 5)
    assert one.totals().counters["UserRecordsReceived"] == 47


def test_a_dead_worker_keeps_its_counts_in_the_totals(tmp_path: Path) -> None:
    # GIVEN a worker that published and then died (uvicorn replaced it under another pid)
    _worker(tmp_path, 1, received=10, throttled=0, waited=1.0).publish()
    survivor = _worker(tmp_path, 2, received=5, throttled=0, waited=1.0)
    # WHEN the survivor sums
    # THEN the counter does not go down
    assert survivor.totals().counters["UserRecordsReceived"] == 15


def test_one_worker_writes_the_emf_lines_and_a_successor_counts_only_what_is_new(
    tmp_path: Path,
) -> None:
    # GIVEN two workers of one server
    one = _worker(tmp_path, 1, received=10, throttled=0, waited=1.0)
    two = _worker(tmp_path, 2, received=20, throttled=0, waited=1.0)
    two.publish()
    # WHEN both reach their EMF interval
    lines = [one.emf(now=1.0), two.emf(now=1.0)]
    # THEN one line, with both workers' counts
    assert lines[1] is None
    assert _received(lines[0]) == 30
    # WHEN more arrives at both, and the writer dies (its lock released)
    one.own.count("UserRecordsReceived", 3)
    one.publish()
    one.release()
    two.own.count("UserRecordsReceived", 4)
    # THEN the other takes over and reports only what is new: CloudWatch's sum of the lines
    # is the server's total, nothing counted twice
    assert _received(two.emf(now=2.0)) == 7
    assert _received(two.emf(now=3.0)) == 0
    assert two.totals().counters["UserRecordsReceived"] == 37


def _get(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a new connection (the kernel hands each to either worker)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request("POST" if body is not None else "GET", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _counts(directory: Path) -> list[int]:
    """Requests each worker has published."""
    return [
        json.loads(path.read_text())["counters"].get("Requests", 0)
        for path in directory.glob("worker-*.json")
    ]


@contextlib.contextmanager
def two_worker_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``python -m producer`` with two workers against the null Kinesis endpoint, once both
    workers run and the port is open: its port and the workers' shared metrics directory.
    Stopped with SIGTERM at the end; its stdout (the EMF lines) in ``tmp_path / "stdout"``."""
    null_port, port = free_port(), free_port()
    null = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.null_kinesis", "--port", str(null_port),
         "--lifetime", "120"],
    )  # fmt: skip
    env = {
        **os.environ, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b",
        "PRODUCER_STREAM_NAME": "s", "PRODUCER_KINESIS_ENDPOINT": f"http://127.0.0.1:{null_port}",
        "PRODUCER_PORT": str(port), "PRODUCER_WORKERS": "2",
        "PRODUCER_EMF_INTERVAL_SECONDS": "3600",  # only the lines written at shutdown
    }  # fmt: skip
    with (tmp_path / "stdout").open("w") as stdout:
        server = subprocess.Popen(
            [sys.executable, "-m", "producer"], env=env, stdout=stdout, stderr=subprocess.DEVNULL
        )
    try:

        def workers_and_port() -> tuple[list[Proc], bool]:
            assert server.poll() is None, f"the server exited with {server.returncode}"
            workers = [p for p in tree(snapshot(), server.pid) if p.pid != server.pid]
            return workers, port_open("127.0.0.1", port)

        workers, _ = eventually(
            workers_and_port,
            until=lambda seen: len(seen[0]) >= 2 and seen[1],
            timeout=60,
            interval=0.2,
            what="two workers and the port open",
        )
        environ = Path(f"/proc/{workers[0].pid}/environ").read_bytes().split(b"\0")
        shared = next(v for v in environ if v.startswith(b"PRODUCER_METRICS_DIR="))
        directory = Path(shared.split(b"=", 1)[1].decode())
        # each worker publishes its counts once its app has started, just before it listens
        eventually(
            lambda: len(list(directory.glob("worker-*.json"))),
            until=lambda started: started == 2,
            timeout=60,
            interval=0.2,
            what="both workers started",
        )
        yield port, directory
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        null.terminate()
        null.wait(timeout=10)


BATCH = json.dumps({"records": [{"data": {"n": 1}}] * 3}).encode()


def test_a_two_worker_server_answers_its_totals_on_metrics_and_in_emf(tmp_path: Path) -> None:
    # GIVEN python -m producer with two workers, against the null Kinesis endpoint
    with two_worker_server(tmp_path) as (port, directory):
        # WHEN batches arrive on new connections until both workers have served some
        sent = 0

        def one_more() -> list[int]:
            nonlocal sent
            assert _get(port, "/batch", BATCH)[0] == 200
            sent += 1
            return _counts(directory)

        eventually(
            one_more,
            until=lambda counts: len([c for c in counts if c > 0]) >= 2 and sent >= 20,
            timeout=60,
            interval=0,
            what="both workers to serve some of the batches (each one's count)",
        )
        # THEN /metrics, from whichever worker answers, counts every request (the other
        # worker's counts at most a second old)
        expected = f"producer_requests_total {sent}\n".encode()
        eventually(
            lambda: _get(port, "/metrics")[1],
            until=lambda text: expected in text,
            timeout=60,
            interval=0.2,
            what=f"/metrics counting all {sent} requests",
        )
        for _ in range(10):
            text = _get(port, "/metrics")[1]
            assert expected in text and f"_received_total {sent * 3}\n".encode() in text
    # AND at shutdown the first EMF line has the server's count, the later ones nothing more
    lines = (tmp_path / "stdout").read_text().splitlines()
    received = [_received(line) for line in lines if line.startswith("{")]
    assert received[0] == sent * 3 and sum(received) == sent * 3, received
    assert not directory.exists()  # the shared directory went with the server


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (proc(5): /proc/net/tcp, state 0A)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(target[len("socket:[") : -1])
    return found


def test_each_worker_listens_on_a_socket_of_its_own(tmp_path: Path) -> None:
    """With uvicorn's one shared socket, whichever worker woke first accepted most of a burst
    of new connections (benchmarks.http: 0.38 and 0.94 of a core busy); a socket of its own
    for each worker (``SO_REUSEPORT``) lets the kernel spread them (0.90-0.92 each, 4 runs)."""
    with two_worker_server(tmp_path) as (port, directory):
        # WHEN both workers have started
        pids = [int(p.stem.split("-", 1)[1]) for p in directory.glob("worker-*.json")]
        # THEN two sockets listen on the port, one in each worker
        listening = eventually(
            lambda: _listening_inodes(port),
            until=lambda inodes: len(inodes) == 2,
            timeout=30,
            interval=0.2,
            what="two sockets listening on the port",
        )
        owned = [_socket_inodes(pid) & listening for pid in pids]
        assert len(owned) == 2 and all(len(mine) == 1 for mine in owned), owned
        assert owned[0] != owned[1]
        # AND both answer
        assert _get(port, "/health")[0] == 200


def test_a_worker_address_arrives_in_a_worker_as_a_socket_of_its_own() -> None:
    # GIVEN the address the supervisor holds (bound, not listening)
    # WHEN it is sent to a worker (uvicorn pickles the sockets it passes)
    with (
        WorkerAddress.bind_to("127.0.0.1", 0) as address,
        pickle.loads(pickle.dumps(address)) as mine,
    ):
        # THEN the worker has a new socket on the same address, sharing it by SO_REUSEPORT
        assert type(mine) is socket.socket and mine.fileno() != address.fileno()
        assert mine.getsockname() == address.getsockname()
        assert mine.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_a_port_another_server_listens_on_is_refused_even_if_it_shares_by_reuse_port() -> None:
    # GIVEN another server of this user listening with SO_REUSEPORT
    with bound_socket("127.0.0.1", 0) as other:
        other.listen()
        port = other.getsockname()[1]
        # WHEN python -m producer's supervisor takes the address
        # THEN it fails (at startup) instead of sharing the port with that server
        with pytest.raises(OSError) as refused:
            WorkerAddress.bind_to("127.0.0.1", port)
        assert refused.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)]
)
def test_a_worker_address_takes_the_family_of_its_host(host: str, family: int) -> None:
    # GIVEN PRODUCER_HOST as an IPv4 or an IPv6 address
    # WHEN the supervisor takes the address, and a worker receives it
    with (
        WorkerAddress.bind_to(host, 0) as address,
        pickle.loads(pickle.dumps(address)) as mine,
    ):
        # THEN both sockets are of that address's family, on the same address
        assert address.family == mine.family == family
        assert mine.getsockname() == address.getsockname()
