"""A validator with its S3 API and real miners on loopback, for the S3 test modules.

Each module starts one for itself (a module-scoped fixture over :func:`s3_net`)::

    @pytest.fixture(scope="module")
    def s3net(tmp_path_factory):
        with s3_net(tmp_path_factory.mktemp("s3net")) as net:
            yield net
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from subnet.localnet import LocalNet, LocalNetConfig
from subnet.processes import free_port

MiB = 2**20


@dataclass
class S3Net:
    endpoint: str
    cafile: str
    keys: dict[str, tuple[str, str]]  # user -> (access key, secret)
    validator_dir: Path

    def client(self, user: str = "user", checksums: str = "when_supported", **kw: Any) -> Any:
        access, secret = self.keys[user]
        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",  # presigned URLs too (boto3 presigns SigV2 otherwise)
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
            retries={"max_attempts": 1},
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=kw.get("access", access),
            aws_secret_access_key=kw.get("secret", secret),
            region_name="us-east-1",
            verify=self.cafile,
            config=config,
        )


def _certificate(folder: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "s3.pem", folder / "s3.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def keys_cli(validator_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "subnet", "s3", "keys", *args, "--data-dir", str(validator_dir)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout


@contextmanager
def s3_net(root: Path) -> Iterator[S3Net]:
    """A validator serving S3 over TLS (``--s3-port``) with four real miners, and two users'
    keys ("user" and "bob"), made with ``subnet s3 keys create`` as an operator would."""
    cert, key = _certificate(root)
    port = free_port()
    flags = ["--s3-port", str(port), "--s3-tls-cert", cert, "--s3-tls-key", key,
             "--segment-size", "1MiB"]  # fmt: skip
    config = LocalNetConfig(miners=4, validators=1, block_time=0.05, tempo=10, capacity="1GiB")
    net = LocalNet(root / "net", config, service_args={"validator0": flags})
    net.up()
    try:
        validator_dir = root / "net" / "validators" / "validator0"
        keys = {}
        for user in ("user", "bob"):
            made = json.loads(keys_cli(validator_dir, "create", "--user", user, "--json"))
            keys[user] = (made["access_key"], made["secret_key"])
        yield S3Net(f"https://127.0.0.1:{port}", cert, keys, validator_dir)
    finally:
        net.down()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
