"""Module zips: honest ones hash as go.sum does; hostile ones are refused as golang.org/x/mod/zip
refuses them, without reading past the limits."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zipfile
import zlib

import pytest

from monitor.probes._modzip import MAX_CENTRAL_DIRECTORY, BadModuleZip, ZipTooLarge, check_and_hash
from tests.servers.goproxy import Module, h1, make_zip, with_declared_size

M, V = "example.com/mod", "v1.2.3"
P = f"{M}@{V}/"


def check(data: bytes, module: str = M, version: str = V, deadline: float | None = None):
    return check_and_hash(io.BytesIO(data), len(data), module, version, deadline=deadline or time.monotonic() + 10)


def test_honest_zip_hashes_as_go_sum():
    mod = Module(M, V, {"LICENSE": b"MIT\n", "a.go": b"package mod\n" * 500, "sub/b.go": b"package sub\n", "données.txt": b"\xc3\xa9"})
    got = check(mod.zip_bytes())
    assert got.h1 == mod.zip_h1
    assert (got.files, got.uncompressed_bytes) == (5, sum(len(d) for d in mod.files.values()))


def test_every_entry_is_hashed_even_directories_and_the_root():
    # dirhash.HashZip hashes each entry as stored, directory entries included (empty content).
    entries = {P: b"", P + "go.mod": b"module example.com/mod\n", P + "sub/": b"", P + "sub/x.go": b"package sub\n"}
    got = check(make_zip(entries))
    assert got.h1 == h1({name.encode(): data for name, data in entries.items()})
    assert got.files == 2


def test_stored_entries_are_read_too():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(P + "go.mod", b"module example.com/mod\n")
    assert check(buf.getvalue()).h1 == h1({(P + "go.mod").encode(): b"module example.com/mod\n"})


@pytest.mark.parametrize(
    "names, problem",
    [
        ([P + "../evil.go"], "not clean"),
        ([P + "a/./b.go"], "not clean"),
        ([P + "/etc/passwd"], "not clean"),
        (["other.com/mod@v1.2.3/x.go"], "does not have prefix"),
        ([f"{M}@v1.2.4/x.go"], "does not have prefix"),
        (["x.go"], "does not have prefix"),
        ([P + "README", P + "readme"], "case-insensitive file name collision"),
        ([P + "K.go", P + "\u212a.go"], "case-insensitive file name collision"),  # Kelvin sign folds to k
        ([P + "Dir/a.go", P + "dir/b.go"], "case-insensitive file name collision"),
        ([P + "a", P + "a/b"], "both a file and a directory"),
        ([P + "x.go", P + "x.go"], "multiple entries"),
        ([P + "sub/go.mod"], "not in module root"),
        ([P + "GO.MOD"], "lowercase names"),
        ([P + "a:b.go"], "invalid char"),
        ([P + "aux.go"], "Windows"),
    ],
)
def test_hostile_names_are_refused(names, problem):
    with pytest.raises(BadModuleZip, match=problem):
        check(zip_in_order(names))


def zip_in_order(names: list[str]) -> bytes:
    """Entries written one by one, repeats included (make_zip takes a dict)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        for name in names:
            z.writestr(zipfile.ZipInfo(name), b"x")
    return buf.getvalue()


def test_ss_and_sharp_s_do_not_collide():
    # Go's EqualFold uses simple folding: "ß" and "ss" are different names, as here.
    assert check(make_zip({P + "ß.txt": b"1", P + "ss.txt": b"2"})).files == 2


def test_name_not_utf8_is_refused():
    data = bytearray(make_zip({P + "xx.go": b"x"}))
    data = bytes(data).replace(b"xx.go", b"x\xff.go")  # in the local and the central header
    with pytest.raises(BadModuleZip, match="invalid UTF-8"):
        check(data)


def test_bomb_that_declares_its_size_is_refused_before_reading():
    # 600 MiB announced: over the 500 MiB total before a byte is inflated.
    data = with_declared_size(make_zip({P + "go.mod": b"module x\n", P + "big.bin": b"\0" * 1000}), P + "big.bin", 600 << 20)
    with pytest.raises(BadModuleZip, match="total uncompressed size of module contents too large"):
        check(data)


def test_bomb_that_lies_about_its_size_stops_at_the_declared_size():
    # 32 MiB of zeros deflate to ~32 KiB; the entry claims 1000 bytes. Reading stops at the
    # first chunk past 1000, long before 32 MiB are inflated.
    data = with_declared_size(make_zip({P + "bomb.bin": b"\0" * (32 << 20)}), P + "bomb.bin", 1000)
    assert len(data) < 100_000
    with pytest.raises(BadModuleZip, match=r"larger than declared size \(1000 bytes\)"):
        check(data)


def test_entry_shorter_than_declared_is_refused():
    data = with_declared_size(make_zip({P + "a.go": b"package a\n"}), P + "a.go", 11)
    with pytest.raises(BadModuleZip, match="shorter than its declared size"):
        check(data)


@pytest.mark.parametrize("name, limit", [("go.mod", "go.mod file too large"), ("LICENSE", "LICENSE file too large")])
def test_go_mod_and_license_over_16_mib_are_refused(name, limit):
    data = with_declared_size(make_zip({P + name: b"x"}), P + name, (16 << 20) + 1)
    with pytest.raises(BadModuleZip, match=limit):
        check(data)


def test_crc_mismatch_is_refused():
    data = bytearray(make_zip({P + "a.go": b"package a\n"}))
    cd_offset = struct.unpack_from("<L", data, len(data) - 22 + 16)[0]
    struct.pack_into("<L", data, cd_offset + 16, zlib.crc32(b"something else"))
    with pytest.raises(BadModuleZip, match="checksum error"):
        check(bytes(data))


@pytest.mark.parametrize(
    "patch, problem",
    [
        (lambda d, cd: struct.pack_into("<H", d, cd + 10, 12), "unsupported compression method 12"),  # bzip2
        (lambda d, cd: struct.pack_into("<H", d, cd + 8, 1), "encrypted"),
        (lambda d, cd: struct.pack_into("<L", d, cd + 42, 10**6), "out of bounds"),  # local header offset
        (lambda d, cd: struct.pack_into("<L", d, len(d) - 22 + 12, MAX_CENTRAL_DIRECTORY + 1), "central directory too large"),
        (lambda d, cd: struct.pack_into("<L", d, len(d) - 22 + 16, 10**6), "out of bounds"),  # central directory offset
        (lambda d, cd: struct.pack_into("<4s", d, cd, b"JUNK"), "bad central directory header"),
    ],
)
def test_malformed_structure_is_refused(patch, problem):
    data = bytearray(make_zip({P + "a.go": b"package a\n" * 10}))
    cd_offset = struct.unpack_from("<L", data, len(data) - 22 + 16)[0]
    patch(data, cd_offset)
    with pytest.raises(BadModuleZip, match=problem):
        check(bytes(data))


@pytest.mark.parametrize("data", [b"", b"not a zip at all", make_zip({P + "a.go": b"x" * 100})[:-30]])
def test_not_a_zip_is_refused(data):
    with pytest.raises(BadModuleZip, match="not a valid zip file"):
        check(data)


def test_zip_over_500_mib_is_too_large_not_malformed():
    with pytest.raises(ZipTooLarge, match="too large"):
        check_and_hash(io.BytesIO(b""), (500 << 20) + 1, M, V, deadline=time.monotonic() + 10)


def test_deadline_stops_the_check():
    data = make_zip({P + "a.go": b"package a\n"})
    with pytest.raises(TimeoutError):
        check(data, deadline=time.monotonic() - 1)


def test_zip64_records_are_understood():
    # One stored entry whose sizes and offset live in the zip64 extra field, found through the
    # zip64 end record and locator, as a writer emits for very large archives.
    name, content = (P + "go.mod").encode(), b"module example.com/mod\n"
    crc = zlib.crc32(content)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, len(content), len(content), len(name), 0) + name + content
    extra = struct.pack("<2H3Q", 1, 24, len(content), len(content), 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(name), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + name + extra
    cd_offset, cd_size = len(local), len(central)
    end64_at = cd_offset + cd_size
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, cd_size, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end64_at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    data = local + central + end64 + locator + end
    assert check(data).h1 == h1({name: content})
