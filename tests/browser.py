"""Headless Chromium driven over the DevTools protocol: open a page, evaluate JavaScript, move
the mouse. For the dashboard's tests (what a person sees and hovers, not only the DOM)."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.polling import eventually


class Page:
    """One tab: ``evaluate`` returns a JavaScript expression's value; ``mouse_move`` moves the
    pointer (real input events, as a user's); ``wait_for`` polls an expression until truthy."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        return eventually(
            lambda: self.evaluate(expression),
            timeout=timeout,
            interval=0.1,
            what=f"a truthy value of {expression}",
        )

    def mouse_move(self, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)


@contextlib.contextmanager
def open_page(url: str, profile: Path, width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """Chromium (headless) showing ``url``; stopped afterwards."""
    browser = shutil.which("chromium")
    assert browser, "chromium is missing: `make test` installs it from Debian"
    proc = subprocess.Popen(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"

        def debugging_port() -> str:
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            return port_file.read_text().strip() if port_file.exists() else ""

        port = eventually(
            debugging_port, timeout=60, interval=0.1, what=f"chromium to write {port_file}"
        ).split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.loads(r.read()) if t["type"] == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket)
            page.call("Page.enable")
            page.call("Page.navigate", url=url)
            page.wait_for("document.readyState === 'complete'")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
