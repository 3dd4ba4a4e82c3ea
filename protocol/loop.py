"""The event loop the services and the CLI run on: uvloop where it is installed, else
asyncio's own; and ``sendfile`` that works on either, with a bound on a stalled reader.

uvloop cut the miners' CPU per upload to ~0.89x (`docs/benchmarks.md`).
``SUBNET_EVENT_LOOP=asyncio`` picks asyncio's loop instead (to compare, or to rule uvloop
out when something misbehaves).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, BinaryIO, TypeVar

T = TypeVar("T")
CHOICE_ENV = "SUBNET_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


def chosen() -> str:
    """The loop ``$SUBNET_EVENT_LOOP`` names (default: uvloop), or ValueError naming the choices."""
    choice = os.environ.get(CHOICE_ENV) or "uvloop"
    if choice not in CHOICES:
        raise ValueError(f"{CHOICE_ENV}={choice!r} is not a loop: use one of {', '.join(CHOICES)}")
    return choice


def new_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the :func:`chosen` kind; asyncio's if uvloop is not installed."""
    if chosen() == "uvloop":
        try:
            import uvloop  # noqa: PLC0415 - optional: not built for every platform

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on :func:`new_loop`."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)


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
    ``sendfile``, on either loop; returns what was sent (less than ``count`` if the file is
    short).

    uvloop has no ``loop.sendfile``, and asyncio's has no bound on a reader that stops
    reading, so this does what asyncio's does itself: ``os.sendfile`` on a duplicate of the
    socket's descriptor, waiting for room with ``add_writer`` on that duplicate. The
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
