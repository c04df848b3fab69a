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

from common.settings import load
from consumer.config import ConsumerSettings, get_settings
from consumer.properties import render_properties

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAEMON_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
LOGBACK_CONFIG = Path(__file__).resolve().parent / "logback.xml"
LOG_LEVEL_PROPERTY = "kinesis_ingest.log_level"  # read by logback.xml
LOGBACK_LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}  # logback's names for Python's levels


def installed_jar_dir() -> Path:
    """The KCL jars that amazon-kclpy's install fetched from Maven Central."""
    return Path(amazon_kclpy.__file__).resolve().parent / "jars"


def daemon_command(settings: ConsumerSettings, jar_dir: Path, properties_path: Path) -> list[str]:
    """The argv of the MultiLangDaemon JVM (pure).

    Our logback configuration (JSON lines at ``log_level``) comes before ``jvm_options``, so a
    ``-Dlogback...`` there wins.
    A CloudWatch endpoint becomes the AWS SDK's ``aws.endpointUrlCloudWatch`` system property:
    the MultiLangDaemon (KCL 3.1.3) sets endpoints for Kinesis and DynamoDB only, and the SDK
    (2.33, ``DefaultCloudWatchBaseClientBuilder``) reads this property, or the environment's
    ``AWS_ENDPOINT_URL_CLOUDWATCH``, for a CloudWatch client built without one (AWS SDKs and
    Tools Reference Guide, "Service-specific endpoints").
    """
    endpoint = []
    if settings.cloudwatch_endpoint:
        endpoint = [f"-Daws.endpointUrlCloudWatch={settings.cloudwatch_endpoint}"]
    return [
        settings.java,
        f"-Dlogback.configurationFile={LOGBACK_CONFIG}",
        f"-D{LOG_LEVEL_PROPERTY}={LOGBACK_LEVELS.get(settings.log_level, settings.log_level)}",
        *endpoint,
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


def main(argv: list[str] | None = None) -> None:
    """Write the properties file, make ``consumer`` importable by the child, exec the JVM."""
    settings = load(ConsumerSettings, "python -m consumer", __doc__, argv, get_settings)
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
