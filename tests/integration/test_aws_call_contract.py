"""The IAM call contract: every AWS call each service made on the local stacks of this
session (recorded by local_stack.recording: the Python services through botocore's hooks,
the KCL's Java SDK through a wire tap in front of the emulators) is evaluated against the task
policy the Pulumi program generates for that service (built under mocks, with the local
stack's names mapped onto the deployed ones). Zero calls may be denied; when the whole
integration suite ran, no granted action may go unused. Runs last (conftest.py)."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from infra.iam import VALIDATED_BY_AWS
from local_stack.recording.calls import read_logs
from tests.contract.iam import (
    ALLOW,
    Resource,
    arn,
    authorizations,
    decide,
    fits_format,
    granted,
    resource_formats,
)
from tests.infra.conftest import ACCOUNT, CONFIG, CONSUMER_CREATED, REGION, Built, build_stack
from tests.integration.conftest import CONTRACT, MODULES

pytestmark = pytest.mark.integration
SERVICES = ("producer", "consumer", "scaler", "rebuild")
# the rebuild runs on test_local_pipeline's stack only: required when that test ran
OPTIONAL = {"rebuild": "test_local_pipeline.py"}
DEPLOYED_APP = "ingest-test-consumer"
# the program is built with a rebuild configured (its policy is the rebuild task's); every
# local rebuild's names map onto this one's
REBUILD_FROM = "2026-11-30T10:00:00Z"
DEPLOYED_REBUILD = f"{DEPLOYED_APP}-rebuild-20261130T100000Z"
# the rebuild runs the consumer's code as a second application under its own role, built by
# the same function (infra.iam.consumer_policy): its grants are checked against the calls of
# both (a short rebuild need not make every call a long-running consumer makes)
SAME_CODE = {"rebuild": "consumer"}
# Grants that are alternatives of one decision: the scaler reshards with UpdateShardCount, or
# splits a hot shard, or merges cold ones, as the load it sees dictates (test_scaler accepts
# either way up and down). At least one must be used; the others may go unused in a run.
ALTERNATIVES = {"scaler": {"kinesis:updateshardcount", "kinesis:splitshard", "kinesis:mergeshards"}}


def _deployed(stack: dict[str, Any], resource: Resource) -> Resource:
    """The local stack's resource -> the same resource in the deployed stack (names from the
    program under mocks; the fan-out consumer's creation timestamp is the mock's)."""
    tables = {
        stack["records_table"]: "ingest-test-records",
        stack["quarantine_table"]: "ingest-test-records-quarantine",
        stack.get("scaler_state_table", ""): "ingest-test-scaler-state",
    }
    app = stack["application"]

    def table(name: str) -> str:
        if name in tables:
            return tables[name]
        return application(name, app)

    def stream(name: str) -> str:
        return "ingest-test-stream" if name in (stack["stream"], "") else name

    if resource.kind == "stream":
        return Resource("stream", stream(resource.name))
    if resource.kind == "consumer":
        stamp = str(CONSUMER_CREATED) if resource.timestamp else ""
        return Resource("consumer", stream(resource.name), application(resource.sub, app), stamp)
    if resource.kind in ("table", "index"):
        return Resource(resource.kind, table(resource.name), resource.sub)
    if resource.kind == "topic" and resource.name == stack.get("scaling_topic"):
        return Resource("topic", "ingest-test-scaling")
    if resource.kind == "scalable-target" and resource.name == stack.get("consumer_service"):
        return Resource("scalable-target", "ingest-test-consumer-scaling")  # the mock's id
    return resource


def application(name: str, app: str = "") -> str:
    """A name of the local KCL application (or a local rebuild's) -> the deployed one's: its
    tables, fan-out consumer and metric namespace."""
    rebuild = re.match(rf"^{re.escape(app)}-rebuild-\d{{8}}T\d{{6}}Z", name) if app else None
    if rebuild:
        return DEPLOYED_REBUILD + name[rebuild.end() :]
    if app and (name == app or name.startswith(f"{app}-")):
        return DEPLOYED_APP + name.removeprefix(app)
    return name  # not the stack's: stays unknown to the policy


_BUILT: dict[str, Built] = {}


def _program(retrieval_mode: str) -> Built:
    if retrieval_mode not in _BUILT:
        _BUILT[retrieval_mode] = build_stack(
            {**CONFIG, "consumerRetrievalMode": retrieval_mode, "rebuildFrom": REBUILD_FROM}
        )
    return _BUILT[retrieval_mode]


def test_every_recorded_call_is_allowed_and_every_granted_action_used(
    aws_calls_dir: Path,
) -> None:
    logs = read_logs(aws_calls_dir)
    stacks = [p.parent for p in aws_calls_dir.rglob("tap-*.json")]
    if not stacks:
        pytest.skip("no local stack ran in this session: run it with the integration tests")
    # GIVEN every call recorded (service, API, operation, resource parameters, count)
    unreadable = sum(
        c["count"] for log in logs for c in log["calls"] if c["operation"] == "<unreadable>"
    )
    calls: Counter[str] = Counter()
    denied: list[str] = []
    shapes: list[str] = []
    used: dict[tuple[str, str], set[str]] = defaultdict(set)
    for log in logs:
        stack = log["stack"]
        built = _program(stack["retrieval_mode"])
        for call in log["calls"]:
            if call["operation"] == "<unreadable>":
                continue
            service = call["service"]
            assert service in SERVICES, call
            calls[service] += call["count"]
            policy = built.policy(f"{service}-task")
            # WHEN IAM evaluates each against the service's task policy
            for auth in authorizations(call["api"], call["operation"], call["params"]):
                formats = resource_formats(auth.action)
                # an action without resource-level permissions is authorized against "*"
                resource = (
                    "*"
                    if formats == ("*",)
                    else arn(_deployed(stack, auth.resource), REGION, ACCOUNT)
                )
                # the KCL's metric namespace is the application's name: the deployed one
                context = [(k, application(v, stack["application"])) for k, v in auth.context]
                verdict = decide(policy, auth.action, resource, context)
                used[(stack["retrieval_mode"], service)].add(auth.action.lower())
                if verdict != ALLOW:
                    denied.append(f"{service} {auth.action} {resource} ({verdict}, {call})")
                # AND the action and its resource have a shape AWS's reference lists (the
                # consumer named without its timestamp is IAM's documented exception)
                no_stamp = auth.resource.kind == "consumer" and not auth.resource.timestamp
                if not formats or not (no_stamp or fits_format(resource, formats)):
                    shapes.append(f"{auth.action} {resource}: reference lists {formats}")
    summary = {s: calls[s] for s in SERVICES}
    sys.stderr.write(f"\nAWS calls recorded per service: {summary}; denied: {len(denied)}\n")
    (aws_calls_dir / "summary.json").write_text(
        json.dumps(
            {
                "calls": summary,
                "denied": denied,
                "used": {f"{m}/{s}": sorted(a) for (m, s), a in used.items()},
            },
            indent=2,
        )
    )
    # THEN nothing is denied, every call is of a known shape, and the tap read every request
    assert denied == []
    assert shapes == []
    assert unreadable == 0
    required = [s for s in SERVICES if OPTIONAL.get(s, CONTRACT) in MODULES | {CONTRACT}]
    assert all(calls[s] > 0 for s in required), summary
    # AND with the whole suite run, each policy grants only actions some call used
    everything = {p.name for p in Path(__file__).parent.glob("test_*.py")}
    if not everything <= MODULES | {CONTRACT}:
        pytest.skip(f"unused grants checked only with every integration test: ran {MODULES}")
    modes = {m for m, _ in used}
    for service in SERVICES:
        grants = set().union(*(granted(_program(m).policy(f"{service}-task")) for m in modes))
        peers = {service, SAME_CODE.get(service, service)}
        calls_made = set().union(*(used[(m, peer)] for m in modes for peer in peers))
        either = ALTERNATIVES.get(service, set())
        # granted for AWS's own checks of another call the service made (infra.iam)
        validated = {
            a.lower()
            for a, needed_by in VALIDATED_BY_AWS.get(service, {}).items()
            if needed_by.lower() in calls_made
        }
        unused = grants - calls_made - validated
        assert unused - either == set(), f"{service} is granted actions it never used"
        assert not either or either & calls_made, f"{service}: none of {either} was used"
        sys.stderr.write(
            f"{service}: unused alternatives {sorted(unused & either)}; granted "
            f"for AWS's checks {sorted(validated)}\n"
        )
