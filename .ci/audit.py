"""Known-vulnerability audit of the locked dependencies (``make lint``).

``uv audit`` checks every package pinned in ``uv.lock`` (all extras and groups) against the OSV
database. This fails when a locked version has a known vulnerability that a newer version
fixes (upgrade it: ``python3 -m uv lock --upgrade-package NAME``); a vulnerability without a
fix yet is printed as a warning.

Offline (the OSV service cannot be reached, as on machines that only reach the package
registries) the audit cannot run: it says so loudly and passes, unless ``AUDIT_REQUIRED=1``,
when it fails. ``AUDIT_SERVICE_URL`` points it at another OSV-compatible service (a mirror).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UV = ["python3", "-m", "uv"]
NETWORK_ERRORS = ("error sending request", "dns error", "connect", "timed out", "timeout")


def audit_command() -> list[str]:
    # uv as the Makefile runs it (python3 -m uv: installed for the system Python, not the venv)
    command = [
        *UV,
        "audit",
        "--frozen",
        "--preview-features",
        "audit-command,json-output",
        "--output-format",
        "json",
    ]
    service = os.environ.get("AUDIT_SERVICE_URL")
    if service:
        command += ["--service-url", service]
    return command


def say(line: str) -> None:
    sys.stderr.write(line + "\n")


def main() -> int:
    # fail fast when offline: uv would retry three times with backoff
    env = {**os.environ, "UV_HTTP_RETRIES": "0", "UV_HTTP_TIMEOUT": "20"}
    done = subprocess.run(
        audit_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        problem = done.stderr.strip().splitlines()
        if done.returncode != 0 and any(e in done.stderr.lower() for e in NETWORK_ERRORS):
            required = os.environ.get("AUDIT_REQUIRED") == "1"
            verdict = "FAILED" if required else "SKIPPED"
            cause = problem[-1] if problem else "no answer"
            say(
                f"dependency audit {verdict}: the vulnerability service cannot be reached"
                f" ({cause}); set AUDIT_SERVICE_URL to a reachable OSV mirror,"
                " AUDIT_REQUIRED=1 to fail"
            )
            return 2 if required else 0
        say("dependency audit FAILED: uv audit gave no report:\n" + done.stderr)
        return 2
    fixable, unfixed = [], []
    for vuln in report.get("vulnerabilities", []):
        dep = vuln["dependency"]
        line = f"  {dep['name']} {dep['version']}: {vuln['display_id']} {vuln.get('summary') or ''}"
        if vuln.get("fix_versions"):
            fixable.append(f"{line} (fixed in {', '.join(vuln['fix_versions'])})")
        else:
            unfixed.append(f"{line} (no fix released yet)")
    audited = report.get("summary", {}).get("audited_packages", "?")
    if unfixed:
        say("dependency audit WARNING: known vulnerabilities without a fix:\n" + "\n".join(unfixed))
    for status in report.get("adverse_statuses", []):
        say(f"dependency audit WARNING: {json.dumps(status)}")
    if fixable:
        say(
            "dependency audit FAILED: upgrade these locked packages "
            "(python3 -m uv lock --upgrade-package NAME):\n" + "\n".join(fixable)
        )
        return 1
    say(f"dependency audit: {audited} locked packages, no known vulnerability with a fix")
    return 0


if __name__ == "__main__":
    sys.exit(main())
