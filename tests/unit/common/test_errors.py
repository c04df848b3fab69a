"""Every error code the producer sends is one member of ``ErrorCode``, built by ``error_body``,
and documented in the README's API table (and the README names no code the enum lacks)."""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import ErrorCode, error_body

ROOT = Path(__file__).resolve().parents[3]


def _readme_codes() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| status | error | when |") :]
    table = table[: table.index("\n\n")]
    rows = [line.split("|")[2] for line in table.splitlines()[2:]]
    return {code for cell in rows for code in re.findall(r"`([a-z_]+)`", cell)}


def test_the_readme_documents_every_code_and_no_other() -> None:
    assert _readme_codes() == {code.value for code in ErrorCode}


def test_no_error_answer_is_written_by_hand() -> None:
    # GIVEN the producer's code: an answer's "error" field only ever comes from error_body
    by_hand = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "producer").rglob("*.py"))
               for n, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"""["']error["']\s*:\s*["']""", line)]  # fmt: skip
    assert by_hand == []


def test_an_error_body_is_plain_json() -> None:
    body = error_body(ErrorCode.NOT_ACCEPTED, "the TTL passed", id="order:1")
    assert body == {"error": "not_accepted", "detail": "the TTL passed", "id": "order:1"}
    assert type(body["error"]) is str  # not the enum: every JSON encoder writes it the same
