"""Module paths, versions, escaping, go.sum hashes and GOPROXY lists, against golang.org/x/mod's
rules and known answers."""

from __future__ import annotations

import base64
import hashlib

import pytest

from monitor.probes._gomod import (
    canonical_version,
    check_file_path,
    check_module_path,
    check_module_version,
    escape_path,
    escape_version,
    gomod_h1,
    hash1,
    is_pseudo_version,
    parse_semver,
    pick_latest,
)
from monitor.probes._goproxy_list import DIRECT, OFF, ProxyEntry, parse_goproxy


def test_known_answer_empty_go_mod():
    assert gomod_h1(b"") == "h1:G7mAYYxgmS0lVkHyy2hEOLQCFB0DlQFTMLWggykrydY="


def test_known_answer_real_go_mod():
    # go.sum: rsc.io/quote v1.5.2/go.mod h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0=
    gomod = b'module "rsc.io/quote"\n\nrequire "rsc.io/sampler" v1.3.0\n'
    assert gomod_h1(gomod) == "h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0="


def test_hash1_sorts_names_bytewise_and_formats_lines_as_dirhash():
    # dirhash's TestHash1: files "xyz" and "abc" holding "data for <name>", listed unsorted.
    def h(s: bytes) -> str:
        return hashlib.sha256(s).hexdigest()

    files = [(b"xyz", hashlib.sha256(b"data for xyz").digest()), (b"abc", hashlib.sha256(b"data for abc").digest())]
    summary = f"{h(b'data for abc')}  abc\n{h(b'data for xyz')}  xyz\n".encode()
    assert hash1(files) == "h1:" + base64.b64encode(hashlib.sha256(summary).digest()).decode()
    # Byte-wise: "B" (0x42) sorts before "a" (0x61); a case-insensitive sort would differ.
    mixed = [(b"a", hashlib.sha256(b"1").digest()), (b"B", hashlib.sha256(b"2").digest())]
    assert hash1(mixed) == hash1(list(reversed(mixed)))
    lines = f"{h(b'2')}  B\n{h(b'1')}  a\n".encode()
    assert hash1(mixed) == "h1:" + base64.b64encode(hashlib.sha256(lines).digest()).decode()


def test_hash1_refuses_newlines_in_names():
    with pytest.raises(ValueError, match="newlines"):
        hash1([(b"a\nb", hashlib.sha256(b"").digest())])


@pytest.mark.parametrize(
    "path, escaped",
    [
        ("golang.org/x/text", "golang.org/x/text"),
        ("github.com/Azure/azure-sdk-for-go", "github.com/!azure/azure-sdk-for-go"),
        ("github.com/BurntSushi/toml", "github.com/!burnt!sushi/toml"),
        ("gopkg.in/yaml.v3", "gopkg.in/yaml.v3"),
    ],
)
def test_escape_path(path, escaped):
    assert escape_path(path) == escaped


def test_escape_version():
    assert escape_version("v1.0.0-RC1") == "v1.0.0-!r!c1"
    with pytest.raises(ValueError):
        escape_version("v1.0.0!")


@pytest.mark.parametrize(
    "path, problem",
    [
        ("Golang.org/x/text", "invalid char in first path element"),
        ("golang/x/text", "missing dot in first path element"),
        ("-golang.org/x", "leading dash"),
        ("golang.org/../x", "double dot"),
        ("golang.org//x", "double slash"),
        ("golang.org/x/", "trailing slash"),
        ("golang.org/.x", "leading dot"),
        ("golang.org/x/text/v1", "invalid version"),
        ("golang.org/x/text/v2.0", "invalid version"),
        ("golang.org/x/te xt", "invalid char"),
        ("golang.org/x/con.go", "disallowed as path element component on Windows"),
        ("", "empty string"),
    ],
)
def test_bad_module_paths(path, problem):
    with pytest.raises(ValueError, match=problem):
        check_module_path(path)


@pytest.mark.parametrize("path", ["golang.org/x/text", "github.com/Azure/go-autorest/v14", "gopkg.in/yaml.v3", "example.com/a_b~c+d"])
def test_good_module_paths(path):
    check_module_path(path)


@pytest.mark.parametrize(
    "path, version, ok",
    [
        ("golang.org/x/text", "v0.3.2", True),
        ("golang.org/x/text", "v1.0.0", True),
        ("golang.org/x/text", "v2.0.0", False),
        ("golang.org/x/text", "v2.0.0+incompatible", True),
        ("example.com/m/v2", "v2.1.0", True),
        ("example.com/m/v2", "v3.0.0", False),
        ("gopkg.in/yaml.v3", "v3.0.1", True),
        ("gopkg.in/check.v1", "v0.0.0-20161208181325-20d25e280405", True),
        ("golang.org/x/text", "v0.3", False),  # not canonical
        ("golang.org/x/text", "v0.3.2+meta", False),  # build metadata is not canonical
    ],
)
def test_module_version_pairs(path, version, ok):
    if ok:
        check_module_version(path, version)
    else:
        with pytest.raises(ValueError):
            check_module_version(path, version)


@pytest.mark.parametrize("name", ["../x", "a/../b", "/abs", "a//b", "a/", "a/b:c", "a/b*", "x/AUX.txt", "a\\b"])
def test_bad_file_paths(name):
    with pytest.raises(ValueError):
        check_file_path(name)


@pytest.mark.parametrize("name", ["go.mod", ".gitignore", "a b/c (1).go", "données/ß.txt", "x/y@z/[1]{2}.go"])
def test_good_file_paths(name):
    check_file_path(name)


def test_canonical_versions():
    assert canonical_version("v1") == "v1.0.0"
    assert canonical_version("v1.2") == "v1.2.0"
    assert canonical_version("v1.2.3-pre+build") == "v1.2.3-pre"
    assert canonical_version("v2.0.0+incompatible") == "v2.0.0+incompatible"
    for bad in ("1.2.3", "v1.2.3.4", "v01.2.3", "v1.2-pre", "v1.2.3-01", "latest"):
        assert canonical_version(bad) == "", bad


def test_semver_precedence_as_in_the_spec():
    ordered = ["v1.0.0-alpha", "v1.0.0-alpha.1", "v1.0.0-alpha.beta", "v1.0.0-beta", "v1.0.0-beta.2",
               "v1.0.0-beta.11", "v1.0.0-rc.1", "v1.0.0", "v1.0.1", "v1.10.0", "v2.0.0"]
    keys = [parse_semver(v).key() for v in ordered]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_pick_latest_as_the_go_command():
    assert pick_latest(["v1.0.0", "v1.10.0", "v1.9.0", "v1.11.0-rc.1"], "example.com/m") == "v1.10.0"
    assert pick_latest(["v1.0.0-rc.1", "v1.0.0-rc.2", "junk", ""], "example.com/m") == "v1.0.0-rc.2"
    # Pseudo-versions and versions of another major are not candidates.
    listed = ["v0.1.0", "v0.0.0-20191109021931-daa7c04131f5", "v2.0.0", "v0.2.0 2026-01-01T00:00:00Z"]
    assert pick_latest(listed, "example.com/m") == "v0.2.0"
    assert pick_latest([], "example.com/m") is None
    assert is_pseudo_version("v0.0.0-20191109021931-daa7c04131f5")
    assert is_pseudo_version("v1.2.4-0.20191109021931-daa7c04131f5")
    assert not is_pseudo_version("v1.2.4-rc.1")


@pytest.mark.parametrize(
    "value, entries",
    [
        ("https://goproxy.cn", [ProxyEntry("https://goproxy.cn")]),
        ("goproxy.cn", [ProxyEntry("https://goproxy.cn")]),
        ("https://a.example/,https://b.example", [ProxyEntry("https://a.example"), ProxyEntry("https://b.example")]),
        ("https://a.example|https://b.example,direct",
         [ProxyEntry("https://a.example", True), ProxyEntry("https://b.example"), ProxyEntry(DIRECT)]),
        ("off", [ProxyEntry(OFF)]),
        ("https://a.example,direct,https://ignored.example", [ProxyEntry("https://a.example"), ProxyEntry(DIRECT)]),
        (" https://a.example ,, ", [ProxyEntry("https://a.example")]),
        ("http://127.0.0.1:8080/prefix", [ProxyEntry("http://127.0.0.1:8080/prefix")]),
    ],
)
def test_goproxy_lists(value, entries):
    assert list(parse_goproxy(value)) == entries


@pytest.mark.parametrize("value", ["", " , ", "|", "ftp://x.example", "file:///tmp/cache", "noscheme"])
def test_bad_goproxy_lists(value):
    with pytest.raises(ValueError):
        parse_goproxy(value)
