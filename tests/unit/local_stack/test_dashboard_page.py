"""The local dashboard's page reads like CloudWatch: every panel on one time axis with clock
labels, a crosshair across all panels and the hovered time's values; no file from elsewhere.
The page runs in headless Chromium against the dashboard server fed with made-up samples; the
charting library's pure helpers run under Node."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from local_stack.dashboard import NO_PROC, PAGE, PANELS, STATIC, DashboardServer, Sampler

CHART_JS = STATIC["/chart.js"][0]
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is missing: `make test` installs it"
)


def _node(script: str) -> Any:
    done = subprocess.run(["node", "-e", f"const C = require({json.dumps(str(CHART_JS))});"
                           f"console.log(JSON.stringify({script}))"],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="no node (make install brings it)")
def test_the_chart_helpers_pick_round_ticks_and_the_value_nearest_the_pointer() -> None:
    # time ticks: round multiples of a step that leaves at most the ticks asked for
    ticks = {"step": 120, "ticks": [1080, 1200, 1320, 1440, 1560]}
    assert _node("C.timeTicks(1000, 1600, 6)") == ticks
    assert _node("C.timeTicks(0, 40, 5)")["step"] == 10
    # value ticks from 0 in steps of 1, 2 or 5 x 10^n, the last at or above the maximum
    assert _node("C.valueTicks(87, 4)") == [0, 50, 100]
    assert _node("C.valueTicks(0.3, 4)") == [0, 0.1, 0.2, 0.3]
    assert _node("C.valueTicks(0, 4)") == [0, 0.5, 1]
    # the value at a time: the nearest sample within the distance given, else none
    points = "[[10, 1], [12, 2], [14, null], [16, 4]]"
    assert _node(f"[11.2, 12.9, 13.1, 15.5, 30, 9].map(t => C.nearest({points}, t, 3))") == [
        2, 2, None, 4, None, 1]  # fmt: skip
    assert _node("C.nearest([], 5, 3)") is None


def test_the_page_loads_nothing_from_elsewhere() -> None:
    # GIVEN the page and the charting library as served
    texts = [PAGE.read_text(), CHART_JS.read_text()]
    # THEN neither names another host (a CDN): the dashboard works offline
    for text in texts:
        assert re.findall(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", text) == []
        assert "cdn" not in text.lower()
    assert '<script src="/chart.js">' in texts[0]


def _sampler(tmp_path: Path) -> Sampler:
    """A sampler that reads nothing (no producer, no logs, no /proc), with made-up samples: two
    minutes of records, the consumer's series only from the second minute on."""
    groups: dict[str, list[int]] = {"producer": [1], "consumer": [2], "scaler": [3]}
    sampler = Sampler("http://127.0.0.1:9/metrics", tmp_path, lambda: groups, lambda: 5,
                      interval=3600, proc=tmp_path / "no-proc")  # fmt: skip
    start = time.time() - 120
    for i in range(61):
        t = start + 2 * i
        sampler.samples.append({
            "t": t, "producer.requests": 50.0 * i, "producer.received": 100.0 * i,
            "producer.put": 100.0 * i, "stream.open_shards": 5.0,
            "consumer.written": 100.0 * max(i - 30, 0) if i >= 30 else None,
            "consumer.latency_p50": 40.0 + i if i >= 30 else None,
        })  # fmt: skip
    return sampler


@needs_chromium
def test_panels_share_one_time_axis_with_clock_labels_and_hover_values(tmp_path: Path) -> None:
    from tests.browser import open_page

    # GIVEN the dashboard with two minutes of samples, the consumer's from the second minute
    server = DashboardServer(0, _sampler(tmp_path))
    server.start()
    try:
        with open_page(server.url, tmp_path / "profile") as page:
            page.wait_for("document.body.dataset.window")
            # THEN every panel has the same clock labels at the same places
            axes = page.evaluate("""[...document.querySelectorAll('section.panel')].map(s =>
                [...s.querySelectorAll('text.x-label')].map(t => [t.textContent,
                 Math.round(+t.getAttribute('x'))]))""")
            assert len(axes) == len(PANELS) and all(axis == axes[0] for axis in axes), axes
            assert len(axes[0]) >= 2
            assert all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", label) for label, _ in axes[0])
            # AND a series that starts later starts further right (the axis is shared, not
            # scaled from each panel's own first point)
            starts = page.evaluate("""Object.fromEntries(['producer.received/s',
                'consumer.latency_p50'].map(k => [k, +document.querySelector(
                `polyline[data-series="${k}"]`).getAttribute('points').split(',')[0]]))""")
            assert starts["consumer.latency_p50"] > starts["producer.received/s"] + 100, starts
            # WHEN the pointer hovers the latency panel near its last sample
            box = page.evaluate("""(() => { const r = document.querySelector(
                'section[data-panel="latency"] svg').getBoundingClientRect();
                return [r.right - 12, r.top + r.height / 2]; })()""")
            page.mouse_move(*box)
            # THEN a crosshair shows on every panel at the same place, and the hovered panel's
            # tooltip gives the time and each series' value there
            cursors = page.wait_for("""(() => { const c = [...document.querySelectorAll(
                'line.cursor')].filter(l => l.getAttribute('visibility') === 'visible');
                return c.length && c.map(l => Math.round(+l.getAttribute('x1'))); })()""")
            assert len(cursors) == len(PANELS) and len(set(cursors)) == 1, cursors
            tooltip = page.evaluate("""[...document.querySelectorAll('.timechart-tooltip')]
                .filter(t => !t.hidden).map(t => t.innerText)""")
            assert len(tooltip) == 1, tooltip
            assert re.match(r"\d\d:\d\d:\d\d\n", tooltip[0]), tooltip
            p50 = re.search(r"p50\s+([\d.]+) ms", tooltip[0])
            assert p50 and 95 <= float(p50.group(1)) <= 100, tooltip  # 40 + i near the end
            # AND without /proc the CPU panel says why it is empty, the others are filled
            note = page.evaluate(
                "document.querySelector('section[data-panel=\"cpu\"] .note').textContent"
            )
            assert note == NO_PROC
            # WHEN the pointer leaves THEN the crosshairs go
            page.mouse_move(1, 1)
            page.wait_for("""![...document.querySelectorAll('line.cursor')].some(l =>
                l.getAttribute('visibility') === 'visible')""")
    finally:
        server.stop()


def test_the_server_serves_the_charting_library(tmp_path: Path) -> None:
    server = DashboardServer(0, _sampler(tmp_path))
    server.start()
    try:
        with urllib.request.urlopen(server.url + "chart.js", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert b"TimeChart" in response.read()
    finally:
        server.stop()
