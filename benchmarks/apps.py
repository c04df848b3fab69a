"""The servers the HTTP benchmark compares, all on the same uvicorn settings.

- ``bare``: ``POST /`` answers 202 without reading the record: the HTTP stack's ceiling.
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

from producer.api.models import RecordIn
from producer.api.routes import envelope


def bare() -> FastAPI:
    app = FastAPI()

    @app.post("/")
    async def accept() -> Response:
        return Response(status_code=202)

    return app


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
            Data=envelope(record_id, record.data),
            PartitionKey=record.partition_key or record_id,
        )
        return {"id": record_id, "shard_id": answer["ShardId"]}

    return app
