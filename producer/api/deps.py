"""FastAPI dependencies: the collector, the ingest operations and the optional API key.

All ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, three thread
hops a request, which cut the throughput of ``POST /`` by more than half under load.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from producer.api.ingest import Ingest
from producer.collector import KinesisCollector


async def get_collector(request: Request) -> KinesisCollector:
    collector: KinesisCollector = request.app.state.collector
    return collector


async def get_ingest(request: Request) -> Ingest:
    ingest: Ingest = request.app.state.ingest
    return ingest


def api_key_matches(keys: tuple[bytes, ...], given: bytes) -> bool:
    """``given`` (the raw ``X-Api-Key`` header) equals one of ``keys``: each compared in
    constant time, and all of them every time, so the time taken says nothing about which key
    came close."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return matched


API_KEY = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="Needed when the producer has an API key."
)


async def require_api_key(
    request: Request, _given: Annotated[str | None, Security(API_KEY)] = None
) -> None:
    """When API keys are configured, the ``X-Api-Key`` header must equal one of them."""
    keys: tuple[bytes, ...] | None = request.app.state.api_key
    given = request.headers.get("x-api-key", "").encode("latin-1")  # the raw bytes
    if keys and not api_key_matches(keys, given):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong X-Api-Key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
