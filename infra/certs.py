"""Throwaway TLS material for test Docker hosts: a CA, a server and a client certificate.

Made with the ``openssl`` command (EC P-256 keys: fast to generate). Private keys are
written with mode 0600 and never read back into Python: callers only get paths.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from tasks.programs import find_program

DAYS = "7"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
# Strict verifiers (Python 3.13+, Go) want key usage on the CA and key ids on leaves.
CA_EXTENSIONS = [
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-addext", "subjectKeyIdentifier=hash",
]  # fmt: skip
LEAF_EXTENSIONS = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage={usage}
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
{san}
"""


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and the key that signs with it."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class KeyPair:
    """A certificate signed by a CA and its private key."""

    cert: Path
    key: Path


def make_ca(directory: Path, name: str) -> CertificateAuthority:
    """A self-signed CA as ``<name>-ca.pem`` / ``<name>-ca-key.pem`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(directory / f"{name}-ca.pem", directory / f"{name}-ca-key.pem")
    _openssl(
        [
            "req",
            "-x509",
            *EC_KEY,
            "-keyout",
            str(ca.key),
            "-out",
            str(ca.cert),
            "-days",
            DAYS,
            "-subj",
            f"/CN={name} test CA",
            *CA_EXTENSIONS,
        ]
    )
    ca.key.chmod(0o600)
    return ca


def make_server_cert(ca: CertificateAuthority, directory: Path, ip: str = "127.0.0.1") -> KeyPair:
    """A server certificate for ``ip`` (as its subjectAltName), signed by ``ca``."""
    return _make_leaf(ca, directory, "server", "serverAuth", f"subjectAltName=IP:{ip}", ip)


def make_client_cert(ca: CertificateAuthority, directory: Path) -> KeyPair:
    """A client certificate signed by ``ca``."""
    return _make_leaf(ca, directory, "client", "clientAuth", "", "basebench client")


def _make_leaf(
    ca: CertificateAuthority, directory: Path, role: str, usage: str, san: str, cn: str
) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{role}-cert.pem", directory / f"{role}-key.pem")
    csr = directory / f"{role}.csr"
    extensions = directory / f"{role}.ext"
    extensions.write_text(LEAF_EXTENSIONS.format(usage=usage, san=san))
    _openssl(
        ["req", "-new", *EC_KEY, "-keyout", str(pair.key), "-out", str(csr), "-subj", f"/CN={cn}"]
    )
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca.cert),
            "-CAkey",
            str(ca.key),
            "-CAcreateserial",
            "-days",
            DAYS,
            "-out",
            str(pair.cert),
            "-extfile",
            str(extensions),
        ]
    )
    pair.key.chmod(0o600)
    csr.unlink()
    extensions.unlink()
    return pair


def _openssl(args: list[str]) -> None:
    # umask 077 for the child: keys are never world-readable, not even for a moment.
    proc = subprocess.run(
        [find_program("openssl"), *args],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o077),
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InfraError(f"openssl {args[0]} failed: {last}")
