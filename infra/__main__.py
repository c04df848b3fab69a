"""``pulumi up``: read the stack configuration, build the pipeline, export its addresses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `infra.*`

from infra import settings as config
from infra.program import build


def _version() -> str:
    """The image tag: the checked-out commit (``-dirty`` when the tree has changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "latest"


stack_config = pulumi.Config()
values = {key: stack_config.get(key) for key in config.config_keys()}
stack = build(
    config.load({k: v for k, v in values.items() if v is not None}),
    f"ingest-{pulumi.get_stack()}",
    _version(),
)
pulumi.export("url", stack.url)
pulumi.export("dashboard_url", stack.dashboard_url)
pulumi.export("stream_name", stack.stream_name)
pulumi.export("records_table", stack.records_table)
pulumi.export("quarantine_table", stack.quarantine_table)
