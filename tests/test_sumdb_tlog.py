"""The transparency log: RFC 6962 hashing, tiles, and the proofs a lookup needs, checked
against an independently built log (tests/servers/goproxy_sumdb.py) and RFC 6962's vectors."""

from __future__ import annotations

import pytest

from monitor.probes import _tlog
from monitor.probes._sumdb import ForkedTree, Lookup, SumdbError, check_proof, plan_proof
from monitor.probes._tlog import InconsistentTiles, Tile, Tree, plan_tiles, read_hashes, record_hash, stored_hash_index
from tests.servers.goproxy_sumdb import SigningKey, TestLog

KEY = SigningKey("sum.test.example")

# RFC 6962 reference inputs (certificate-transparency's merkle tree tests) and the roots of
# the trees of their first n leaves.
RFC6962_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
                  bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def make_log(size: int) -> TestLog:
    log = TestLog(KEY)
    log.fill(size)
    return log


def tiles_of(log: TestLog, plan) -> list[bytes]:
    return [log.tile(t.path, plan.tree.size) for t in plan.tiles]


def tree_of(log: TestLog, size: int | None = None) -> Tree:
    size = log.size if size is None else size
    return Tree(size, log.root(size))


def test_test_log_matches_rfc6962_vectors():
    log = TestLog(KEY)
    for leaf in RFC6962_LEAVES:
        log.add(leaf)
    assert [log.root(n).hex() for n in range(1, 9)] == RFC6962_ROOTS


def test_stored_hash_index_round_trips():
    # Level 0's n-th hash is stored after the hashes of all subtrees the earlier records completed.
    assert [stored_hash_index(0, n) for n in range(6)] == [0, 1, 3, 4, 7, 8]
    assert stored_hash_index(1, 0) == 2 and stored_hash_index(2, 0) == 6
    for index in range(5000):
        assert stored_hash_index(*_tlog.split_stored_hash_index(index)) == index


def test_tile_paths_as_tlog_spells_them():
    assert Tile(3, 4, 1234067, 1).path == "tile/3/4/x001/x234/067.p/1"
    assert Tile(3, 4, 1234067, 8).path == "tile/3/4/x001/x234/067"
    assert Tile(8, -1, 5, 256).path == "tile/8/data/005"
    assert Tile(8, 0, 1000, 3).path == "tile/8/0/x001/000.p/3"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 255, 256, 257, 300, 511, 512, 513, 1000, 65536 + 300])
def test_every_record_is_proven_from_tiles(size):
    log = make_log(size)
    tree = tree_of(log)
    ids = range(size) if size < 2000 else [0, 1, 255, 256, 65535, 65536, size - 1]
    for i in ids:
        plan = plan_tiles(tree, [stored_hash_index(0, i)])
        assert read_hashes(plan, tiles_of(log, plan)) == [record_hash(log.records[i])], i


@pytest.mark.parametrize("older, newer", [(1, 2), (3, 8), (255, 256), (256, 257), (300, 1000), (511, 513), (1000, 65536 + 300)])
def test_older_tree_hash_is_computed_from_the_newer_trees_tiles(older, newer):
    log = make_log(newer)
    plan = plan_tiles(tree_of(log), _tlog.tree_hash_indexes(older))
    assert _tlog.sub_tree_hash(read_hashes(plan, tiles_of(log, plan))) == log.root(older)


def test_tiles_that_do_not_hash_to_the_root_are_refused():
    log = make_log(1000)
    plan = plan_tiles(tree_of(log), [stored_hash_index(0, 5)])
    data = tiles_of(log, plan)
    for i in range(len(data)):
        bad = list(data)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        with pytest.raises(InconsistentTiles):
            read_hashes(plan, bad)
    short = list(data)
    short[-1] = short[-1][:-32]
    with pytest.raises(InconsistentTiles, match="bytes, want"):
        read_hashes(plan, short)


def test_hashes_outside_the_tree_cannot_be_planned():
    with pytest.raises(ValueError):
        plan_tiles(Tree(5, b"\0" * 32), [stored_hash_index(0, 5)])


# --- proofs of a lookup ------------------------------------------------------------------------


def lookup_of(log: TestLog, record_id: int, tree: Tree | None = None) -> Lookup:
    tree = tree or tree_of(log)
    return Lookup(record_id, log.records[record_id], tree, b"", (), "h1:x", "h1:y")


def prove(log: TestLog, lookup: Lookup, known: Tree | None) -> Tree:
    proof = plan_proof(lookup, known)
    return check_proof(lookup, proof, tiles_of(log, proof.plan))


def test_record_proven_with_nothing_known():
    log = make_log(700)
    assert prove(log, lookup_of(log, 123), None) == tree_of(log)


def test_newer_tree_proven_consistent_with_the_known_one():
    log = make_log(300)
    known = tree_of(log)
    log.fill(500)
    assert prove(log, lookup_of(log, 299), known) == tree_of(log)


def test_stale_tree_proven_against_the_larger_known_one():
    # A lookup whose note is older than the tree already verified: proven with the known
    # tree's tiles; the known tree stays the latest.
    log = make_log(800)
    known = tree_of(log)
    stale = tree_of(log, 300)
    assert prove(log, lookup_of(log, 10, stale), known) == known


def test_fork_with_the_same_size_is_refused_at_once():
    log = make_log(10)
    other = Tree(10, b"\x42" * 32)
    with pytest.raises(ForkedTree, match="is not a prefix"):
        plan_proof(lookup_of(log, 3), other)


def test_fork_in_history_is_refused():
    # Two logs agree on 100 records, then one rewrites record 50's neighbourhood: its later
    # tree does not extend the tree the first one showed.
    honest = make_log(120)
    known = tree_of(honest)
    forked = TestLog(KEY)
    for i, text in enumerate(honest.records):
        forked.add(text if i != 50 else b"example.com/evil v1.0.0 h1:forged\n")
    forked.fill(200)
    with pytest.raises(ForkedTree):
        prove(forked, lookup_of(forked, 130), known)


def test_record_not_at_its_position_is_refused():
    log = make_log(50)
    lie = Lookup(7, b"example.com/mod v1.0.0 h1:forged\n", tree_of(log), b"", (), "h1:x", "h1:y")
    with pytest.raises(SumdbError, match="not the record the tree holds"):
        prove(log, lie, None)


def test_record_beyond_the_tree_is_refused():
    log = make_log(50)
    lie = Lookup(60, b"x\n", tree_of(log), b"", (), "h1:x", "h1:y")
    with pytest.raises(SumdbError, match="cannot validate record 60 in a tree of 50 records"):
        plan_proof(lie, None)
