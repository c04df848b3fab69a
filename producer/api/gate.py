"""What the producer answers from a request's line and headers alone, before any body byte is
read, on every route and both ways in (the fast path and FastAPI): so an unauthenticated or
oversize request costs its headers and nothing more.

In order: the API key (401 unless the path is a health check), an internal path reached by
another spelling (404), a declared body over the limit (413), a body that is not JSON (415).
A refusal of a request that still has a body coming closes the connection, so the server does
not go on reading (or draining) it.

Slow clients: ``ProducerHttp`` (the uvicorn protocol, ``protocol.py``) closes a connection
whose request headers are not complete in time; the body has its own deadline in
``fastpath.read_body``.
"""

from __future__ import annotations

from starlette.types import Scope

from common.errors import ErrorCode, error_body
from producer.api.deps import api_key_matches

# liveness and readiness (GET): the load balancer's and the container's health checks send
# no key
OPEN_PATHS = frozenset({"/health", "/ready"})
# served only when asked for by exactly this path (the load balancer answers it 404 itself,
# infra/components/ingest.py; an encoded spelling it would forward is refused here too)
INTERNAL_PATHS = frozenset({"/metrics"})
UNAUTHORIZED = error_body(ErrorCode.UNAUTHORIZED, "missing or wrong X-Api-Key header")

Refusal = tuple[int, dict[str, str], dict[str, str] | None]


def too_large(limit: int) -> tuple[int, dict[str, str]]:
    return 413, error_body(ErrorCode.BODY_TOO_LARGE, f"the body exceeds {limit} bytes")


JSON = b"application/json"
RawHeaders = dict[bytes, bytes]  # lower-case name -> the first value sent under it


def first_values(scope: Scope) -> RawHeaders:
    """The request's headers by name, each the first value sent (as Starlette's ``Headers``
    reads them), in one pass over the raw list (``Headers`` costs several times more, and
    ran twice a request)."""
    return dict(reversed(scope["headers"]))


def body_problem(headers: RawHeaders, limit: int | None) -> tuple[int, dict[str, str]] | None:
    """413 for a body declared over ``limit`` bytes, 415 for one that is not JSON."""
    length = headers.get(b"content-length", b"")
    if limit and length.isdigit() and int(length) > limit:
        return too_large(limit)
    raw = headers.get(b"content-type", JSON)
    if raw == JSON:  # what nearly every client sends: no need to take it apart
        return None
    media = raw.decode("latin-1").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        detail = f"send JSON with Content-Type: application/json (got {media!r})"
        return 415, error_body(ErrorCode.UNSUPPORTED_MEDIA_TYPE, detail)
    return None


def has_body(headers: RawHeaders) -> bool:
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") not in (
        b"",
        b"0",
    )


def refuse(scope: Scope, keys: tuple[bytes, ...], max_body_bytes: int) -> Refusal | None:
    """The answer this request gets from its headers alone, or None: read on. (Only POSTs
    have their bodies read, and only on the record routes.)"""
    headers = first_values(scope)
    path = scope["path"]
    refusal: Refusal | None = None
    open_path = path in OPEN_PATHS and scope["method"] in ("GET", "HEAD")
    if keys and not open_path and not api_key_matches(keys, headers.get(b"x-api-key", b"")):
        refusal = 401, UNAUTHORIZED, {"WWW-Authenticate": "ApiKey"}
    elif path in INTERNAL_PATHS and scope.get("raw_path", path.encode()) != path.encode():
        refusal = 404, error_body(ErrorCode.NOT_FOUND, "Not Found"), None
    elif scope["method"] == "POST":
        problem = body_problem(headers, max_body_bytes)
        if problem is not None:
            refusal = (*problem, None)
    if refusal is not None and has_body(headers):
        status, answer, extra = refusal
        refusal = status, answer, {**(extra or {}), "Connection": "close"}
    return refusal
