"""The servers the HTTP benchmark compares, all on the same uvicorn settings.

- ``bare``: a FastAPI route ``POST /`` answers 202 without reading the record: the ceiling of
  the HTTP stack the issue set the goal against.
- ``bare_asgi``: the FastAPI app answers ``POST /`` with 202 from its ASGI entry, where the
  producer's fast path sits, before middleware and routing: the floor of uvicorn itself.
- ``naive``: one synchronous PutRecord per request, answered after it: a producer without
  aggregation or batching.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import boto3
from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from common import envelope
from producer.api.models import RecordIn


def bare() -> FastAPI:
    app = FastAPI()

    @app.post("/")
    async def accept() -> Response:
        return Response(status_code=202)

    return app


class _Bare202(FastAPI):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await super().__call__(scope, receive, send)


def bare_asgi() -> FastAPI:
    return _Bare202()


def naive() -> FastAPI:
    app = FastAPI()
    client = boto3.client(
        "kinesis",
        endpoint_url=os.environ["PRODUCER_KINESIS_ENDPOINT"],
        region_name="us-east-1",
    )
    stream = os.environ["PRODUCER_STREAM_NAME"]

    @app.post("/")
    def put(record: RecordIn) -> dict[str, Any]:
        record_id = uuid.uuid4().hex
        answer = client.put_record(
            StreamName=stream,
            Data=envelope.dump(record_id, record.data, client_id=False),
            PartitionKey=record.partition_key or record_id,
        )
        return {"id": record_id, "shard_id": answer["ShardId"]}

    return app
