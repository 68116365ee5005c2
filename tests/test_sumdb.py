"""Checksum-database messages: verifier keys, signed notes, tree heads and lookup answers,
with real notes signed by sum.golang.org as known answers."""

from __future__ import annotations

import base64

import pytest

from monitor.probes._sumdb import (
    DEFAULT_KEY,
    BadSignature,
    SumdbError,
    open_note,
    parse_lookup,
    parse_tree,
    parse_verifier_key,
    verifier_for,
)
from monitor.probes._tlog import Tree
from tests.servers.goproxy_sumdb import SigningKey, TestLog

GOLANG_KEY = parse_verifier_key(DEFAULT_KEY)

# Signed tree heads published by sum.golang.org (quoted in public bug reports and docs).
REAL_NOTES = [
    (
        "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
        "— sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfcZz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
        65209736, "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=",
    ),
    (
        "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
        "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n",
        6476701, "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=",
    ),
]

# `curl https://sum.golang.org/lookup/github.com/google/uuid@v1.2.0`, as published.
REAL_LOOKUP = (
    "2580307\n"
    "github.com/google/uuid v1.2.0 h1:qJYtXnJRWmpe7m/3XlyhrsLrEURqHRM2kxzoxXqyUDs=\n"
    "github.com/google/uuid v1.2.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=\n"
    "\n"
    "go.sum database tree\n3935567\nSapHtgdNCeF00Cx8kqztePV24kgzNg++Xovae42HAMw=\n\n"
    "— sum.golang.org Az3grsm7Wm4CVNR1RHq9BFnu9jzcRlU2uw7lr0gfUWgO6+rqPNjT+fUTl9gH0NRTgdwW9nItuQSMbhSaLCsk8YeYSAs=\n"
).encode()


def test_default_key_is_sum_golang_org():
    assert (GOLANG_KEY.name, GOLANG_KEY.key_hash, len(GOLANG_KEY.public_key)) == ("sum.golang.org", 0x033DE0AE, 32)


@pytest.mark.parametrize("note, size, root", REAL_NOTES)
def test_real_notes_verify_with_the_real_key(note, size, root):
    opened = open_note(note.encode(), GOLANG_KEY)
    assert parse_tree(opened.text) == Tree(size, base64.b64decode(root))


def test_real_lookup_parses_and_verifies():
    lookup = parse_lookup(REAL_LOOKUP, GOLANG_KEY, "github.com/google/uuid", "v1.2.0")
    assert lookup.record_id == 2580307
    assert lookup.zip_h1 == "h1:qJYtXnJRWmpe7m/3XlyhrsLrEURqHRM2kxzoxXqyUDs="
    assert lookup.gomod_h1 == "h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo="
    assert lookup.tree.size == 3935567
    assert lookup.record.endswith(b"yHo=\n") and lookup.note.startswith(b"go.sum database tree\n")


def test_altered_real_note_is_a_bad_signature():
    note, _, _ = REAL_NOTES[0]
    forged = note.replace("65209736", "65209737")
    with pytest.raises(BadSignature, match="invalid signature for key sum.golang.org\\+033de0ae"):
        open_note(forged.encode(), GOLANG_KEY)


def test_unknown_signers_are_ignored_but_one_known_signature_is_required():
    key = SigningKey("sum.golang.org")  # same name, different key: its hash differs
    other = SigningKey("witness.example")
    log = TestLog(key)
    log.add(b"x\n")
    verifier = parse_verifier_key(key.vkey)
    both = log.signed_tree(signers=(other, key))
    assert open_note(both, verifier).unknown_signers == (f"witness.example+{other.key_hash.hex()}",)
    with pytest.raises(SumdbError, match="no verifiable signature"):
        open_note(log.signed_tree(signers=(other,)), verifier)
    with pytest.raises(SumdbError, match="no verifiable signature"):
        open_note(log.signed_tree(), GOLANG_KEY)  # right name, wrong key


def test_a_repeated_known_signature_is_checked_once():
    # note.Open skips a known key's later signatures unchecked: a garbled repeat is no forgery.
    key = SigningKey("sum.test")
    log = TestLog(key)
    log.add(b"x\n")
    note = log.signed_tree()
    garbled = key.signature_line(b"some other text")
    open_note(note + garbled, parse_verifier_key(key.vkey))
    with pytest.raises(BadSignature):
        open_note(log.tree_text() + b"\n" + garbled + key.signature_line(log.tree_text()), parse_verifier_key(key.vkey))


@pytest.mark.parametrize(
    "msg, problem",
    [
        (b"go.sum database tree\n1\nAAAA\n", "no signature block"),
        (b"text\n\n\xe2\x80\x94 a QUJDREVGRw==", "does not end in a newline"),
        (b"text\n\n- a QUJDREVGRw==\n", "does not start with"),
        (b"text\n\n\xe2\x80\x94 a b+c QUJDREVGRw==\n", "bad signature line"),
        (b"text\n\n\xe2\x80\x94 a QUJD\n", "bad signature line"),  # shorter than hash + 1 byte
        (b"text\x01\n\n\xe2\x80\x94 a QUJDREVGRw==\n", "control character"),
        (b"text\xff\n\n\xe2\x80\x94 a QUJDREVGRw==\n", "not UTF-8"),
        (b"text\n\n" + b"\xe2\x80\x94 a QUJDREVGRw==\n" * 101, "more than 100 signatures"),
    ],
)
def test_malformed_notes(msg, problem):
    with pytest.raises(SumdbError, match=problem):
        open_note(msg, GOLANG_KEY)


@pytest.mark.parametrize(
    "text",
    [
        b"go.sum database tree\n12\n",
        b"go.sum database tree v2\n12\nSapHtgdNCeF00Cx8kqztePV24kgzNg++Xovae42HAMw=\n",
        b"go.sum database tree\n012\nSapHtgdNCeF00Cx8kqztePV24kgzNg++Xovae42HAMw=\n",
        b"go.sum database tree\n-1\nSapHtgdNCeF00Cx8kqztePV24kgzNg++Xovae42HAMw=\n",
        b"go.sum database tree\n12\nSapHtgdNCeF00Cx8kqztePV24kgzNg++Xovae42HA==\n",
    ],
)
def test_malformed_trees(text):
    with pytest.raises(SumdbError, match="malformed tree"):
        parse_tree(text)


def test_tree_lines_after_the_third_are_ignored():
    text = b"go.sum database tree\n12\nSapHtgdNCeF00Cx8kqztePV24kgzNg++Xovae42HAMw=\nfuture line\n"
    assert parse_tree(text).size == 12


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"x\n" + REAL_LOOKUP.split(b"\n", 1)[1], "bad record id"),
        (REAL_LOOKUP.replace(b"github.com/google/uuid v1.2.0 h1", b"github.com/google/uuid v1.2.0\x01h1"), "malformed record"),
        (b"2580307\nno blank line after the record\n", "malformed record"),
    ],
)
def test_malformed_lookups(body, problem):
    with pytest.raises(SumdbError, match=problem):
        parse_lookup(body, GOLANG_KEY, "github.com/google/uuid", "v1.2.0")


def test_lookup_without_lines_for_the_module_is_refused():
    with pytest.raises(SumdbError, match="no go.sum line for github.com/google/uuid v1.2.1"):
        parse_lookup(REAL_LOOKUP, GOLANG_KEY, "github.com/google/uuid", "v1.2.1")
    only_zip = REAL_LOOKUP.replace(b"github.com/google/uuid v1.2.0/go.mod", b"github.com/google/other v1.2.0/go.mod")
    with pytest.raises(SumdbError, match="no go.sum line for github.com/google/uuid v1.2.0/go.mod"):
        parse_lookup(only_zip, GOLANG_KEY, "github.com/google/uuid", "v1.2.0")


@pytest.mark.parametrize(
    "vkey, problem",
    [
        ("sum.golang.org+033de0af+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8", "does not match"),
        ("sum.golang.org+033de0ae", "malformed"),
        ("sum.golang.org+33de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8", "malformed"),
        ("sum golang+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8", "malformed"),
    ],
)
def test_bad_verifier_keys(vkey, problem):
    with pytest.raises(ValueError, match=problem):
        parse_verifier_key(vkey)


def test_verifier_key_algorithm_and_length_are_checked():
    import hashlib

    def vkey(encoded: bytes) -> str:
        h = hashlib.sha256(b"k.example\n" + encoded).digest()[:4].hex()
        return f"k.example+{h}+{base64.b64encode(encoded).decode()}"

    with pytest.raises(ValueError, match="unknown verifier key algorithm 2"):
        parse_verifier_key(vkey(b"\x02" + b"k" * 32))
    with pytest.raises(ValueError, match="want 32 bytes"):
        parse_verifier_key(vkey(b"\x01" + b"k" * 31))


def test_verifier_for_configured_databases():
    assert verifier_for("sum.golang.org", None) == (GOLANG_KEY, None)
    # GOSUMDB=sum.golang.google.cn: sum.golang.org's key, reached at the alias.
    assert verifier_for("sum.golang.google.cn", None) == (GOLANG_KEY, "https://sum.golang.google.cn")
    test_key = SigningKey("sum.test.example")
    assert verifier_for("sum.test.example", test_key.vkey)[0].name == "sum.test.example"
    with pytest.raises(ValueError, match="required"):
        verifier_for("sum.test.example", None)
    with pytest.raises(ValueError, match="is for 'sum.test.example', not 'sum.golang.org'"):
        verifier_for("sum.golang.org", test_key.vkey)
