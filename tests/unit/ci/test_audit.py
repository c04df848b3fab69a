"""The dependency audit of ``make lint`` (.ci/audit.py): ``uv audit`` over uv.lock against a
fake OSV service on 127.0.0.1 (the real one is not reachable from these machines)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[3]
VULNERABLE = "h11"  # a package uv.lock pins


class FakeOsv(BaseHTTPRequestHandler):
    """OSV's batch query and vulnerability endpoints, answering for ``VULNERABLE`` alone."""

    fixed: ClassVar[list[str]] = []
    queried: ClassVar[list[str]] = []

    def _answer(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:  # /v1/querybatch
        queries = json.loads(self.rfile.read(int(self.headers["content-length"])))["queries"]
        names = [q["package"]["name"] for q in queries]
        type(self).queried = names
        vuln = {"vulns": [{"id": "GHSA-fake-0001", "modified": "2026-01-01T00:00:00Z"}]}
        self._answer({"results": [vuln if n == VULNERABLE else {} for n in names]})

    def do_GET(self) -> None:  # /v1/vulns/<id>
        events: list[dict[str, str]] = [{"introduced": "0"}]
        events += [{"fixed": v} for v in self.fixed]
        affected = {"package": {"ecosystem": "PyPI", "name": VULNERABLE},
                    "ranges": [{"type": "ECOSYSTEM", "events": events}]}  # fmt: skip
        self._answer({"id": "GHSA-fake-0001", "summary": "request smuggling",
                      "modified": "2026-01-01T00:00:00Z", "affected": [affected]})  # fmt: skip

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def osv() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOsv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_audit(service: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "audit.py")],
        env={**os.environ, "AUDIT_SERVICE_URL": service, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_locked_package_with_a_fixed_vulnerability_fails_the_audit(osv: str) -> None:
    # GIVEN the service knows a vulnerability of the locked h11 that a later version fixes
    FakeOsv.fixed = ["99.0"]
    # WHEN make lint audits
    done = run_audit(osv)
    # THEN it fails and names the package, the advisory and the fixed version
    assert done.returncode == 1, done.stderr
    assert "h11 0.16.0: GHSA-fake-0001" in done.stderr and "fixed in 99.0" in done.stderr
    # AND every locked package was asked about, dev tools and every extra too
    assert {"h11", "fastapi", "amazon-kclpy", "pulumi", "ruff"} <= set(FakeOsv.queried)


def test_a_vulnerability_without_a_fix_is_a_warning(osv: str) -> None:
    FakeOsv.fixed = []
    done = run_audit(osv)
    assert done.returncode == 0, done.stderr
    assert "WARNING" in done.stderr and "no fix released yet" in done.stderr


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_offline_the_audit_says_it_was_skipped_unless_required() -> None:
    service = _closed_port()
    skipped = run_audit(service)
    assert skipped.returncode == 0 and "dependency audit SKIPPED" in skipped.stderr
    required = run_audit(service, AUDIT_REQUIRED="1")
    assert required.returncode == 2 and "dependency audit FAILED" in required.stderr
