"""Fuzzing, the short run (the long one is bench/fuzz.py): every target of tests/fuzz_targets.py
under hypothesis — mutated real inputs, random bytes, and for the config loader YAML built from
its grammar (anchors, aliases, merge keys, self-references, deep nesting) — must end in an
outcome its caller handles, never another exception.

MONITOR_FUZZ_EXAMPLES sets the examples per target (default 500: the whole file runs in well
under a minute). Below, the inputs fuzzing found that once crashed, as plain tests.
"""

from __future__ import annotations

import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import ConfigError, load_config_text
from monitor.probes import goproxy as _goproxy
from monitor.probes._sumdb import SumdbError, parse_lookup, parse_tree
from tests.fuzz_targets import KINDS, TARGETS, Target, _signing_key, _verifier, mutate

EXAMPLES = int(os.environ.get("MONITOR_FUZZ_EXAMPLES", "500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a slow example is not a failure here; bench/fuzz.py reports hangs
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_operation = st.tuples(st.sampled_from(KINDS), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    seeds = target.seeds()
    mutated = st.builds(lambda seed, ops: mutate(seed, ops, target.tokens, seeds), st.sampled_from(seeds), st.lists(_operation, max_size=8))
    return st.one_of(mutated, st.binary(max_size=512))


# --- YAML from the grammar, for the config loader ---------------------------------------------

_KEYS = st.sampled_from([
    "agent", "storage", "url", "exporter", "listen", "trust", "extra_ca_files", "vantages", "defaults", "checks",
    "name", "kind", "target", "interval", "timeout", "read_timeout", "query", "type", "resolvers", "proxy", "module",
    "version", "via", "bind", "netns", "headers", "expect_status", "analysis", "alerting", "<<",
]) | st.text(max_size=6)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=16),
    st.sampled_from(["tcp", "tls", "http", "dns", "goproxy", "proxy", "git", "site", "local", "10s", "0", "-1s",
                     "127.0.0.1:80", "udp://127.0.0.1", "https://127.0.0.1/", "socks5h://127.0.0.1:1080", "²"]),
)
_TREES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5), max_leaves=25)


def _with_self_reference(tree: object, where: int) -> object:
    """The tree with itself inserted into one of its containers: YAML then says it with an
    anchor and an alias to it (&id001 … *id001), a recursive document."""
    containers = []

    def walk(node: object) -> None:
        if isinstance(node, (list, dict)):
            containers.append(node)
            for child in node if isinstance(node, list) else node.values():
                walk(child)

    walk(tree)
    if containers:
        target = containers[where % len(containers)]
        if isinstance(target, list):
            target.append(tree)
        else:
            target["self"] = tree
    return tree


@st.composite
def yaml_configs(draw: st.DrawFn) -> bytes:
    root = draw(st.dictionaries(_KEYS, _TREES, min_size=1, max_size=6))
    shared = draw(_TREES)  # the same object twice: YAML says it with an anchor and aliases
    for key in draw(st.lists(_KEYS, max_size=3)):
        root[key] = shared
    if draw(st.booleans()):
        root = _with_self_reference(root, draw(st.integers(0, 100)))
    text = yaml.safe_dump(root, default_flow_style=draw(st.booleans()), allow_unicode=True)
    depth = draw(st.sampled_from([0] * 10 + [100, 500]))  # 500: past what PyYAML can recurse into
    return (text + ("deep: " + "[" * depth + "]" * depth + "\n" if depth else "")).encode()


# --- the short run ---------------------------------------------------------------------------------


@FUZZ
@given(data=st.one_of(inputs(TARGETS["config"]), yaml_configs()))
def test_config_loader(data: bytes) -> None:
    TARGETS["config"].run(data)


@pytest.mark.parametrize("name", [n for n in TARGETS if n != "config"])
def test_target(name: str) -> None:
    target = TARGETS[name]

    @FUZZ
    @given(data=inputs(target))
    def fuzz(data: bytes) -> None:
        target.run(data)

    fuzz()


def test_every_target_accepts_its_seeds() -> None:
    for target in TARGETS.values():
        for seed in target.seeds():
            target.run(seed)


# --- what fuzzing found --------------------------------------------------------------------------

_LAUGHS = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("checks: &a [*a]\n", "checks[0]: Input should be a valid dictionary"),  # was RecursionError
        ("a: &a {b: *a}\n", "a: unknown key"),  # was RecursionError
        ("vantages: " + "[" * 3000 + "]" * 3000 + "\n", "yaml: nested too deeply"),  # was RecursionError
        (_LAUGHS, "a8: unknown key"),  # 10**9 leaves: was hours of walking them for duplicate keys
    ],
    ids=["recursive-alias", "recursive-mapping", "deep-nesting", "billion-laughs"],
)
def test_config_that_crashed_the_loader(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "c.yaml")
    assert any(problem in p for p in e.value.problems), e.value.problems


def _signed(text: bytes) -> bytes:
    return text + b"\n" + _signing_key().signature_line(text)


_RECORD = b"1\nexample.com/fuzz v1.0.0 h1:x\n\n"


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"\xc2\xb2\nexample.com/fuzz v1.0.0 h1:x\n\n", "bad record id"),  # '²'.isdigit(), then int('²') raised
        (_RECORD + _signed("go.sum database tree\n²\nAAAA\n".encode()), "bad size"),  # the same in a signed tree note
        (_RECORD + "go.sum database tree\n1\nAAAA\n\n— sum.fuzz.example é\n".encode(), "bad signature line"),  # b64decode of non-ASCII text
    ],
    ids=["unicode-digit-record-id", "unicode-digit-tree-size", "non-ascii-signature"],
)
def test_sumdb_answers_that_crashed_the_parser(body: bytes, problem: str) -> None:
    with pytest.raises(SumdbError, match=problem):
        parse_lookup(body, _verifier(), "example.com/fuzz", "v1.0.0")


def test_tree_size_in_unicode_digits_is_malformed() -> None:
    with pytest.raises(SumdbError, match="bad size"):
        parse_tree("go.sum database tree\n١٢\nAAAA\n".encode())


def test_info_nested_too_deep_is_not_json() -> None:
    with pytest.raises(_goproxy._Stop) as e:  # was RecursionError out of json.loads
        _goproxy._info_version(b"[" * 100_000)
    assert (e.value.failure.cls, e.value.failure.operation) == ("http_protocol_error", "read")
