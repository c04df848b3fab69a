"""botocore client plugin: records each API call of this process in a ``CallLog``.

Loaded by botocore itself for every client when ``BOTOCORE_EXPERIMENTAL__PLUGINS`` names it
(``aws_calls=local_stack.recording.botocore_plugin``; botocore's ``plugin.py``, 1.44):
the services' code is unchanged. Inactive unless ``KINESIS_INGEST_AWS_CALLS_DIR`` is set.
The hook is ``before-parameter-build``: once per API call (not per retry), with the
operation's parameters as the caller gave them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from local_stack.recording.calls import CALLS_DIR_ENV, SERVICE_ENV, CallLog

_LOG: CallLog | None = None


def _log() -> CallLog | None:
    global _LOG
    directory = os.environ.get(CALLS_DIR_ENV)
    if not directory:
        return None
    if _LOG is None:
        stack_file = Path(directory) / "stack.json"
        stack = json.loads(stack_file.read_text()) if stack_file.exists() else {}
        service = os.environ.get(SERVICE_ENV, "unknown")
        _LOG = CallLog(Path(directory) / f"botocore-{service}-{os.getpid()}.json", stack)
    return _LOG


def initialize_client_plugin(client: Any) -> None:
    log = _log()
    if log is None:
        return
    api = client.meta.service_model.service_name
    service = os.environ.get(SERVICE_ENV, "unknown")

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        log.add(service, api, model.name, params)

    client.meta.events.register(f"before-parameter-build.{api}", record)
