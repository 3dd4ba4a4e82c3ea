"""``sendfile`` with a bound on a reader that stops reading.

asyncio's ``loop.sendfile`` waits for room on the socket for as long as the reader takes,
so a reader that stops reading held its connection and an open file for ever. This is what
asyncio's does, with that bound.
"""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

STALL_SECONDS = 60.0  # a reader that takes no bytes for this long is cut off


async def sendfile(
    transport: asyncio.WriteTransport,
    file: BinaryIO,
    offset: int,
    count: int,
    *,
    stall_seconds: float = STALL_SECONDS,
) -> int:
    """Send ``count`` bytes of ``file`` from ``offset`` on ``transport`` with the kernel's
    ``sendfile``; returns what was sent (less than ``count`` if the file is short).

    ``os.sendfile`` on a duplicate of the socket's descriptor, waiting for room with
    ``add_writer`` on that duplicate, as asyncio's own does on the original. The
    transport keeps its own descriptor, and the duplicate never names a reused number. A
    reader that hangs up, or takes nothing for ``stall_seconds``, is ConnectionResetError
    (the connection is closed), which the services log as one line.
    """
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing():
        raise ConnectionResetError("the reader hung up")
    fd = os.dup(sock.fileno())
    try:
        while transport.get_write_buffer_size():  # what it holds (the headers) goes first
            if transport.is_closing():
                raise ConnectionResetError("the reader hung up")
            await _writable(loop, fd, transport, stall_seconds)
            await asyncio.sleep(0)  # room on the socket: the transport writes, then we do
        sent = 0
        while sent < count:
            try:
                n = os.sendfile(fd, file.fileno(), offset + sent, count - sent)
            except BlockingIOError:
                await _writable(loop, fd, transport, stall_seconds)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise ConnectionResetError("the reader hung up") from None
            if n == 0:  # the file ended early
                break
            sent += n
        return sent
    finally:
        os.close(fd)


async def _writable(
    loop: asyncio.AbstractEventLoop, fd: int, transport: asyncio.WriteTransport, stall: float
) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        async with asyncio.timeout(stall):
            await ready
    except TimeoutError:
        transport.abort()
        raise ConnectionResetError(f"the reader took nothing for {stall:g} s") from None
    finally:
        loop.remove_writer(fd)
