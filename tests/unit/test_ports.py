"""The fixed ports of the tests' and the benchmarks' own servers (``tests/ports.py``)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import end_to_end, http, kpl
from local_stack.stack import StackConfig
from tests.ports import FAULT_PROXY_PORT, STACKS

DOCUMENTED = {4567, 4568, 8000, 8080, 8090}  # make run's, and the shared test stack's


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's default when unreadable)."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not path.exists():
        return 32768, 60999
    low, high = path.read_text().split()
    return int(low), int(high)


def fixed_ports() -> dict[str, int]:
    ports = {
        f"{stack} {name}": port for stack, config in STACKS.items() for name, port in config.items()
    }
    ports["consumer faults proxy"] = FAULT_PROXY_PORT
    bench = end_to_end.CONFIG
    for name in ("kinesis_tls_port", "kinesis_plain_port", "dynamodb_port", "producer_port"):
        ports[f"benchmark end to end {name}"] = getattr(bench, name)
    ports["benchmark http null Kinesis"] = http.NULL_PORT
    ports["benchmark http server"] = http.SERVER_PORT
    ports["benchmark kpl null Kinesis"] = kpl.NULL_PORT
    return ports


def test_every_fixed_port_is_below_the_ephemeral_range() -> None:
    # GIVEN the ports the kernel may give an outgoing connection at any moment
    low, high = ephemeral_range()
    # THEN no server of the tests or the benchmarks binds a fixed port among them
    inside = {name: port for name, port in fixed_ports().items() if low <= port <= high}
    assert inside == {}, f"fixed ports in the ephemeral range {low}-{high}"


def test_each_stack_has_ports_of_its_own() -> None:
    # GIVEN every fixed port, and the documented local addresses the shared stack uses
    ports = fixed_ports()
    # THEN no two servers share one, and none takes a documented address
    shared = {p for p in ports.values() if list(ports.values()).count(p) > 1}
    assert shared == set()
    assert DOCUMENTED.isdisjoint(ports.values())


def test_each_stack_config_takes_its_ports() -> None:
    # GIVEN each stack's ports as the test modules pass them
    for config in STACKS.values():
        stack = StackConfig(**config)
        # THEN they are StackConfig's own fields (a misspelt one would be refused here)
        assert {name: getattr(stack, name) for name in config} == config
