"""JSON-lines logging for every service. The record processor logs to stderr: its stdout is the KCL
protocol."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SKIPPED = _STANDARD | {"color_message"}  # uvicorn's copy of the message with ANSI colours
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, service, location, message, then extras."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "location": f"{record.module}:{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _SKIPPED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(service: str, stream: IO[str] | None = None, level: str = "INFO") -> None:
    """Route the root logger to ``stream`` (stderr by default) as JSON lines."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """The same JSON lines as a ``logging.config.dictConfig`` document, for uvicorn's
    ``log_config`` (uvicorn applies it in every worker process it starts): the root logger writes
    them to stderr, and uvicorn's own loggers (startup, errors, the access log) propagate to it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter", "service": service}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
    }
