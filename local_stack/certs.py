"""The local TLS material: a self-signed certificate for localhost and 127.0.0.1.

kinesis-mock serves HTTPS with it (its bundled certificate has no subjectAltName, so clients
that verify reject it); Python clients verify against ``cert.pem``; the JVM trusts it through a
PKCS#12 trust store.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

TRUST_STORE_PASSWORD = "changeit"  # protects nothing secret: the store holds a public cert


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # PEM certificate (the CA bundle for Python clients)
    key: Path
    kinesis_mock_json: Path  # {"server": {"key": ..., "cert": ...}} for KINESIS_MOCK_CERT_PATH
    trust_store: Path  # PKCS#12 for -Djavax.net.ssl.trustStore

    def jvm_options(self) -> list[str]:
        return [
            f"-Djavax.net.ssl.trustStore={self.trust_store}",
            f"-Djavax.net.ssl.trustStorePassword={TRUST_STORE_PASSWORD}",
            "-Djavax.net.ssl.trustStoreType=PKCS12",
        ]


def ensure_tls(directory: Path) -> TlsFiles:
    """Create the files once; later calls reuse them."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        directory / "cert.pem",
        directory / "key.pem",
        directory / "kinesis-mock.json",
        directory / "truststore.p12",
    )
    if all(p.exists() for p in (files.cert, files.key, files.kinesis_mock_json, files.trust_store)):
        return files
    for path in (files.cert, files.key, files.kinesis_mock_json, files.trust_store):
        path.unlink(missing_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "825",
            "-keyout",
            str(files.key),
            "-out",
            str(files.cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    files.kinesis_mock_json.write_text(
        json.dumps({"server": {"key": files.key.read_text(), "cert": files.cert.read_text()}})
    )
    subprocess.run(
        [
            "keytool",
            "-importcert",
            "-noprompt",
            "-alias",
            "local-kinesis",
            "-file",
            str(files.cert),
            "-keystore",
            str(files.trust_store),
            "-storetype",
            "PKCS12",
            "-storepass",
            TRUST_STORE_PASSWORD,
        ],
        check=True,
        capture_output=True,
    )
    return files
