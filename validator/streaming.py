"""Sending a downloaded object to its reader: one place for the gateway's and the S3 API's
GETs, so both keep the same pace, give their segments' grants back and end a failed body
the same way."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping

from aiohttp import web

from protocol.inputs import ReaderTooSlow, prepend, write_paced
from validator.downloads import DownloadError
from validator.settings import ValidatorSettings

log = logging.getLogger(__name__)


async def send_stream(
    request: web.Request,
    response: web.StreamResponse,
    chunks: AsyncGenerator[memoryview, None],
    settings: ValidatorSettings,
    context: Mapping[str, str],
) -> web.StreamResponse:
    """Prepare ``response`` once the first chunk is in (an error before any byte still gets
    a status), then send the rest at the reader's pace (the pace a body must keep). A
    download that fails, or a reader too slow, ends the connection: a short body tells the
    client, never wrong bytes. ``context`` goes into the log line."""
    async with contextlib.aclosing(chunks):  # its segments' grants go back at once
        first = await anext(chunks, b"")
        await response.prepare(request)
        everything = prepend(first, chunks)
        del first  # else it would keep its buffer for the whole download
        try:
            await write_paced(
                response,
                everything,
                window=settings.upload_stall_seconds,
                min_rate=settings.upload_min_rate,
            )
        except (DownloadError, ReaderTooSlow) as exc:
            why = exc.code if isinstance(exc, DownloadError) else "reader_too_slow"
            log.warning("download failed mid-stream", extra={**context, "why": why})
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response
