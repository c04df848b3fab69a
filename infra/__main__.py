"""``pulumi up``: read the stack configuration, build the pipeline, export its addresses."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `infra.*`

from infra.program import export, from_config

export(from_config())
