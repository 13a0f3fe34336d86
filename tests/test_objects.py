import pytest

from mlvc.chunking import ChunkerParams
from mlvc.errors import CorruptObjectError, UnsafePathError
from mlvc.hashing import digest
from mlvc.objects import FileManifest, TreeEntry, TreeManifest, validate_relpath


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "./a", "", "a\0b",
                                 "C:/windows"])
def test_unsafe_paths_are_refused(bad):
    with pytest.raises(UnsafePathError):
        validate_relpath(bad)


@pytest.mark.parametrize("good", ["a", "a/b/c.txt", "..hidden", "x..y/z", "sp ace/ü.bin"])
def test_safe_paths_pass(good):
    assert validate_relpath(good) == good


def test_file_manifest_roundtrip_and_checksum():
    m = FileManifest(digest(b"ab"), 2, ChunkerParams(), ((digest(b"a"), 1), (digest(b"b"), 1)))
    data = m.encode()
    assert FileManifest.decode(data, digest(b"ab")) == m
    broken = bytearray(data)
    broken[30] ^= 1
    with pytest.raises(CorruptObjectError):
        FileManifest.decode(bytes(broken))


def test_tree_id_is_independent_of_order_and_detects_tampering():
    e1 = TreeEntry("b.txt", 1, digest(b"b"))
    e2 = TreeEntry("a/x.bin", 2, digest(b"xx"), True)
    t1, t2 = TreeManifest.build([e1, e2]), TreeManifest.build([e2, e1])
    assert t1.oid() == t2.oid()
    assert TreeManifest.decode(t1.encode(), t1.oid()) == t1
    evil = t1.encode().replace(b"a/x.bin", b"../x.bin")
    with pytest.raises(UnsafePathError):
        TreeManifest.decode(evil)
    with pytest.raises(CorruptObjectError):
        TreeManifest.decode(evil, t1.oid())
