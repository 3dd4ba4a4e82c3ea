"""Ports a service listens on: a port already taken is an operator's mistake, said in a line."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator


class CannotListen(Exception):
    """The service cannot listen where its settings say; the message names the fix."""


def explain(exc: OSError, host: str, port: int, setting: str = "--port") -> CannotListen | None:
    """The sentence for a bind failure, or None if ``exc`` is something else."""
    if exc.errno == errno.EADDRINUSE:
        return CannotListen(
            f"port {port} on {host} is already in use (another service still running?): "
            f"stop it, or choose another port with {setting}"
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
        return CannotListen(
            f"cannot listen on {host}:{port} ({exc.strerror}): use an address of this machine "
            f"with --host (0.0.0.0 for all) and a port above 1023 with {setting}"
        )
    return None


def check_free(host: str, port: int, setting: str = "--port") -> None:
    """Fail before anything starts (migrations, the chain) if ``host:port`` is taken.

    Binds as aiohttp will (SO_REUSEADDR), so a port in TIME_WAIT is not called busy."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {host!r}: {exc.strerror}; check --host") from None
    family, kind, proto, _, address = infos[0]
    with contextlib.closing(socket.socket(family, kind, proto)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise (explain(exc, host, port, setting) or exc) from None


@contextlib.contextmanager
def explained(host: str, port: int, setting: str = "--port") -> Iterator[None]:
    """Turn a bind failure inside the block (``web.run_app``) into :class:`CannotListen`."""
    try:
        yield
    except OSError as exc:
        reason = explain(exc, host, port, setting)
        if reason is None:
            raise
        raise reason from None
