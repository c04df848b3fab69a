"""``/docs`` and ``/redoc`` work offline: their scripts and styles come from the producer
itself, and Swagger UI renders the API in headless Chromium (which reaches no CDN here)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from producer.config import ProducerSettings
from producer.main import create_app
from tests.fakes import FakeKinesis, even_shards
from tests.polling import eventually


@pytest.fixture
def producer_url() -> Iterator[str]:
    """The producer app (a fake Kinesis behind it) served by uvicorn on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(ProducerSettings(stream_name="s"), client=FakeKinesis(even_shards(2)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def started() -> bool:
        assert thread.is_alive(), "the producer's server thread ended"
        return bool(server.started)

    eventually(started, timeout=30, interval=0.05, what="the producer to start")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_nothing_from_elsewhere(producer_url: str, page: str) -> None:
    # WHEN a docs page is fetched
    html = httpx.get(producer_url + page).text
    # THEN every script, style and icon it names is the producer's own, and is served
    urls = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""", html)
    assert urls, html
    assert [u for u in urls if "//" in u] == []
    for url in urls:
        if url != "/openapi.json":
            assert httpx.get(producer_url + url).status_code == 200, url
    assert "fonts.googleapis" not in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is missing")
def test_swagger_ui_renders_the_api_offline(producer_url: str, tmp_path: Path) -> None:
    from tests.browser import open_page

    # GIVEN a browser that can reach nothing but this machine
    with open_page(producer_url + "/docs", tmp_path / "profile") as page:
        # WHEN /docs is opened THEN Swagger UI lists both record endpoints
        paths = page.wait_for("""(() => { const p = [...document.querySelectorAll(
            '.opblock-summary-path')].map(e => e.textContent.trim());
            return p.length ? p : null; })()""")
    assert {"/", "/batch"} <= set(paths), paths
