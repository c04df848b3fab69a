"""Realistic record shapes: what the users of an ingestion endpoint send.

Each shape returns ``(partition_key, data)``. The partition key is the entity whose records
must stay in order (a customer's orders, a session's clicks, a device's readings), so a run
also exercises per-key ordering and the producer's shard routing with skew: a few customers,
sessions and devices are much busier than the rest (Zipf-like), as in real traffic.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

Shape = Callable[[random.Random, int], tuple[str, dict[str, Any]]]

PAGES = ["/", "/search", "/products", "/products/{id}", "/cart", "/checkout", "/account"]
EVENTS = ["page_view"] * 6 + ["click"] * 3 + ["add_to_cart", "checkout"]
CURRENCIES = ["EUR", "USD", "GBP"]


def _skewed(rng: random.Random, population: int) -> int:
    """An index in [0, population): low indexes far more often (Pareto-distributed)."""
    return min(int(rng.paretovariate(1.16)) - 1, population - 1)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def order(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    customer = f"customer-{_skewed(rng, 50_000):05d}"
    lines: list[dict[str, Any]] = [
        {
            "sku": f"SKU-{rng.randrange(10_000):05d}",
            "quantity": rng.choice([1, 1, 1, 2, 3]),
            "unit_price": round(rng.uniform(2, 250), 2),
        }
        for _ in range(rng.choice([1, 1, 2, 3, 5]))
    ]
    total = round(sum(x["quantity"] * x["unit_price"] for x in lines), 2)
    return customer, {
        "type": "order",
        "order_id": f"ord-{n:09d}-{rng.getrandbits(32):08x}",
        "customer_id": customer,
        "lines": lines,
        "total": total,
        "currency": rng.choice(CURRENCIES),
        "status": "created",
        "created_at": _now_iso(),
    }


def click(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    session = f"session-{_skewed(rng, 200_000):06d}"
    page = rng.choice(PAGES).format(id=rng.randrange(10_000))
    return session, {
        "type": "click",
        "session_id": session,
        "user_id": None if rng.random() < 0.3 else f"user-{rng.randrange(100_000):06d}",
        "event": rng.choice(EVENTS),
        "page": page,
        "referrer": rng.choice([None, "https://www.example.com/", "https://search.example/"]),
        "viewport": {"width": rng.choice([390, 768, 1440, 1920]), "height": 900},
        "at": _now_iso(),
    }


def reading(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    device = f"sensor-{_skewed(rng, 10_000):05d}"
    return device, {
        "type": "telemetry",
        "device_id": device,
        "temperature_c": round(rng.gauss(21, 4), 2),
        "humidity_pct": round(rng.uniform(20, 80), 1),
        "battery": round(rng.uniform(0.05, 1), 3),
        "firmware": "2.4.1",
        "location": {
            "lat": round(rng.uniform(-60, 60), 5),
            "lon": round(rng.uniform(-180, 180), 5),
        },
        "measured_at": _now_iso(),
    }


SMALL_BYTES = 100


def small(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    """100 bytes of compact JSON, keys spread evenly over 1,000 devices (the benchmark's)."""
    data: dict[str, Any] = {"n": n, "v": round(rng.random(), 6), "pad": ""}
    size = len(json.dumps(data, separators=(",", ":")))
    data["pad"] = "x" * max(0, SMALL_BYTES - size)
    return f"device-{rng.randrange(1000):04d}", data


SHAPES: dict[str, Shape] = {"orders": order, "clicks": click, "iot": reading, "small": small}


def mixed(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    """Orders, clicks and readings in turn."""
    return (order, click, reading)[n % 3](rng, n)


SHAPES["mixed"] = mixed
