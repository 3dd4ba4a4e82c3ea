"""HTTP/1.1 over a bare socket, for requests no well-behaved client sends: a body cut short,
a body that trickles, header bytes that are not UTF-8.

    head = request_head("PUT", "/v1/objects?name=x", {"Content-Length": "10"})
    response = await send(host, port, head, b"0123456789")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str | None:
        try:
            return self.json().get("error")  # type: ignore[no-any-return]
        except (ValueError, AttributeError):
            return None


def request_head(
    method: str, target: str, headers: Mapping[str, str | bytes], *, host: str = "localhost"
) -> bytes:
    """The request line and headers; a ``bytes`` value goes out exactly as given."""
    lines = [f"{method} {target} HTTP/1.1".encode(), f"Host: {host}".encode()]
    for name, value in headers.items():
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("latin-1") + b": " + raw)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _final(data: bytes) -> bytes:
    """``data`` from the final response on: an interim ``100 Continue`` is skipped."""
    while data.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in data:
        data = data.partition(b"\r\n\r\n")[2]
    return data


def parse_response(data: bytes) -> RawResponse:
    head, _, body = _final(data).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    return RawResponse(int(status_line.split()[1]), headers, body)


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole response (the server may keep the connection open a
    while after answering, reading what the client still sends)."""
    head, sep, body = _final(data).partition(b"\r\n\r\n")
    if not sep or head.startswith(b"HTTP/1.1 1"):
        return False
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(body) >= int(value)
        if name.strip().lower() == "transfer-encoding":
            return body.endswith(b"0\r\n\r\n")
    return False


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    data = b""
    while not complete(data):
        chunk = await reader.read(65536)
        if not chunk:
            break
        data += chunk
    return parse_response(data)


async def send(host: str, port: int, head: bytes, body: bytes = b"") -> RawResponse:
    """Send a request and read the whole response, within 30 s."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(30):
            return await read_response(reader)
    finally:
        writer.close()
        await writer.wait_closed()


def send_sync(
    host: str, port: int, head: bytes, body: bytes = b"", *, timeout: float = 10.0
) -> RawResponse:
    """:func:`send` for synchronous callers; ``TimeoutError`` if no complete answer in time."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        # The server may answer early (a 4xx) and close: then read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        data = b""
        try:
            while not complete(data) and (chunk := sock.recv(65536)):
                data += chunk
        except ConnectionResetError:
            if not data:
                raise
    return parse_response(data)
