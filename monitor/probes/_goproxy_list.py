"""A GOPROXY list, read as the go command reads it (cmd/go/internal/modfetch/proxy.go).

    "https://goproxy.cn,https://proxy.golang.org|direct"

Entries are separated by ',' or '|'. After an entry followed by ',' the next one is tried
only if this one answered "not found" (404 or 410); after '|', on any error. "direct" (fetch
from the origin) and "off" (fail) end the list: what follows them is ignored. An entry that
is neither and has no scheme gets "https://".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DIRECT = "direct"
OFF = "off"


@dataclass(frozen=True, slots=True)
class ProxyEntry:
    url: str  # an http(s) base URL, or DIRECT or OFF
    fall_back_on_error: bool = False  # followed by '|': the next entry is tried after any error


def parse_goproxy(value: str) -> tuple[ProxyEntry, ...]:
    """Raises ValueError for a list with no entries or an entry that is not an http(s) URL."""
    entries: list[ProxyEntry] = []
    for m in re.finditer(r"([^,|]*)([,|]?)", value):  # one turn per entry
        url = m.group(1).strip()
        if not url:
            if m.end() == len(value):
                break
            continue
        if url in (DIRECT, OFF):
            entries.append(ProxyEntry(url))
            break
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", url) and any(c in url for c in ".:/"):
            url = "https://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"GOPROXY entry {m.group(1).strip()!r}: want an http(s) URL, 'direct' or 'off'")
        entries.append(ProxyEntry(url.rstrip("/"), fall_back_on_error=m.group(2) == "|"))
    if not entries:
        raise ValueError("GOPROXY list contains no entries")
    return tuple(entries)
