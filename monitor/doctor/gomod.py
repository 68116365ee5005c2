"""The modules a go.mod needs, and the pins its go.sum holds (no network).

    modules = read_gomod(Path("go.mod"))        # every required module, replacements applied
    chosen = representative(modules, goenv)      # a few that cover the paths go would take
    pins = read_gosum(Path("go.sum"))            # {(path, version): (zip h1, go.mod h1)}

A go.mod says what `go mod download` fetches: each `require`d module@version, unless a
`replace` swaps it for another module (fetched instead) or a local directory (not fetched).
Checking every requirement would take as long as the download itself; the paths they take
are few (the same proxies, the checksum database, a handful of VCS hosts), so one module per
kind of path stands for the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from monitor.doctor.goenv import GoEnv
from monitor.probes._gomod import check_module_path, check_module_version


class GoModError(ValueError):
    """A go.mod that cannot be read; the message names FILE:LINE."""


@dataclass(frozen=True)
class Requirement:
    path: str
    version: str
    indirect: bool = False
    line: int = 0


_DIRECTIVE = re.compile(r"^(require|replace|exclude|retract|module|go|toolchain|godebug)\b\s*(.*)$")


def read_gomod(path: Path) -> list[Requirement]:
    """The modules `go mod download` fetches for this go.mod, in file order."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GoModError(f"{path}:0: cannot read: {getattr(e, 'strerror', None) or e}") from None
    requires: list[Requirement] = []
    replaces: dict[tuple[str, str | None], tuple[str, str | None]] = {}
    block: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        comment = raw.find("//")
        line, note = (raw[:comment], raw[comment + 2 :]) if comment >= 0 else (raw, "")
        line = line.strip()
        if not line:
            continue
        if block is not None:
            if line == ")":
                block = None
                continue
            verb, rest = block, line
        else:
            m = _DIRECTIVE.match(line)
            if not m:
                raise GoModError(f"{path}:{number}: unknown directive: {line.split()[0]}")
            verb, rest = m.group(1), m.group(2).strip()
            if rest == "(":
                block = verb
                continue
        try:
            if verb == "require":
                module, version = _fields(rest, 2)
                check_module_version(module, version)
                requires.append(Requirement(module, version, indirect="indirect" in note.split(), line=number))
            elif verb == "replace":
                old, new = (side.split() for side in rest.split("=>", 1)) if "=>" in rest else ([], [])
                if not old or not new or len(old) > 2 or len(new) > 2:
                    raise ValueError("want: replace OLD [VERSION] => NEW [VERSION]")
                replaces[(old[0], old[1] if len(old) == 2 else None)] = (new[0], new[1] if len(new) == 2 else None)
        except ValueError as e:
            raise GoModError(f"{path}:{number}: {verb}: {e}") from None
    if block is not None:
        raise GoModError(f"{path}:{len(text.splitlines())}: unterminated {block} block")
    return [r for r in (_replaced(r, replaces) for r in requires) if r is not None]


def _fields(rest: str, count: int) -> list[str]:
    fields = [f.strip('"') for f in rest.split()]
    if len(fields) != count:
        raise ValueError(f"want {count} fields, got {len(fields)}")
    return fields


def _replaced(r: Requirement, replaces: dict[tuple[str, str | None], tuple[str, str | None]]) -> Requirement | None:
    """What is fetched for `r`: itself, its replacement module, or nothing (a local directory)."""
    found = replaces.get((r.path, r.version)) or replaces.get((r.path, None))
    if found is None:
        return r
    new_path, new_version = found
    if new_version is None:  # a directory on disk (./x, ../x, /abs): nothing to download
        return None
    check_module_path(new_path)
    return Requirement(new_path, new_version, r.indirect, r.line)


def representative(modules: list[Requirement], goenv: GoEnv, *, limit: int = 3) -> list[Requirement]:
    """At most `limit` modules, one per kind of path the go command would take: direct
    requirements first, then one per (proxied?, checksummed?, first path element), so that
    a private module, a golang.org/x module and a github.com module are each represented."""
    ordered = sorted(modules, key=lambda r: r.indirect)  # stable: file order within each group
    chosen: list[Requirement] = []
    seen: set[tuple[bool, bool, str]] = set()
    for r in ordered:
        kind = (goenv.proxied(r.path), goenv.checksummed(r.path), r.path.split("/")[0])
        if kind not in seen:
            seen.add(kind)
            chosen.append(r)
    # Private modules first: they are the ones a proxy-only check would miss.
    chosen.sort(key=lambda r: goenv.proxied(r.path))
    return chosen[:limit]


def read_gosum(path: Path) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """{(module, version): (h1 of the zip, h1 of the go.mod)} from a go.sum; {} if absent."""
    pins: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return pins
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or not fields[2].startswith("h1:"):
            continue
        module, version, h1 = fields
        zip_h1, mod_h1 = pins.get((module, version.removesuffix("/go.mod")), (None, None))
        if version.endswith("/go.mod"):
            mod_h1 = h1
        else:
            zip_h1 = h1
        pins[(module, version.removesuffix("/go.mod"))] = (zip_h1, mod_h1)
    return pins


def parse_module_arg(arg: str) -> Requirement:
    """MODULE[@VERSION] as given on the command line; VERSION defaults to latest."""
    path, _, version = arg.partition("@")
    version = version or "latest"
    check_module_path(path)
    if version != "latest":
        check_module_version(path, version)
    return Requirement(path, version)
