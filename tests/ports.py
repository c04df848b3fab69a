"""Every fixed port the test suite's own local stacks listen on, in one place.

Each test module that starts a stack of its own has ports of its own, none of them the
documented local addresses (``make run``'s 4567, 4568, 8000, 8080 and 8090, which the shared
stack uses). Every one is below Linux's ephemeral port range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default): the kernel gives ports
in that range to outgoing connections (boto3's, the KCL's, the tests' own), and a server
binding one that a connection holds at that moment fails with "address already in use"
(seen in CI on 2026-12-01: the scaler test's producer on 38080). ``tests/unit/test_ports.py``
checks both, with the benchmarks' ports.
"""

from __future__ import annotations

LOCAL_PIPELINE = dict(kinesis_tls_port=14567, kinesis_plain_port=14568, dynamodb_port=18000,
                      producer_port=18080, dashboard_port=18090)  # fmt: skip
PRODUCER_UNDER_CHANGE = dict(kinesis_tls_port=25567, kinesis_plain_port=25568,
                             dynamodb_port=25000, producer_port=25080)  # fmt: skip
SCALER = dict(kinesis_tls_port=26567, kinesis_plain_port=26568, dynamodb_port=26000,
              producer_port=26080)  # fmt: skip
CONSUMER_FAULTS = dict(kinesis_tls_port=27567, kinesis_plain_port=27568, dynamodb_port=27000,
                       producer_port=27080)  # fmt: skip
FAULT_PROXY_PORT = 27001  # the throttling proxy in front of DynamoDB Local (consumer faults)

STACKS = {
    "local pipeline": LOCAL_PIPELINE,
    "producer under change": PRODUCER_UNDER_CHANGE,
    "scaler": SCALER,
    "consumer faults": CONSUMER_FAULTS,
}
