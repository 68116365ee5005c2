"""The checksum database's transparency log (golang.org/x/mod/sumdb/tlog), without I/O.

The log is an RFC 6962 Merkle tree over the records. Its hashes are published in *tiles*:
tile (H, L, N) holds the 2**H hashes at tree level L*H for leaves N*2**(H*(L+1)) onward, and a
partial tile (".p/W") the first W of them while the tree is still growing there. A signed
tree head (size, root hash) authenticates tiles: the tiles that hold the complete subtrees
making up the tree must hash to the root, and every other tile must hash to a hash in its
authenticated parent tile. Authenticated hashes then prove that a record is in the tree and
that an older tree is a prefix of a newer one.

Fetching is the caller's: `plan_tiles` says which tiles are needed, `read_hashes` checks the
fetched tile data against the tree and returns the requested hashes.

Stored hash index: the position of (level, n) in the log's append-only hash storage, where
each record appends its leaf hash and the hashes of the subtrees it completes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

HASH_SIZE = 32
TILE_HEIGHT = 8  # what sum.golang.org and the go command use


class InconsistentTiles(Exception):
    """Tile data that does not hash up to the signed tree: the server lied, or served junk."""


@dataclass(frozen=True, slots=True)
class Tree:
    size: int
    hash: bytes


def record_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def stored_hash_index(level: int, n: int) -> int:
    for _ in range(level):  # level L's n-th hash comes right after level L-1's (2n+1)-th
        n = 2 * n + 1
    i = 0
    while n > 0:  # level 0's n-th hash is at n + n/2 + n/4 + ...
        i += n
        n >>= 1
    return i + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """The inverse of stored_hash_index: (level, n)."""
    n = index // 2  # stored_hash_index(0, n) < 2n, so the leaf is within log2(index) of index/2
    index_n = stored_hash_index(0, n)
    assert index_n <= index
    while True:  # at most log2(index) turns
        # Record n+1 starts after record n's leaf hash and the hashes of subtrees it completes.
        x = index_n + 1 + _trailing_zeros(n + 1)
        if x > index:
            break
        n += 1
        index_n = x
    level = index - index_n
    return level, n >> level


def _trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


def _maxpow2(n: int) -> tuple[int, int]:
    """(k, log2 k) for the largest power of two k < n."""
    level = max((n - 1).bit_length() - 1, 0)
    return 1 << level, level


def sub_tree_index(lo: int, hi: int) -> list[int]:
    """Stored hash indexes of the complete subtrees that make up leaves [lo, hi), left first."""
    need = []
    while lo < hi:  # each turn takes the largest complete subtree left: at most log2 turns
        k, level = _maxpow2(hi - lo + 1)
        assert lo & (k - 1) == 0
        need.append(stored_hash_index(level, lo >> level))
        lo += k
    return need


def sub_tree_hash(hashes: list[bytes]) -> bytes:
    """The hash of leaves [lo, hi) from the hashes at sub_tree_index(lo, hi)."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def tree_hash_indexes(n: int) -> list[int]:
    return sub_tree_index(0, n)


# ---------------------------------------------------------------------------------------------
# Tiles


@dataclass(frozen=True, slots=True)
class Tile:
    height: int
    level: int  # -1 is the data tile level (record texts, not hashes)
    n: int
    width: int  # 1..2**height; 2**height is a full tile

    @property
    def full(self) -> bool:
        return self.width == 1 << self.height

    @property
    def path(self) -> str:
        """tile/H/L/NNN[.p/W], N written three digits at a time, "x" before all but the last."""
        n, digits = self.n, f"{self.n % 1000:03d}"
        while n >= 1000:  # one turn per three decimal digits
            n //= 1000
            digits = f"x{n % 1000:03d}/{digits}"
        level = "data" if self.level == -1 else str(self.level)
        suffix = "" if self.full else f".p/{self.width}"
        return f"tile/{self.height}/{level}/{digits}{suffix}"

    def widened(self) -> Tile:
        return Tile(self.height, self.level, self.n, 1 << self.height)


def _tile_for_index(h: int, index: int) -> tuple[Tile, int, int]:
    """The narrowest tile of height h holding stored hash `index`, and the byte range of its
    data that hashes to it (a hash above the tile's bottom row is a subtree of that row)."""
    level, n = split_stored_hash_index(index)
    tile_level = level // h
    level -= tile_level * h  # level within the tile
    tile_n = (n << level) >> h
    n -= (tile_n << h) >> level  # n within the tile, at that level
    width = (n + 1) << level
    return Tile(h, tile_level, tile_n, width), (n << level) * HASH_SIZE, ((n + 1) << level) * HASH_SIZE


def _tile_hash(data: bytes) -> bytes:
    if len(data) == HASH_SIZE:
        return data
    half = len(data) // 2
    return node_hash(_tile_hash(data[:half]), _tile_hash(data[half:]))


def _hash_from_tile(tile: Tile, data: bytes, index: int) -> bytes:
    t, start, end = _tile_for_index(tile.height, index)
    if t.level != tile.level or t.n != tile.n or t.width > tile.width:
        raise AssertionError(f"stored hash {index} is in {t.path}, not {tile.path}")
    return _tile_hash(data[start:end])


def _tile_parent(t: Tile, k: int, tree_size: int) -> Tile | None:
    """t's k-th ancestor tile as published for a tree of `tree_size` records (None if the tree
    does not reach it), with the width that tree gives it."""
    level = t.level + k
    n = t.n >> (k * t.height)
    width = 1 << t.height
    limit = tree_size >> (level * t.height)  # hashes present at this tile level
    if (n << t.height) + width >= limit:
        if (n << t.height) >= limit:
            return None
        width = limit - (n << t.height)
    return Tile(t.height, level, n, width)


@dataclass(frozen=True)
class TilePlan:
    """The tiles to fetch to read `indexes` from `tree`, parents before children."""

    tree: Tree
    indexes: tuple[int, ...]
    tiles: tuple[Tile, ...]
    _root_indexes: tuple[int, ...]  # sub_tree_index(0, tree.size): they authenticate the top
    _root_tiles: tuple[int, ...]  # position in `tiles` of the tile holding each of those
    _index_tiles: tuple[int, ...]  # position in `tiles` of the tile holding each index


def plan_tiles(tree: Tree, indexes: list[int], height: int = TILE_HEIGHT) -> TilePlan:
    """Raises ValueError if an index is not in the tree."""
    if tree.size <= 0:
        raise ValueError("an empty tree has no hashes to read")
    order: dict[Tile, int] = {}
    tiles: list[Tile] = []
    root_indexes = sub_tree_index(0, tree.size)
    root_tiles = []
    for x in root_indexes:
        tile = _tile_parent(_tile_for_index(height, x)[0], 0, tree.size)
        assert tile is not None
        if tile not in order:
            order[tile] = len(tiles)
            tiles.append(tile)
        root_tiles.append(order[tile])
    index_tiles = []
    limit = stored_hash_index(0, tree.size)
    for x in indexes:
        if not 0 <= x < limit:
            raise ValueError(f"stored hash {x} is not in a tree of {tree.size} records")
        base = _tile_for_index(height, x)[0]
        # Up from the index's tile to the first one already planned (authenticated by then);
        # then plan the ones below it, parents first. The root tiles are planned, so this ends.
        chain = []
        k = 0
        while (tile := _tile_parent(base, k, tree.size)) not in order:
            assert tile is not None and k < 64
            chain.append(tile)
            k += 1
        for tile in reversed(chain):
            order[tile] = len(tiles)
            tiles.append(tile)
        index_tiles.append(order[_tile_parent(base, 0, tree.size)])  # type: ignore[index]
    return TilePlan(tree, tuple(indexes), tuple(tiles), tuple(root_indexes), tuple(root_tiles), tuple(index_tiles))


def read_hashes(plan: TilePlan, data: list[bytes]) -> list[bytes]:
    """The hashes at plan.indexes, once the tiles' data (in plan order) is proven to belong to
    plan.tree. Raises InconsistentTiles otherwise."""
    if len(data) != len(plan.tiles):
        raise ValueError("one data per planned tile")
    for tile, d in zip(plan.tiles, data):
        if len(d) != tile.width * HASH_SIZE:
            raise InconsistentTiles(f"{tile.path}: {len(d)} bytes, want {tile.width * HASH_SIZE}")
    # The tiles holding the tree's complete subtrees must hash up to the signed root.
    root = sub_tree_hash(
        [_hash_from_tile(plan.tiles[j], data[j], x) for x, j in zip(plan._root_indexes, plan._root_tiles)]
    )
    if root != plan.tree.hash:
        raise InconsistentTiles(f"tiles do not hash to the signed root of tree {plan.tree.size}")
    # Every other tile is full (it has a parent) and must hash to its slot in the parent,
    # which comes earlier in the plan and so is already authenticated.
    position = {tile: i for i, tile in enumerate(plan.tiles)}
    for i in range(len(set(plan._root_tiles)), len(plan.tiles)):
        tile = plan.tiles[i]
        parent = _tile_parent(tile, 1, plan.tree.size)
        assert parent is not None and tile.full
        j = position[parent]
        expected = _hash_from_tile(parent, data[j], stored_hash_index(parent.level * parent.height, tile.n))
        if _tile_hash(data[i]) != expected:
            raise InconsistentTiles(f"{tile.path} does not hash to its slot in {parent.path}")
    return [_hash_from_tile(plan.tiles[j], data[j], x) for x, j in zip(plan.indexes, plan._index_tiles)]
