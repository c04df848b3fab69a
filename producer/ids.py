"""Record ids: unique, cheap to make, and the record's identity all the way to DynamoDB."""

from __future__ import annotations

import itertools
import secrets


class IdGenerator:
    """``<16 random hex chars per process>-<counter in hex>``.

    A uuid4 per record costs more than validating the record; a random 64-bit prefix drawn once
    per process plus a counter is unique across processes and restarts (collision odds ~n^2/2^65
    for n processes ever started) at the price of a string format.  Its MD5 is uniform, so the
    id also serves as the default (random) partition key.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix if prefix is not None else secrets.token_hex(8)
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"
