"""``python -m producer``: serve the app with uvicorn (uvloop + httptools), logging JSON lines.

SIGTERM (ECS scale-in, deploys): ``/ready`` turns 503 for ``drain_seconds`` so the load
balancer stops sending traffic, then uvicorn stops taking connections, finishes the requests
in flight and the lifespan flushes every buffered record to Kinesis before the process exits.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors.multiprocess import Multiprocess

from common.logs import configure_logging, log_config
from common.settings import load
from producer.api.protocol import ProducerHttp
from producer.config import ProducerSettings, get_settings
from producer.main import create_app
from producer.workers import WorkerAddress

log = logging.getLogger("producer")


class DrainingServer(uvicorn.Server):
    """A uvicorn server that reports not-ready for a while before it begins to shut down."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_seconds: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_seconds = drain_seconds
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._timer is None and self._drain_seconds > 0:
            self._app.state.draining = True
            log.warning("signal %s: draining for %.0f s before shutdown", sig, self._drain_seconds)
            self._timer = threading.Timer(self._drain_seconds, super().handle_exit, (sig, frame))
            self._timer.daemon = True
            self._timer.start()
            return
        super().handle_exit(sig, frame)  # no drain, or a second signal: stop now


def main(argv: Sequence[str] | None = None) -> None:
    settings = load(ProducerSettings, "python -m producer", __doc__, argv, get_settings)
    configure_logging("producer", level=settings.log_level)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "timeout_graceful_shutdown": 30,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "access_log": settings.access_log,
        # connections and requests at once, then 503 (memory.CONNECTION_COST): what open
        # connections hold stays within the memory bound too
        "limit_concurrency": settings.connection_limit,
        # uvicorn's lines as JSON too, at the same level, in every worker process
        "log_config": log_config("producer", settings.log_level),
        "log_level": settings.log_level.lower(),
        # httptools with a deadline for the request headers, JSON errors (producer.api.gate)
        "http": functools.partial(ProducerHttp, header_timeout=settings.header_timeout_seconds),
    }
    if settings.workers > 1:  # several processes: each flushes its own buffer on SIGTERM
        # where the workers share their counts (producer/workers.py), gone when they stop
        with tempfile.TemporaryDirectory(prefix="producer-metrics-") as directory:
            os.environ["PRODUCER_METRICS_DIR"] = directory  # the workers inherit it
            config = uvicorn.Config(
                "producer.main:create_app", factory=True, workers=settings.workers, **common
            )
            # as uvicorn.run with workers, but each worker listens on a socket of its own
            try:
                address = WorkerAddress.bind_to(settings.host, settings.port)
            except OSError as exc:
                log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
                sys.exit(3)  # uvicorn's STARTUP_FAILURE
            log.info("listening on http://%s:%d with %d workers", *address.getsockname()[:2],
                     settings.workers)  # fmt: skip
            try:
                Multiprocess(config, sockets=[address]).run()
            finally:
                address.close()
        return
    app = create_app(settings)
    DrainingServer(uvicorn.Config(app, **common), app, settings.drain_seconds).run()


if __name__ == "__main__":
    main()
