"""``python -m consumer``: render the KCL properties, then become the MultiLangDaemon's JVM.

``exec`` (not a child process) so the JVM is this process: PID 1 in a container, where SIGTERM
reaches it directly and the daemon's graceful shutdown writes the final checkpoints.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import amazon_kclpy

from consumer.config import ConsumerSettings, get_settings
from consumer.properties import render_properties

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
LOGBACK_CONFIG = Path(__file__).resolve().parent / "logback.xml"


def installed_jar_dir() -> Path:
    """The KCL jars that amazon-kclpy's install fetched from Maven Central."""
    return Path(amazon_kclpy.__file__).resolve().parent / "jars"


def daemon_command(settings: ConsumerSettings, jar_dir: Path, properties_path: Path) -> list[str]:
    """The argv of the MultiLangDaemon JVM (pure).

    Our logback configuration comes before ``jvm_options``, so a ``-Dlogback...`` there wins.
    """
    return [
        settings.java,
        f"-Dlogback.configurationFile={LOGBACK_CONFIG}",
        *shlex.split(settings.jvm_options),
        "-cp",
        f"{jar_dir}/*",
        DAEMON_CLASS,
        "--properties-file",
        str(properties_path),
    ]


def processor_command() -> str:
    """The record processor's command line; the daemon splits it on spaces."""
    if " " in sys.executable:
        sys.exit(f"the KCL cannot run a Python whose path has a space: {sys.executable!r}")
    return f"{sys.executable} -m consumer.processor"


def main() -> None:
    """Write the properties file, make ``consumer`` importable by the child, exec the JVM."""
    settings = get_settings()
    jars = installed_jar_dir()
    if not any(jars.glob("amazon-kinesis-client-multilang-*.jar")):
        sys.exit(f"no KCL MultiLangDaemon jar in {jars}: reinstall amazon-kclpy")
    path = Path(settings.properties_path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_properties(settings, processor_command()))
    pythonpath = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), pythonpath]))
    argv = daemon_command(settings, jars, path)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
