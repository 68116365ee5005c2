"""Go module paths, versions and go.sum hashes, as golang.org/x/mod spells them (no I/O).

- `check_module_path` / `check_file_path`: module.CheckPath / module.CheckFilePath.
- `escape_path` / `escape_version`: the proxy protocol's case encoding, where every upper-case
  letter becomes '!' + its lower-case form, so that case-insensitive file systems can cache
  `github.com/Azure/x` and `github.com/azure/x` side by side.
- semver parsing and ordering (golang.org/x/mod/semver), to check that a configured version is
  canonical and to pick `latest` from a proxy's @v/list as the go command does.
- `hash1`: dirhash.Hash1, the go.sum `h1:` hash: SHA-256 over the lines
  "<sha256 hex of file>  <file name>\\n" for every file, names sorted byte-wise.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Reserved device names on Windows: a module that holds one cannot be extracted there.
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]
)
# ASCII a file name may use besides letters and digits (module.fileNameOK).
_FILE_PUNCTUATION = frozenset("!#$%&()+,-.=@[]^_{}~ ")
# ASCII an import-path element may use besides letters and digits (module.pathOK).
_PATH_PUNCTUATION = frozenset("+-._~")


def _element_problem(elem: str, *, file_name: bool) -> str | None:
    if elem == "":
        return "empty path element"
    if elem.count(".") == len(elem):
        return f"invalid path element {elem!r}"
    if elem[0] == "." and not file_name:
        return "leading dot in path element"
    if elem[-1] == ".":
        return "trailing dot in path element"
    for ch in elem:
        if ch.isascii():
            ok = ch.isalnum() or ch in (_FILE_PUNCTUATION if file_name else _PATH_PUNCTUATION)
        else:
            # Non-ASCII: letters only, and only in file names (module.fileNameOK).
            ok = file_name and ch.isalpha()
        if not ok:
            return f"invalid char {ch!r}"
    if elem.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
        return f"{elem.split('.', 1)[0]!r} disallowed as path element component on Windows"
    return None


def _path_problem(path: str, *, file_name: bool) -> str | None:
    if path == "":
        return "empty string"
    if ".." in path:
        return "double dot"
    if "//" in path:
        return "double slash"
    if path.endswith("/"):
        return "trailing slash"
    for elem in path.split("/"):
        problem = _element_problem(elem, file_name=file_name)
        if problem:
            return problem
    return None


def check_file_path(path: str) -> None:
    """module.CheckFilePath: a clean, portable, relative slash-separated file name."""
    problem = _path_problem(path, file_name=True)
    if problem:
        raise ValueError(f"malformed file path {path!r}: {problem}")


def check_module_path(path: str) -> None:
    """module.CheckPath: an import path whose first element is a lower-case domain name."""
    problem = _path_problem(path, file_name=False)
    first = path.split("/", 1)[0]
    if problem is None:
        if first == "":
            problem = "leading slash"
        elif "." not in first:
            problem = "missing dot in first path element"
        elif path[0] == "-":
            problem = "leading dash in first path element"
        elif not re.fullmatch(r"[a-z0-9.-]+", first):
            problem = "invalid char in first path element"
        elif split_path_version(path) is None:
            problem = "invalid version"
    if problem:
        raise ValueError(f"malformed module path {path!r}: {problem}")


def split_path_version(path: str) -> tuple[str, str] | None:
    """(prefix, major suffix) with the suffix "" or "/vN" (N >= 2), or ".vN" for gopkg.in;
    None if the path ends in a malformed major version such as /v1 or /v2.0."""
    if path.startswith("gopkg.in/"):
        m = re.fullmatch(r"(.+)(\.v(\d+))(-unstable)?", path)
        if not m or (m.group(3).startswith("0") and m.group(3) != "0"):
            return None
        return m.group(1), path[len(m.group(1)):]
    m = re.search(r"/v([0-9.]+)$", path)
    if not m or m.start() == 0:
        return path, ""
    digits = m.group(1)
    if "." in digits or digits.startswith("0") or digits == "1":
        return None
    return path[: m.start()], m.group(0)


def check_module_version(path: str, version: str) -> None:
    """module.Check: a valid path, a canonical semver, and a major version the path allows."""
    check_module_path(path)
    if canonical_version(version) != version:
        raise ValueError(f"version {version!r} is not canonical semver (e.g. v1.2.3)")
    split = split_path_version(path)
    assert split is not None  # check_module_path passed
    major_suffix = split[1]
    major = version.split(".", 1)[0]
    if major_suffix == "":
        ok = major in ("v0", "v1") or version.endswith("+incompatible")
    else:
        suffix = major_suffix.removesuffix("-unstable")
        ok = major == suffix[1:] or (suffix == ".v1" and version.startswith("v0.0.0-"))
    if not ok:
        want = major_suffix.lstrip("/.") or "v0 or v1"
        raise ValueError(f"mismatched module path {path} and version {version} (want {want})")


def _escape(s: str) -> str:
    return "".join("!" + ch.lower() if "A" <= ch <= "Z" else ch for ch in s)


def escape_path(path: str) -> str:
    """module.EscapePath: the path as it appears in proxy and checksum-database URLs."""
    check_module_path(path)
    return _escape(path)


def escape_version(version: str) -> str:
    """module.EscapeVersion."""
    if _element_problem(version, file_name=True) or "!" in version:
        raise ValueError(f"disallowed version string {version!r}")
    return _escape(version)


# ---------------------------------------------------------------------------------------------
# Semantic versions (golang.org/x/mod/semver: a leading "v", and v1 / v1.2 as shorthands).

_NUM = r"0|[1-9][0-9]*"
_SEMVER = re.compile(
    rf"v(?P<major>{_NUM})(?:\.(?P<minor>{_NUM})(?:\.(?P<patch>{_NUM})"
    r"(?P<pre>-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?P<build>\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)
_PSEUDO = re.compile(r"v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+)?")


@dataclass(frozen=True, slots=True)
class Semver:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...]  # identifiers after '-', empty for a release

    def key(self) -> tuple:
        """Sort key with semver precedence: a release sorts after its pre-releases; numeric
        identifiers sort before alphanumeric ones and by value."""
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)


def parse_semver(v: str) -> Semver | None:
    m = _SEMVER.fullmatch(v)
    if not m:
        return None
    pre = m.group("pre")
    if pre and any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in pre[1:].split(".")):
        return None  # numeric pre-release identifiers must not have leading zeros
    return Semver(int(m.group("major")), int(m.group("minor") or 0), int(m.group("patch") or 0),
                  tuple(pre[1:].split(".")) if pre else ())


def canonical_version(v: str) -> str:
    """module.CanonicalVersion: vX.Y.Z[-pre], build metadata dropped except +incompatible;
    "" if v is not semver."""
    m = _SEMVER.fullmatch(v)
    if not m or parse_semver(v) is None:
        return ""
    out = f"v{m.group('major')}.{m.group('minor') or 0}.{m.group('patch') or 0}{m.group('pre') or ''}"
    return out + "+incompatible" if m.group("build") == "+incompatible" else out


def is_pseudo_version(v: str) -> bool:
    return v.count("-") >= 2 and parse_semver(v) is not None and _PSEUDO.fullmatch(v) is not None


def pick_latest(listed: Iterable[str], path: str) -> str | None:
    """The version `go get M@latest` picks from a proxy's @v/list: the highest release, else
    the highest pre-release. Lines that are not canonical versions valid for `path`, and
    pseudo-versions, are skipped as the go command skips them. (Retractions, which need the
    latest go.mod, are not applied.)"""
    candidates = []
    for line in listed:
        fields = line.split()
        if not fields:
            continue
        v = fields[0]
        if is_pseudo_version(v):
            continue
        try:
            check_module_version(path, v)
        except ValueError:
            continue
        candidates.append((parse_semver(v), v))
    releases = [c for c in candidates if not c[0].prerelease]  # type: ignore[union-attr]
    pool = releases or candidates
    return max(pool, key=lambda c: c[0].key())[1] if pool else None  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# go.sum hashes


def hash1(files: Iterable[tuple[bytes, bytes]]) -> str:
    """dirhash.Hash1 over (file name as stored, SHA-256 digest of its content) pairs.

    Names are bytes because Go hashes a zip entry's name exactly as stored, whatever its
    encoding; byte-wise sorting is Go's sort.Strings order.
    """
    summary = hashlib.sha256()
    for name, digest in sorted(files):
        if b"\n" in name:
            raise ValueError("dirhash: file names with newlines are not supported")
        summary.update(digest.hex().encode() + b"  " + name + b"\n")
    return "h1:" + base64.b64encode(summary.digest()).decode()


def gomod_h1(data: bytes) -> str:
    """The go.sum hash of a .mod file: Hash1 over the single file `go.mod` with these bytes."""
    return hash1([(b"go.mod", hashlib.sha256(data).digest())])
