"""A response body decoded (Content-Encoding) with the cap on the *decoded* bytes.

httpx's `aiter_bytes` inflates each raw chunk whole: one 64 KiB gzip chunk from a hostile
server can become ~64 MiB in memory before a caller sees it and compares it with its cap.
Here zlib is asked for at most what the cap still allows (plus one byte, to notice going
over), so memory stays bounded by the cap whatever the compression ratio.

Only what a probe offers is accepted: gzip, deflate or nothing (`ACCEPT_ENCODING`). A server
that answers with another coding has broken the protocol: `UnsupportedEncoding`.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

ACCEPT_ENCODING = "gzip, deflate"


class UnsupportedEncoding(Exception):
    """A Content-Encoding that was not offered (br, zstd, stacked codings…)."""


class BodyTooLarge(Exception):
    """The decoded body went past the cap."""


def _decompressor(content_encoding: str) -> Any:
    """A zlib decompressor for the coding (None for none); both kinds below have
    decompress(data, max_length) and unconsumed_tail."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if codings == ["deflate"]:
        return _Deflate()
    raise UnsupportedEncoding(f"Content-Encoding {content_encoding!r} was not offered ({ACCEPT_ENCODING})")


class _Deflate:
    """RFC 9110's deflate is the zlib format, but some servers send raw deflate: the first two
    bytes tell (a zlib header names method 8 and is a multiple of 31), as httpx and curl do."""

    def __init__(self) -> None:
        self._inner: Any = None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            zlib_header = len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        out = self._inner.decompress(data, max_length)
        self.unconsumed_tail = self._inner.unconsumed_tail
        return out


async def decoded_chunks(response: httpx.Response, cap: int) -> AsyncIterator[bytes]:
    """The decoded body, chunk by chunk; raises BodyTooLarge once more than `cap` bytes
    would come out, UnsupportedEncoding for a coding not offered, zlib.error for a broken one."""
    inflater = _decompressor(response.headers.get("content-encoding", ""))
    total = 0
    async with contextlib.aclosing(response.aiter_raw()) as raw:
        async for chunk in raw:  # each >= 1 byte; the cap ends the loop
            pending = chunk
            while pending:
                if inflater is None:
                    out, pending = pending, b""
                else:
                    out = inflater.decompress(pending, cap - total + 1)  # never more than the cap allows
                    pending = inflater.unconsumed_tail
                total += len(out)
                if total > cap:
                    raise BodyTooLarge(f"decoded body exceeds {cap} bytes")
                if out:
                    yield out
