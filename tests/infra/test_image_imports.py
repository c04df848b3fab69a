"""Every module an image's service ships imports with only what that image copies (a shared
module must not reach into a package left out of the image, e.g. the local stack's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.dockerfile import parse

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("producer", "consumer", "scaler")


def _copied(service: str) -> list[str]:
    """The project directories the image's build stage copies (``COPY common/ common/``)."""
    builder = parse(ROOT / "docker" / f"{service}.Dockerfile")[0]
    sources = [args.split()[0] for args in builder.all("COPY") if "--from" not in args]
    return [s.rstrip("/") for s in sources if (ROOT / s).is_dir()]


@pytest.mark.parametrize("service", SERVICES)
def test_every_module_of_an_image_imports_with_what_it_copies(service: str, tmp_path: Path) -> None:
    # GIVEN only the directories the image copies
    packages = _copied(service)
    assert service in packages and "common" in packages
    for package in packages:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    modules = [
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__")
        for package in packages
        for p in (tmp_path / package).rglob("*.py")
    ]
    # WHEN each module is imported there (as in the image: the app directory on the path)
    script = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = subprocess.run(
        [sys.executable, "-c", script, *modules],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN none needs what the image lacks
    assert done.returncode == 0, done.stderr[-2000:]
