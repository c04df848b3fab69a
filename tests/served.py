"""``python -m producer`` as it runs in its image (uvicorn, httptools, uvloop), on 127.0.0.1
against the null Kinesis endpoint, for tests that need the real HTTP server: raw sockets,
chunked and lying bodies, slow clients, the server's peak RSS."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from local_stack.processes import free_port
from tests.polling import eventually

ROOT = Path(__file__).resolve().parent.parent


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    def listening() -> bool:
        assert process.poll() is None, f"{process.args!s} exited with {process.returncode}"
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True

    eventually(
        listening,
        timeout=timeout,
        interval=0.1,
        what=f"a listener on port {port}",
        ignoring=(OSError,),
    )


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, key: str) -> int:
        """A ``/proc/<pid>/status`` value in bytes (VmRSS, VmHWM)."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        assert found is not None, key
        return int(found.group(1)) * 1024

    def reset_peak(self) -> None:
        """From now on VmHWM is the peak since now (proc(5): clear_refs, "5")."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def connect(self, timeout: float = 10) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout)


@contextmanager
def served_producer(**env: str) -> Iterator[Served]:
    """The producer with the ``PRODUCER_*`` overrides ``env``; stopped (SIGTERM, then KILL)
    at the end, with the null Kinesis endpoint (its own lifetime bounds it too)."""
    kinesis_port, port = free_port(), free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        null = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.null_kinesis", "--port", str(kinesis_port),
             "--lifetime", "600"], cwd=ROOT,
        )  # fmt: skip
        started.append(null)
        wait_port(kinesis_port, null)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("PRODUCER_", "AWS_"))}
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer"],
            cwd=ROOT,
            env={
                **clean,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "PRODUCER_STREAM_NAME": "s",
                "PRODUCER_PORT": str(port),
                "PRODUCER_KINESIS_ENDPOINT": f"http://127.0.0.1:{kinesis_port}",
                "PRODUCER_EMF_INTERVAL_SECONDS": "0",
                **env,
            },
            stdout=subprocess.DEVNULL,
        )
        started.append(producer)
        wait_port(port, producer)
        yield Served(port, producer)
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response off ``sock``: status, headers (lower-case), body (by its
    Content-Length). Raises ``TimeoutError`` when it is not complete within ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]
