"""A Go checksum database for tests: an RFC 6962 log built the textbook way, signed notes
with a test Ed25519 key, and the answers sum.golang.org gives (lookup, latest, tiles).

Written independently of monitor/probes/_tlog.py and _sumdb.py (level-by-level hashing
and the MTH recursion straight from RFC 6962 §2.1, tiles read off those levels), so that
the tests compare two implementations rather than one with itself.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

TILE_HEIGHT = 8
_TILE_PATH = re.compile(r"tile/8/(data|\d+)/((?:x\d{3}/)*\d{3})(?:\.p/(\d+))?")


class SigningKey:
    """An Ed25519 signer for a checksum database `name`, with its verifier key string; a new
    random key, or the one whose 32-byte private `seed` is given (the same in every run)."""

    def __init__(self, name: str, seed: bytes | None = None):
        self.name = name
        self._private = Ed25519PrivateKey.generate() if seed is None else Ed25519PrivateKey.from_private_bytes(seed)
        public = b"\x01" + self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_hash = hashlib.sha256(name.encode() + b"\n" + public).digest()[:4]
        self.vkey = f"{name}+{self.key_hash.hex()}+{base64.b64encode(public).decode()}"

    def signature_line(self, text: bytes) -> bytes:
        sig = base64.b64encode(self.key_hash + self._private.sign(text)).decode()
        return f"— {self.name} {sig}\n".encode()


class TestLog:
    """An append-only log of go.sum records and its Merkle tree."""

    __test__ = False  # not a pytest test class

    def __init__(self, key: SigningKey):
        self.key = key
        self.records: list[bytes] = []
        self._levels: list[list[bytes]] = [[]]  # _levels[k][i]: hash of leaves [i*2^k, (i+1)*2^k)

    def add(self, text: bytes) -> int:
        self.records.append(text)
        self._levels[0].append(hashlib.sha256(b"\x00" + text).digest())
        k = 0
        while len(self._levels[k]) % 2 == 0:  # the new leaf completed a subtree at level k+1
            if len(self._levels) == k + 1:
                self._levels.append([])
            left, right = self._levels[k][-2], self._levels[k][-1]
            self._levels[k + 1].append(hashlib.sha256(b"\x01" + left + right).digest())
            k += 1
        return len(self.records) - 1

    def add_module(self, module: str, version: str, zip_h1: str, gomod_h1: str) -> int:
        return self.add(f"{module} {version} {zip_h1}\n{module} {version}/go.mod {gomod_h1}\n".encode())

    def fill(self, count: int) -> None:
        """`count` filler records, standing for other modules."""
        for i in range(count):
            self.add(f"example.com/filler{len(self.records)}-{i} v1.0.0 h1:x\n".encode())

    @property
    def size(self) -> int:
        return len(self.records)

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) (RFC 6962 §2.1): split at the largest power of two below n."""
        size = self.size if size is None else size
        return self._mth(0, size) if size else b"\x00" * 32

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0:  # a complete subtree: hashed already
            level = n.bit_length() - 1
            return self._levels[level][lo >> level]
        k = 1 << ((n - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + self._mth(lo, lo + k) + self._mth(lo + k, hi)).digest()

    def tree_text(self, size: int | None = None, root: bytes | None = None) -> bytes:
        size = self.size if size is None else size
        root = self.root(size) if root is None else root
        return f"go.sum database tree\n{size}\n{base64.b64encode(root).decode()}\n".encode()

    def signed_tree(self, size: int | None = None, *, signers: tuple[SigningKey, ...] | None = None) -> bytes:
        text = self.tree_text(size)
        return text + b"\n" + b"".join(s.signature_line(text) for s in (signers or (self.key,)))

    def lookup(self, record_id: int, *, note: bytes | None = None) -> bytes:
        return f"{record_id}\n".encode() + self.records[record_id] + b"\n" + (note or self.signed_tree())

    def tile(self, path: str, size: int | None = None) -> bytes | None:
        """The tile at `path` as the log of `size` records publishes it, None if it does not."""
        size = self.size if size is None else size
        m = _TILE_PATH.fullmatch(path)
        if not m:
            return None
        n = int(m.group(2).replace("x", "").replace("/", ""))
        width = int(m.group(3)) if m.group(3) else 1 << TILE_HEIGHT
        start = n << TILE_HEIGHT
        if m.group(1) == "data":
            if start + width > size:
                return None
            return b"".join(self.records[start + i] + b"\n" for i in range(width))
        level = int(m.group(1)) * TILE_HEIGHT
        if start + width > size >> level or level >= len(self._levels):
            return None
        return b"".join(self._levels[level][start : start + width])

    def handle(self, path: str) -> tuple[int, bytes]:
        """The answer to `path` (relative to the database's base URL): status and body."""
        if path == "latest":
            return 200, self.signed_tree()
        if path.startswith("lookup/"):
            wanted = _unescape(path[len("lookup/"):])
            module, _, version = wanted.partition("@")
            for i, text in enumerate(self.records):
                if text.startswith(f"{module} {version} ".encode()):
                    return 200, self.lookup(i)
            return 404, b"not found\n"
        if path.startswith("tile/"):
            data = self.tile(path)
            return (200, data) if data is not None else (404, b"no such tile\n")
        return 404, b"not found\n"


def _unescape(escaped: str) -> str:
    return re.sub(r"!([a-z])", lambda m: m.group(1).upper(), escaped)
