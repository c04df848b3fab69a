"""The Makefile's install steps on common machines: a distribution's own python3 (PEP 668,
"externally managed") and a user who is not root.

The first test builds the Python environment with this machine's Debian python3 for real (uv
from PyPI into a temporary directory with ``pip install --target``, then ``uv sync`` from the
lock file; a few seconds with warm caches). The others run the system-package step with
stand-ins for ``id``, ``sudo`` and ``apt-get``, and no java, node, npm or openssl on the PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
DEBIAN_PYTHON = Path("/usr/bin/python3")
MAKE = shutil.which("make") or "make"


def _externally_managed(python: Path) -> bool:
    stdlib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return (Path(stdlib) / "EXTERNALLY-MANAGED").is_file()


def _debian_python() -> Path:
    if not DEBIAN_PYTHON.exists() or not Path("/etc/debian_version").exists():
        pytest.skip("not a Debian or Ubuntu machine with its own /usr/bin/python3")
    return DEBIAN_PYTHON


def test_python_env_builds_from_debians_own_python3(tmp_path: Path) -> None:
    # GIVEN a machine whose python3 is Debian's own: PEP 668 refuses pip installs into it
    python = _debian_python()
    assert _externally_managed(python), "Debian's python3 should carry EXTERNALLY-MANAGED"
    refused = subprocess.run(
        [python, "-m", "pip", "install", "--dry-run", "uv"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    # WHEN make builds the Python side (uv, then the locked packages) into temporary places
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "python-env",
            f"UV_DIR={tmp_path / 'uv'}",
            f"VENV={tmp_path / 'venv'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # THEN it succeeds, and the environment runs on Debian's Python with every service importable
    assert done.returncode == 0, done.stdout + done.stderr
    venv_python = tmp_path / "venv" / "bin" / "python"
    probe = subprocess.run(
        [
            venv_python,
            "-c",
            "import sys, producer.main, consumer.processor, scaler.service, "
            "local_stack.stack; print(sys.base_prefix)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "/usr"  # Debian's, not another Python's
    # AND nothing was installed into Debian's Python itself
    assert subprocess.run([python, "-c", "import uv"], capture_output=True).returncode != 0


def _stub(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(0o755)


def _system_step(tmp_path: Path, uid: int, with_sudo: bool) -> subprocess.CompletedProcess[str]:
    """The Makefile's system-package step in an empty directory, on a PATH without java, node,
    npm, openssl or pip; ``id``, ``sudo`` and ``apt-get`` are stand-ins recording their calls."""
    stubs, calls = tmp_path / "stubs", tmp_path / "calls"
    stubs.mkdir()
    for tool in ("env", "mkdir", "touch"):
        found = shutil.which(tool)
        assert found
        (stubs / tool).symlink_to(found)
    _stub(stubs, "id", f'[ "$1" = -u ] && echo {uid} || echo "uid={uid}"\n')
    # a python3 without pip, as Debian's is until python3-pip is installed
    _stub(stubs, "python3", f'[ "$1 $2" = "-m pip" ] && exit 1\nexec {sys.executable} "$@"\n')
    _stub(stubs, "apt-get", f'echo "apt-get $*" >> {calls}\n')
    if with_sudo:
        _stub(stubs, "sudo", f'echo "sudo $*" >> {calls}\nexec "$@"\n')
    work = tmp_path / "work"
    work.mkdir()
    return subprocess.run(
        [MAKE, "--no-print-directory", "-f", str(MAKEFILE), ".local/.system-ok"],
        cwd=work,
        env={"PATH": str(stubs), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


MISSING = "default-jre-headless nodejs npm openssl python3-pip"


def test_a_user_without_root_or_sudo_is_told_what_to_install(tmp_path: Path) -> None:
    # GIVEN a user who is not root and has no sudo, and no JRE, Node.js or OpenSSL
    done = _system_step(tmp_path, uid=1000, with_sudo=False)
    # THEN make stops, naming the packages and the command to install them
    assert done.returncode != 0
    assert f"missing system packages: {MISSING}" in done.stderr
    assert f"sudo apt-get install {MISSING}" in done.stderr
    assert not (tmp_path / "calls").exists()
    assert not (tmp_path / "work" / ".local" / ".system-ok").exists()


def test_a_user_with_sudo_installs_through_sudo(tmp_path: Path) -> None:
    done = _system_step(tmp_path, uid=1000, with_sudo=True)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    install = f"env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {MISSING}"
    assert calls == [
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "apt-get update -qq",
        f"sudo {install}",
        f"apt-get install -y -qq {MISSING}",
    ]
    assert "(with sudo)" in done.stdout


def test_root_installs_with_apt_get_directly(tmp_path: Path) -> None:
    done = _system_step(tmp_path, uid=0, with_sudo=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "apt-get update -qq",
        f"apt-get install -y -qq {MISSING}",
    ]
