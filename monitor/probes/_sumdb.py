"""The Go checksum database's messages, checked as the go command checks them (no I/O).

A lookup answer (`/lookup/M@V`) is a record — its id in the log and the go.sum lines of
M@V — followed by a signed note carrying the tree head: "go.sum database tree\\nN\\nHASH\\n".
Trusting the go.sum lines takes three proofs: the note is signed by the configured verifier
key (golang.org/x/mod/sumdb/note), the record is leaf `id` of that tree, and that tree is
consistent with the largest tree verified before (golang.org/x/mod/sumdb/tlog, with tiles).

`plan_proof` says which tiles prove a lookup; `check_proof` runs the proof on their data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from monitor.probes._tlog import TilePlan, Tree, plan_tiles, read_hashes, record_hash, stored_hash_index, sub_tree_hash, tree_hash_indexes

DEFAULT_SUMDB = "sum.golang.org"
DEFAULT_KEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"

_ALG_ED25519 = 1
_SIG_PREFIX = "— ".encode()  # an em dash and a space begin each signature line
_MAX_SIGNATURES = 100  # as note.Open: parsing a note must not take forever
_TREE_HEADER = b"go.sum database tree\n"
_MAX_TREE_TEXT = 1_000_000


class SumdbError(Exception):
    """The checksum database's answer cannot be trusted (malformed, unsigned, or inconsistent)."""


class BadSignature(SumdbError):
    """The known key's signature on the note does not verify: a forgery, never tolerated."""


class ForkedTree(SumdbError):
    """Two signed trees that cannot both be true: the log showed different histories."""


# ---------------------------------------------------------------------------------------------
# Keys and notes (sumdb/note)


def _valid_name(name: str) -> bool:
    return name != "" and "+" not in name and not any(ch.isspace() for ch in name)


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_hash: int  # first 4 bytes of SHA-256(name + "\n" + algorithm byte + public key)
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def key_hash(name: str, encoded_key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + encoded_key).digest()[:4], "big")


def parse_verifier_key(vkey: str) -> VerifierKey:
    """"<name>+<8 hex digits of key hash>+<base64 of 0x01 and the Ed25519 public key>";
    raises ValueError for a malformed key or one whose hash does not match its name and key."""
    name, _, rest = vkey.strip().partition("+")
    hash16, _, key64 = rest.partition("+")
    try:
        encoded = base64.b64decode(key64, validate=True)
        declared = int(hash16, 16)
    except (binascii.Error, ValueError):
        raise ValueError("malformed verifier key (want name+hash+base64key)") from None
    if len(hash16) != 8 or not _valid_name(name) or not encoded:
        raise ValueError("malformed verifier key (want name+hash+base64key)")
    if declared != key_hash(name, encoded):
        raise ValueError(f"verifier key hash {hash16} does not match the name and key")
    if encoded[0] != _ALG_ED25519:
        raise ValueError(f"unknown verifier key algorithm {encoded[0]}")
    if len(encoded) != 33:
        raise ValueError("malformed Ed25519 verifier key (want 32 bytes)")
    return VerifierKey(name, declared, encoded[1:])


def verifier_for(sumdb: str, sumdb_key: str | None) -> tuple[VerifierKey, str | None]:
    """The verifier key of a configured checksum database, and the URL it must be asked at
    (None: through the proxies, else https://<name>). As GOSUMDB does, the name
    sum.golang.google.cn means sum.golang.org reached at https://sum.golang.google.cn.
    Raises ValueError for a missing, malformed or mismatched key."""
    name, url = sumdb, None
    if sumdb == "sum.golang.google.cn":
        name, url = DEFAULT_SUMDB, "https://sum.golang.google.cn"
    if sumdb_key is None:
        if name != DEFAULT_SUMDB:
            raise ValueError(f"sumdb_key is required for checksum database {sumdb!r} (only {DEFAULT_SUMDB}'s is built in)")
        sumdb_key = DEFAULT_KEY
    key = parse_verifier_key(sumdb_key)
    if key.name != name:
        raise ValueError(f"sumdb_key is for {key.name!r}, not {name!r}")
    return key, url


@dataclass(frozen=True)
class Note:
    text: bytes  # the signed text, ending in a newline
    unknown_signers: tuple[str, ...]  # "name+hash" of signatures by keys we do not know


def open_note(msg: bytes, key: VerifierKey) -> Note:
    """note.Open with one known key: signatures by other keys are ignored, a bad signature by
    the known key is fatal (BadSignature), and the note must carry a good one."""
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError:
        raise SumdbError("malformed note: not UTF-8") from None
    if any(ord(ch) < 0x20 and ch != "\n" for ch in decoded):
        raise SumdbError("malformed note: control character")
    split = msg.rfind(b"\n\n")
    if split < 0:
        raise SumdbError("malformed note: no signature block")
    text, sigs = msg[: split + 1], msg[split + 2 :]
    if not sigs.endswith(b"\n"):
        raise SumdbError("malformed note: signature block does not end in a newline")
    lines = sigs[:-1].split(b"\n")
    if len(lines) > _MAX_SIGNATURES:
        raise SumdbError(f"malformed note: more than {_MAX_SIGNATURES} signatures")
    verified = False
    unknown: list[str] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise SumdbError("malformed note: signature line does not start with '— '")
        name, _, b64 = line[len(_SIG_PREFIX) :].decode().partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII at all
            raw = b""
        if not _valid_name(name) or len(raw) < 5:
            raise SumdbError("malformed note: bad signature line")
        signer_hash = int.from_bytes(raw[:4], "big")
        if name != key.name or signer_hash != key.key_hash:
            unknown.append(f"{name}+{signer_hash:08x}")
            continue
        if verified:
            continue  # a repeated signature by the known key: note.Open skips it unchecked
        if not key.verify(text, raw[4:]):
            raise BadSignature(f"invalid signature for key {key.name}+{key.key_hash:08x}")
        verified = True
    if not verified:
        others = ", ".join(unknown) or "none"
        raise SumdbError(f"note has no verifiable signature by {key.name}+{key.key_hash:08x} (signed by: {others})")
    return Note(text, tuple(dict.fromkeys(unknown)))


def _decimal(text: str) -> bool:
    """ASCII digits only, as Go's strconv reads them (str.isdigit also accepts '²' and '١')."""
    return text.isascii() and text.isdigit()


def parse_tree(text: bytes) -> Tree:
    """tlog.ParseTree: three lines (and, for forward compatibility, maybe more)."""
    if not text.startswith(_TREE_HEADER) or text.count(b"\n") < 3 or len(text) > _MAX_TREE_TEXT:
        raise SumdbError("malformed tree note")
    lines = text.split(b"\n", 3)
    size_text = lines[1].decode()
    if not _decimal(size_text) or str(int(size_text)) != size_text or int(size_text) >= 1 << 63:
        raise SumdbError("malformed tree note: bad size")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        root = b""
    if len(root) != 32:
        raise SumdbError("malformed tree note: bad hash")
    return Tree(int(size_text), root)


# ---------------------------------------------------------------------------------------------
# Lookup answers


def _valid_record_text(text: bytes) -> bool:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return (
        decoded.endswith("\n")
        and "\n\n" not in decoded
        and not any(ord(ch) < 0x20 and ch != "\n" for ch in decoded)
    )


@dataclass(frozen=True)
class Lookup:
    record_id: int
    record: bytes  # the record text: the go.sum lines, as the log holds them
    tree: Tree
    note: bytes  # the signed tree note, kept as evidence
    unknown_signers: tuple[str, ...]
    zip_h1: str  # from the line "M V h1:…"
    gomod_h1: str  # from the line "M V/go.mod h1:…"


def parse_lookup(body: bytes, key: VerifierKey, module: str, version: str) -> Lookup:
    """Parse and signature-check a /lookup answer for module@version (tlog.ParseRecord, then
    note.Open and tlog.ParseTree on the rest)."""
    first, sep, rest = body.partition(b"\n")
    id_text = first.decode("utf-8", "replace")
    if not sep or not _decimal(id_text) or int(id_text) >= 1 << 63:
        raise SumdbError("malformed record: bad record id")
    end = rest.find(b"\n\n")
    if end < 0 or not _valid_record_text(rest[: end + 1]):
        raise SumdbError("malformed record data")
    record, signed = rest[: end + 1], rest[end + 2 :]
    note = open_note(signed, key)
    tree = parse_tree(note.text)
    zip_h1 = gomod_h1 = None
    for line in record.decode().splitlines():
        fields = line.split(" ")
        if len(fields) != 3 or fields[0] != module or not fields[2].startswith("h1:"):
            continue
        if fields[1] == version:
            zip_h1 = fields[2]
        elif fields[1] == version + "/go.mod":
            gomod_h1 = fields[2]
    # The go command needs both lines (it checks the zip and the go.mod each against its own).
    for line, found in ((f"{module} {version}", zip_h1), (f"{module} {version}/go.mod", gomod_h1)):
        if found is None:
            raise SumdbError(f"record {id_text} has no go.sum line for {line}")
    assert zip_h1 is not None and gomod_h1 is not None
    return Lookup(int(id_text), record, tree, signed, note.unknown_signers, zip_h1, gomod_h1)


# ---------------------------------------------------------------------------------------------
# Proofs against the largest tree verified so far


@dataclass(frozen=True)
class Proof:
    """Tiles of `latest` that prove the record, and that `older` is a prefix of `latest`."""

    latest: Tree
    older: Tree | None
    plan: TilePlan


def plan_proof(lookup: Lookup, known: Tree | None) -> Proof:
    """`known` is the largest tree verified before (None: nothing known). The larger of it and
    the lookup's tree is `latest`; every hash is read from tiles authenticated by it."""
    tree = lookup.tree
    if known is not None and known.size == tree.size and known.hash != tree.hash:
        raise ForkedTree(_fork(known, tree))
    latest, older = tree, None
    if known is not None and known.size > 0 and known != tree:
        latest, older = (known, tree) if known.size > tree.size else (tree, known)
    if lookup.record_id >= latest.size:
        raise SumdbError(f"cannot validate record {lookup.record_id} in a tree of {latest.size} records")
    indexes = [stored_hash_index(0, lookup.record_id)]
    if older is not None and older.size > 0:
        indexes += tree_hash_indexes(older.size)
    return Proof(latest, older, plan_tiles(latest, indexes))


def check_proof(lookup: Lookup, proof: Proof, tiles: list[bytes]) -> Tree:
    """Run the proof on the tiles' data (in plan order) and return the tree now verified
    (the larger). Raises InconsistentTiles, ForkedTree or SumdbError."""
    hashes = read_hashes(proof.plan, tiles)
    if hashes[0] != record_hash(lookup.record):
        raise SumdbError(f"record {lookup.record_id} is not the record the tree holds at that position")
    older = proof.older
    if older is not None and older.size > 0 and sub_tree_hash(hashes[1:]) != older.hash:
        raise ForkedTree(_fork(older, proof.latest))
    return proof.latest


def format_tree(tree: Tree) -> str:
    return f"{tree.size} {base64.b64encode(tree.hash).decode()}"


def _fork(a: Tree, b: Tree) -> str:
    return f"tree {format_tree(a)} is not a prefix of tree {format_tree(b)}"
