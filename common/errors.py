"""The producer's error answers: every ``error`` code it sends, once, and the one way to build
the JSON body ``{"error": code, "detail": ...}`` (the README's API section lists each code with
its status; tests/unit/common/test_errors.py keeps the two the same)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # 400: not HTTP/1.1 the server can read
    INCOMPLETE_BODY = "incomplete_body"  # 400: the body ended before its Content-Length
    UNAUTHORIZED = "unauthorized"  # 401: X-Api-Key missing or wrong
    NOT_FOUND = "not_found"  # 404: no such path
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405: e.g. GET on a record path
    REQUEST_TIMEOUT = "request_timeout"  # 408: headers or body too slow
    BODY_TOO_LARGE = "body_too_large"  # 413: the body over its limit
    RECORD_TOO_LARGE = "record_too_large"  # 413: a record over Kinesis's 1 MiB
    BATCH_TOO_LARGE = "batch_too_large"  # 413: a /batch over its record count or bytes
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415: not JSON
    INVALID_RECORD = "invalid_record"  # 422: a record that cannot be sent or stored
    INTERNAL_ERROR = "internal_error"  # 500: a bug (the log says more)
    OVERLOADED = "overloaded"  # 503: back-pressure, retry after Retry-After
    NOT_READY = "not_ready"  # 503: starting or stopping
    NOT_ACCEPTED = "not_accepted"  # 503: Kinesis did not take the record within its TTL
    DRAINING = "draining"  # 503 on /health/ready: SIGTERM received
    COLLECTOR_STOPPED = "collector_stopped"  # 503 on /health/ready: cannot send to Kinesis
    HTTP_ERROR = "http_error"  # any other HTTP error FastAPI raises (none known)


def error_body(code: ErrorCode, detail: Any, **more: Any) -> dict[str, Any]:
    """The JSON body of an error answer (``more``: e.g. the record's ``id``)."""
    return {"error": code.value, "detail": detail, **more}
