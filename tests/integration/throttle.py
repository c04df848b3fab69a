"""A DynamoDB that throttles, for the fault tests: an HTTP proxy in front of DynamoDB Local.

Every request is forwarded unchanged (the KCL's lease calls included) except BatchWriteItem
calls that write to ``table`` while throttling is on: a share of them is answered with
DynamoDB's ``ProvisionedThroughputExceededException`` (HTTP 400) without being forwarded, and
of the others a share of the items is held back and returned as ``UnprocessedItems``, as
DynamoDB does when a partition is over its capacity. The response checksum (``x-amz-crc32``,
which the AWS SDKs verify) is recomputed for every answer the proxy changes.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "x-amz-crc32"}
THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded "
    "(injected by the test proxy)",
}


class ThrottlingProxy:
    """Listens on 127.0.0.1:``port``, forwards to DynamoDB Local on ``upstream_port``."""

    def __init__(self, port: int, upstream_port: int, table: str, seed: int = 4) -> None:
        self.port, self.upstream_port, self.table = port, upstream_port, table
        self.throttle_calls = 0.0  # share of BatchWriteItem calls refused outright
        self.unprocessed_items = 0.0  # share of the items of the others sent back unprocessed
        self.calls_throttled = 0
        self.items_unprocessed = 0
        self.items_written = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, throttle_calls: float, unprocessed_items: float) -> None:
        with self._lock:
            self.throttle_calls, self.unprocessed_items = throttle_calls, unprocessed_items

    # ---- what a BatchWriteItem call becomes ------------------------------------------------
    def decide(self, request: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Any]]:
        """(the request to forward, or None to refuse it; the items held back)."""
        writes = request.get("RequestItems", {}).get(self.table)
        if not writes:
            return request, []
        with self._lock:
            if self._random.random() < self.throttle_calls:
                self.calls_throttled += 1
                return None, []
            held: list[Any] = []
            kept: list[Any] = []
            for write in writes:
                (held if self._random.random() < self.unprocessed_items else kept).append(write)
            if not kept:  # DynamoDB writes something or throttles the call
                kept.append(held.pop())
            self.items_unprocessed += len(held)
            self.items_written += len(kept)
        return {**request, "RequestItems": {**request["RequestItems"], self.table: kept}}, held

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            """One client connection (its own thread), with its own upstream connection."""

            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue handled
            upstream: http.client.HTTPConnection | None = None

            def finish(self) -> None:
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                held: list[Any] = []
                if target.endswith(".BatchWriteItem"):
                    request, held = proxy.decide(json.loads(body))
                    if request is None:
                        self._answer(400, json.dumps(THROTTLED).encode(), {})
                        return
                    body = json.dumps(request).encode()
                status, payload, headers = self._forward(body)
                if held and status == 200:
                    answer = json.loads(payload)
                    unprocessed = answer.setdefault("UnprocessedItems", {})
                    unprocessed.setdefault(proxy.table, []).extend(held)
                    payload = json.dumps(answer).encode()
                self._answer(status, payload, headers)

            def _forward(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                for attempt in (1, 2):  # a kept-alive upstream connection may have closed
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(
                            "127.0.0.1", proxy.upstream_port, timeout=30
                        )
                    try:
                        self.upstream.request("POST", self.path, body, headers)
                        response = self.upstream.getresponse()
                        payload = response.read()
                    except (OSError, http.client.HTTPException):
                        self.upstream.close()
                        self.upstream = None
                        if attempt == 2:
                            raise
                        continue
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
                    return response.status, payload, kept
                raise AssertionError("unreachable")

            def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                headers.setdefault("Content-Type", "application/x-amz-json-1.0")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
