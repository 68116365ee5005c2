"""Byte relay between two stream pairs, for the test proxies and the SNI filter: both
directions until each side has closed, an end of input passed on as a half-close (so that a
server waiting for the client's EOF sees it), the whole bounded by HOLD_MAX."""

from __future__ import annotations

import asyncio
import contextlib

from tests.servers.tcp import HOLD_MAX

_CHUNK = 65536


async def relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    try:
        async with asyncio.timeout(HOLD_MAX):
            await asyncio.gather(_pump(client_reader, upstream_writer), _pump(upstream_reader, client_writer))
    except TimeoutError:
        pass  # a test that leaves a tunnel open: the fixture's stop() ends the rest
    finally:
        upstream_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Each read returns >= 1 byte until EOF; time is bounded by relay()'s timeout.
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
