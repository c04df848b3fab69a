"""`PRODUCER_API_KEY=... make run`: the key reaches the producer, and the scaler and the
dashboard read the producer's /metrics with it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from local_stack.dashboard import Sampler
from local_stack.stack import StackConfig, api_key_from
from scaler.config import ScalerSettings
from scaler.sources import fetch_with_key


class Metrics(BaseHTTPRequestHandler):
    """A producer's /metrics that needs X-Api-Key: k1."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("X-Api-Key"))
        ok = self.headers.get("X-Api-Key") == "k1"
        body = b"producer_user_records_put_total 7\n" if ok else b'{"error":"unauthorized"}'
        self.send_response(200 if ok else 401)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def metrics_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Metrics.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({}, None),
        ({"PRODUCER_API_KEY": "k1"}, "k1"),
        ({"PRODUCER_API_KEYS": " k2 , k1"}, "k2"),
        ({"PRODUCER_API_KEYS": ",", "PRODUCER_API_KEY": "k1"}, "k1"),
    ],
)
def test_the_stack_takes_the_first_key_the_producer_accepts(
    env: dict[str, str], key: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api_key_from(env) == key
    for name in ("PRODUCER_API_KEY", "PRODUCER_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert StackConfig().api_key == key


def test_the_scaler_sends_its_key_to_the_producers_metrics(metrics_url: str) -> None:
    settings = ScalerSettings(
        stream_name="s",
        metrics_source="producer",
        producer_metrics_urls=metrics_url,
        producer_api_key="k1",
    )
    key = settings.producer_api_key
    text = fetch_with_key(key.get_secret_value() if key else None)(metrics_url)
    assert "producer_user_records_put_total 7" in text and Metrics.seen == ["k1"]


def test_the_dashboard_sends_its_key_to_the_producers_metrics(
    metrics_url: str, tmp_path: Path
) -> None:
    sampler = Sampler(metrics_url, tmp_path, dict, lambda: 1, api_key="k1")
    sampler.sample()
    assert Metrics.seen == ["k1"]
    assert sampler.samples[-1]["producer.put"] == 7
