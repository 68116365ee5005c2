"""Check a module zip the way golang.org/x/mod/zip does, and hash it as go.sum does.

A proxy is untrusted: its zip may be a bomb, may hold `../` paths or names that collide on a
case-insensitive disk, may lie about sizes. `check_and_hash` applies x/mod/zip's rules
(CheckZip and Unzip) before and while reading, then computes dirhash.HashZip:
- every entry is under "<module>@<version>/", with a clean, portable path (CheckFilePath);
- no two paths are equal under case folding, no path is both a file and a directory;
- go.mod only at the root and spelled so; go.mod and LICENSE at most 16 MiB;
- the zip at most 500 MiB, and the declared uncompressed sizes at most 500 MiB in total;
- each entry inflates to exactly its declared size (stopping as soon as it exceeds it) with
  its declared CRC-32.
Memory stays bounded: the central directory is read whole but capped, and entry data is
streamed through in fixed-size chunks.

The zip is parsed here rather than with `zipfile`, which reads any central directory whole
before a caller can look at its size, and silently truncates an entry that inflates past
its declared size instead of rejecting it as Go does.
"""

from __future__ import annotations

import hashlib
import posixpath
import struct
import time
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from monitor.probes._gomod import check_file_path, hash1

MAX_ZIP_FILE = 500 << 20  # zip.MaxZipFile: the zip, and the sum of its uncompressed sizes
MAX_GO_MOD = 16 << 20
MAX_LICENSE = 16 << 20
# Not a Go rule: the cap that keeps a hostile central directory (millions of tiny entries)
# from costing gigabytes here. 16 MiB holds over 100,000 entries of real module zips.
MAX_CENTRAL_DIRECTORY = 16 << 20

_CHUNK = 1 << 16  # bytes read, and bytes inflated, per step
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header
_STORED, _DEFLATED = 0, 8
_ENCRYPTED = 0x1


class BadModuleZip(Exception):
    """The zip breaks a rule of golang.org/x/mod/zip; the message says which."""


class ZipTooLarge(BadModuleZip):
    """The zip file itself is over MAX_ZIP_FILE (a response too large, not a malformed zip)."""


@dataclass(frozen=True, slots=True)
class ModuleZip:
    h1: str  # the go.sum hash, as dirhash.HashZip computes it
    files: int  # regular files under the module root
    uncompressed_bytes: int


@dataclass(frozen=True, slots=True)
class _Entry:
    name: bytes
    flags: int
    method: int
    crc: int
    compressed: int
    uncompressed: int
    offset: int  # of the local file header


def check_and_hash(f: BinaryIO, size: int, module: str, version: str, *, deadline: float) -> ModuleZip:
    """Check the zip of `size` bytes in `f` for module@version and return its go.sum hash.

    Raises BadModuleZip (or ZipTooLarge) for a zip Go would refuse, TimeoutError once
    time.monotonic() passes `deadline` (inflating 500 MiB takes seconds; this runs in a thread
    and must not outlive its probe).
    """
    if size > MAX_ZIP_FILE:
        raise ZipTooLarge(f"module zip file is too large ({size} bytes; limit is {MAX_ZIP_FILE} bytes)")
    entries = _central_directory(f, size)
    files, total = _check_names_and_sizes(entries, f"{module}@{version}/")
    digests = [(e.name, _read_entry(f, size, e, deadline)) for e in entries]
    return ModuleZip(h1=hash1(digests), files=files, uncompressed_bytes=total)


# ---------------------------------------------------------------------------------------------
# Structure


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:
        raise BadModuleZip("zip: not a valid zip file (unexpected end of file)")
    return data


def _central_directory(f: BinaryIO, size: int) -> list[_Entry]:
    tail_len = min(size, _EOCD.size + 0xFFFF)
    tail = _read_at(f, size - tail_len, tail_len)
    i = tail.rfind(b"PK\x05\x06")
    # A signature whose record (or comment) would run past the end is inside the comment of
    # the real one: look further back. Each turn moves left, so the loop ends.
    while i >= 0 and (i + _EOCD.size > len(tail) or i + _EOCD.size + struct.unpack_from("<H", tail, i + 20)[0] > len(tail)):
        i = tail.rfind(b"PK\x05\x06", 0, i)
    if i < 0:
        raise BadModuleZip("zip: not a valid zip file (no end of central directory)")
    eocd_at = size - tail_len + i
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, i)
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        count, cd_size, cd_offset, disk, cd_disk = _zip64_end(f, eocd_at)
    if disk != 0 or cd_disk != 0:
        raise BadModuleZip("zip: multi-disk archives are not supported")
    if cd_size > MAX_CENTRAL_DIRECTORY:
        raise BadModuleZip(f"zip central directory too large ({cd_size} bytes; limit is {MAX_CENTRAL_DIRECTORY})")
    if cd_offset + cd_size > eocd_at:
        raise BadModuleZip("zip: not a valid zip file (central directory out of bounds)")
    cd = _read_at(f, cd_offset, cd_size)
    entries: list[_Entry] = []
    pos = 0
    for _ in range(count):  # count <= cd_size / 46, bounded by the cap above
        if pos + _CENTRAL.size > len(cd):
            raise BadModuleZip("zip: not a valid zip file (central directory truncated)")
        (sig, _made, _need, flags, method, _time, _date, crc, csize, usize,
         name_len, extra_len, comment_len, _disk, _iattr, _eattr, offset) = _CENTRAL.unpack_from(cd, pos)
        if sig != b"PK\x01\x02":
            raise BadModuleZip("zip: not a valid zip file (bad central directory header)")
        name_at = pos + _CENTRAL.size
        end = name_at + name_len + extra_len + comment_len
        if end > len(cd):
            raise BadModuleZip("zip: not a valid zip file (central directory truncated)")
        name = cd[name_at : name_at + name_len]
        usize, csize, offset = _zip64_sizes(cd[name_at + name_len : name_at + name_len + extra_len], usize, csize, offset)
        entries.append(_Entry(name, flags, method, crc, csize, usize, offset))
        pos = end
    return entries


def _zip64_end(f: BinaryIO, eocd_at: int) -> tuple[int, int, int, int, int]:
    if eocd_at < _ZIP64_LOCATOR.size:
        raise BadModuleZip("zip: not a valid zip file (no zip64 end locator)")
    sig, _disk, end_at, _disks = _ZIP64_LOCATOR.unpack(_read_at(f, eocd_at - _ZIP64_LOCATOR.size, _ZIP64_LOCATOR.size))
    if sig != b"PK\x06\x07" or end_at + _ZIP64_EOCD.size > eocd_at:
        raise BadModuleZip("zip: not a valid zip file (bad zip64 end locator)")
    sig, _, _, _, disk, cd_disk, _, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(_read_at(f, end_at, _ZIP64_EOCD.size))
    if sig != b"PK\x06\x06":
        raise BadModuleZip("zip: not a valid zip file (bad zip64 end record)")
    return count, cd_size, cd_offset, disk, cd_disk


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset saturated at 0xFFFFFFFF are in the zip64 extra field (id 1), in order."""
    wanted = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
    if not any(wanted):
        return usize, csize, offset
    pos = 0
    while pos + 4 <= len(extra):  # each turn moves past one field
        tag, n = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4 : pos + 4 + n]
        pos += 4 + n
        if tag != 1:
            continue
        values = [usize, csize, offset]
        at = 0
        for k, want in enumerate(wanted):
            if want:
                if at + 8 > len(body):
                    raise BadModuleZip("zip: not a valid zip file (short zip64 extra field)")
                values[k] = struct.unpack_from("<Q", body, at)[0]
                at += 8
        return values[0], values[1], values[2]
    raise BadModuleZip("zip: not a valid zip file (missing zip64 extra field)")


# ---------------------------------------------------------------------------------------------
# Names and declared sizes (zip.CheckZip)


def _fold(s: str) -> str:
    """A key equal for two strings iff they are equal under simple Unicode case folding (Go's
    strings.EqualFold), e.g. 'K', 'k' and the Kelvin sign; unlike str.casefold it leaves 'ß'
    and 'ss' apart, as Go does."""
    out = []
    for ch in s:
        up = ch.upper()
        ch = up if len(up) == 1 else ch
        low = ch.lower()
        out.append(low if len(low) == 1 else ch)
    return "".join(out)


class _Collisions:
    """Paths equal under case folding, or both a file and a directory (zip's collisionChecker)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, bool]] = {}

    def check(self, path: str, is_dir: bool) -> None:
        while True:  # walks up the parents: at most one turn per path element
            key = _fold(path)
            other = self._seen.get(key)
            if other is None:
                self._seen[key] = (path, is_dir)
            elif other[0] != path:
                raise BadModuleZip(f"case-insensitive file name collision: {other[0]!r} and {path!r}")
            elif other[1] != is_dir:
                raise BadModuleZip(f"entry {path!r} is both a file and a directory")
            elif not is_dir:
                raise BadModuleZip(f"multiple entries for file {path!r}")
            parent = posixpath.dirname(path)
            if parent == "":
                return
            path, is_dir = parent, True


def _check_names_and_sizes(entries: list[_Entry], prefix: str) -> tuple[int, int]:
    """Returns (regular files, total declared uncompressed bytes)."""
    collisions = _Collisions()
    files = total = 0
    for e in entries:
        try:
            raw = e.name.decode("utf-8")
        except UnicodeDecodeError:
            raise BadModuleZip(f"malformed file path {e.name!r}: invalid UTF-8") from None
        if not raw.startswith(prefix):
            raise BadModuleZip(f"{raw!r}: path does not have prefix {prefix!r}")
        name = raw[len(prefix):]
        if name == "":
            continue
        is_dir = name.endswith("/")
        if is_dir:
            name = name[:-1]
        if name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
            raise BadModuleZip(f"{raw!r}: file path is not clean")
        try:
            check_file_path(name)
        except ValueError as exc:
            raise BadModuleZip(f"{raw!r}: {exc}") from None
        collisions.check(name, is_dir)
        if is_dir:
            continue
        base = posixpath.basename(name)
        if base.lower() == "go.mod":
            if base != name:
                raise BadModuleZip(f"{raw!r}: go.mod file not in module root directory")
            if name != "go.mod":
                raise BadModuleZip(f"{raw!r}: go.mod files must have lowercase names")
        total += e.uncompressed
        if total > MAX_ZIP_FILE:
            raise BadModuleZip(f"total uncompressed size of module contents too large (max size is {MAX_ZIP_FILE} bytes)")
        if name == "go.mod" and e.uncompressed > MAX_GO_MOD:
            raise BadModuleZip(f"go.mod file too large (max size is {MAX_GO_MOD} bytes)")
        if name == "LICENSE" and e.uncompressed > MAX_LICENSE:
            raise BadModuleZip(f"LICENSE file too large (max size is {MAX_LICENSE} bytes)")
        files += 1
    return files, total


# ---------------------------------------------------------------------------------------------
# Entry data (zip.Unzip's size enforcement, archive/zip's CRC check)


def _read_entry(f: BinaryIO, size: int, e: _Entry, deadline: float) -> bytes:
    """The SHA-256 digest of the entry's content, inflated within its declared size."""
    shown = e.name.decode("utf-8", "replace")
    if e.flags & _ENCRYPTED:
        raise BadModuleZip(f"{shown!r}: encrypted zip entries are not supported")
    if e.method not in (_STORED, _DEFLATED):
        raise BadModuleZip(f"{shown!r}: unsupported compression method {e.method}")
    if e.offset + _LOCAL.size > size:
        raise BadModuleZip(f"{shown!r}: local header out of bounds")
    header = _LOCAL.unpack(_read_at(f, e.offset, _LOCAL.size))
    if header[0] != b"PK\x03\x04":
        raise BadModuleZip(f"{shown!r}: bad local file header")
    start = e.offset + _LOCAL.size + header[9] + header[10]
    if start + e.compressed > size:
        raise BadModuleZip(f"{shown!r}: data out of bounds")

    digest, crc, produced = hashlib.sha256(), 0, 0
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if e.method == _DEFLATED else None

    def take(data: bytes) -> None:
        nonlocal crc, produced
        produced += len(data)
        if produced > e.uncompressed:
            raise BadModuleZip(f"uncompressed size of file {shown} is larger than declared size ({e.uncompressed} bytes)")
        digest.update(data)
        crc = zlib.crc32(data, crc)

    f.seek(start)
    left = e.compressed
    try:
        while left > 0:  # each turn consumes up to _CHUNK of the entry's compressed bytes
            if time.monotonic() > deadline:
                raise TimeoutError("deadline passed while checking the module zip")
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise BadModuleZip(f"{shown!r}: unexpected end of file")
            left -= len(chunk)
            if inflater is None:
                take(chunk)
                continue
            pending = chunk
            # Inflate at most _CHUNK at a time; each turn yields bytes (capped by the declared
            # size) or ends the stream, so a bomb costs at most its declared size.
            while pending and not inflater.eof:
                out = inflater.decompress(pending, _CHUNK)
                pending = inflater.unconsumed_tail
                if not out and pending:
                    raise BadModuleZip(f"{shown!r}: corrupt deflate stream")
                take(out)
        while inflater is not None and not inflater.eof:  # output zlib still holds
            out = inflater.decompress(b"", _CHUNK)
            if not out:
                raise BadModuleZip(f"{shown!r}: unexpected end of deflate stream")
            take(out)
    except zlib.error as exc:
        raise BadModuleZip(f"{shown!r}: corrupt deflate stream ({exc})") from None
    if produced != e.uncompressed:
        raise BadModuleZip(f"{shown!r}: shorter than its declared size ({produced} of {e.uncompressed} bytes)")
    if e.crc != 0 and crc != e.crc:
        raise BadModuleZip(f"{shown!r}: zip: checksum error")
    return digest.digest()
