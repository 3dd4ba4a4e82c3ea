"""A validator process stops promptly with uploads in flight (issue 14): SIGTERM to exit in
under 5 s, with no traceback and no coroutine left unawaited, however its uploads stand."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bittensor_wallet import Keypair

from protocol.epistula import sign_headers
from protocol.signing import wall_clock_ms
from protocol.wallet import create_wallet
from tests.rawhttp import request_head

MiB = 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the validator exited while starting"
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the validator never became healthy")


def start_upload(port: int, user: Keypair, name: str, validator: str, sent: int) -> socket.socket:
    """An upload of 8 MiB that sends ``sent`` bytes, then nothing (the socket stays open)."""
    data = bytes(8 * MiB)
    headers = sign_headers(
        user, body_hash="sha256:" + hashlib.sha256(data).hexdigest(), signed_for=validator,
        now_ms=wall_clock_ms(), declared=True,
    )  # fmt: skip
    head = request_head(
        "PUT", f"/v1/objects?name={name}", {**headers, "Content-Length": str(len(data))}
    )
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + data[:sent])
    return sock


def test_a_validator_with_uploads_in_flight_stops_within_5_seconds(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    validator = create_wallet("validator", "default", wallets).ss58_address
    alice, bob, carol = (Keypair.create_from_uri(f"//Stop{n}") for n in ("Alice", "Bob", "Carol"))
    port = free_port()
    users = ",".join(f"{n}={k.ss58_address}" for n, k in (("a", alice), ("b", bob), ("c", carol)))
    argv = [
        sys.executable, "-m", "subnet", "validator", "run", "--wallet-name", "validator",
        "--wallet-path", str(wallets), "--host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(tmp_path / "data"), "--users", users, "--log-format", "text",
        "--log-level", "debug",
    ]  # fmt: skip
    log = tmp_path / "validator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        # Two uploads whose first MiBs flowed (each holds a slot, an encoder thread waits
        # on its body), one still waiting for its first byte: a validator mid-work.
        held = [
            start_upload(port, alice, "one", validator, 3 * MiB),
            start_upload(port, bob, "two", validator, 3 * MiB),
            start_upload(port, carol, "three", validator, 0),
        ]
        time.sleep(1.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        stopped_in = time.monotonic() - started
        for sock in held:
            sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert stopped_in < 5, f"took {stopped_in:.1f} s to stop\n{output}"
    assert "never awaited" not in output, output
    assert "Traceback" not in output, output
