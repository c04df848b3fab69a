"""SIGTERM handling of the producer's server: drain first, then shut down."""

from __future__ import annotations

import signal
import time

import uvicorn
from fastapi import FastAPI

from producer.__main__ import DrainingServer


def test_first_signal_drains_then_stops_second_stops_at_once() -> None:
    # GIVEN a server with a 0.2 s drain
    app = FastAPI()
    app.state.draining = False
    server = DrainingServer(uvicorn.Config(app), app, drain_seconds=0.2)
    # WHEN SIGTERM arrives
    server.handle_exit(signal.SIGTERM, None)
    # THEN readiness is off at once but the server keeps serving until the drain ends
    assert app.state.draining is True
    assert server.should_exit is False
    time.sleep(0.4)
    assert server.should_exit is True


def test_without_drain_the_signal_stops_at_once() -> None:
    app = FastAPI()
    server = DrainingServer(uvicorn.Config(app), app, drain_seconds=0)
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit is True
