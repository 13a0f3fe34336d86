import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlvc.chunking import ChunkerParams
from mlvc.errors import CorruptObjectError, UnsafePathError
from mlvc.hashing import digest
from mlvc.objects import FileManifest, TreeEntries, TreeEntry, TreeManifest, validate_relpath


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


_segment = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
                   min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


def _safe_entries(files) -> list[TreeEntry]:
    """Tree entries of drawn (path parts, size, executable); examples with a path `validate_relpath`
    refuses (a leading backslash, "C:...") are discarded: they have their own tests."""
    entries = [TreeEntry("/".join(parts), size, digest(f"{parts}".encode()), x) for parts, size, x in files]
    for e in entries:
        try:
            validate_relpath(e.path)
        except UnsafePathError:
            assume(False)
    return entries


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(_segment, min_size=1, max_size=3), st.integers(0, 2**40), st.booleans()),
                max_size=30, unique_by=lambda t: "/".join(t[0])))
def test_packed_trees_encode_like_json_dumps_and_round_trip(files) -> None:
    entries = _safe_entries(files)
    tree = TreeManifest.build(entries)
    doc = {"mlvc_tree": 1, "hash": "xxh3-128",
           "entries": [[e.path, e.size, e.file_id.hex(), int(e.executable)]
                       for e in sorted(entries, key=lambda e: e.path)]}
    canonical = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert tree.encode() == canonical  # the ids of every tree ever written stay the same
    back = TreeManifest.decode(canonical, digest(canonical))
    assert list(back.entries) == sorted(entries, key=lambda e: e.path) and back == tree
    # the same document written another way (spaces, unsorted) still reads, by the general parser
    loose = json.dumps({**doc, "entries": list(reversed(doc["entries"]))}, indent=1).encode()
    assert list(TreeManifest.decode(loose).entries) == list(tree.entries)


def test_a_tree_listing_a_path_twice_is_refused_on_either_parser() -> None:
    fid = digest(b"x")
    body = (b'{"mlvc_tree":1,"hash":"xxh3-128","entries":[["a",1,"' + fid.hex().encode() + b'",0],["a",1,"'
            + fid.hex().encode() + b'",0]]}')
    with pytest.raises(UnsafePathError):
        TreeManifest.decode(body)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(_segment, min_size=1, max_size=2), st.integers(0, 2**40), st.booleans()),
                max_size=25, unique_by=lambda t: "/".join(t[0])), st.integers(1, 4))
def test_trees_encoded_piece_by_piece_are_the_same_bytes_and_id(files, batch) -> None:
    """Pieces of a few entries (a million-file tree is written 8,192 entries at a time), escaped
    and plain paths mixed across piece boundaries: the bytes and the id are json.dumps's."""
    from mlvc import objects

    entries = _safe_entries(files)
    tree = TreeManifest.from_sorted(sorted(entries, key=lambda e: e.path))
    saved, objects.ENCODE_BATCH = objects.ENCODE_BATCH, batch
    try:
        encoded, oid = tree.encode(), tree.oid()
    finally:
        objects.ENCODE_BATCH = saved
    doc = {"mlvc_tree": 1, "hash": "xxh3-128",
           "entries": [[e.path, e.size, e.file_id.hex(), int(e.executable)]
                       for e in sorted(entries, key=lambda e: e.path)]}
    canonical = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert encoded == canonical
    assert oid == digest(canonical)
    assert tree == TreeManifest.build(entries)


def test_from_sorted_refuses_duplicates_and_disorder() -> None:
    fid = digest(b"x")
    with pytest.raises(UnsafePathError):
        TreeManifest.from_sorted([TreeEntry("a", 1, fid), TreeEntry("a", 1, fid)])
    with pytest.raises(ValueError):
        TreeManifest.from_sorted([TreeEntry("b", 1, fid), TreeEntry("a", 1, fid)])
    with pytest.raises(UnsafePathError):
        TreeManifest.from_sorted([TreeEntry("../a", 1, fid)])


def test_a_drive_like_name_is_a_plain_name_inside_a_directory() -> None:
    # found by the round-trip property test: a file named "A:" inside a directory artifact is
    # joined below that directory on every system; only a top-level "A:..." names a drive
    assert validate_relpath("A:", below_dir=True) == "A:"
    assert validate_relpath("C:/windows/x", below_dir=True) == "C:/windows/x"
    with pytest.raises(UnsafePathError):
        validate_relpath("A:")
    with pytest.raises(UnsafePathError):
        validate_relpath("\\\\server\\share", below_dir=True)
    tree = TreeManifest.build([TreeEntry("A:", 1, digest(b"x"))])
    assert list(TreeManifest.decode(tree.encode(), digest(tree.encode())).entries)[0].path == "A:"


def test_a_tree_over_columns_shares_them_and_encodes_like_one_built_from_entries() -> None:
    from array import array

    names = ["a/b.bin", "a/c d.bin", "b\\x.bin", "z/\u00fc.bin"]
    paths, ends = bytearray(), array("Q")
    for n in names:
        paths += n.encode()
        ends.append(len(paths))
    sizes, executable = array("Q", [1, 2, 3, 4]), bytearray([0, 1, 0, 0])
    ids = b"".join(digest(n.encode()) for n in names)
    tree = TreeManifest.from_columns(paths, ends, sizes, ids, executable)
    built = TreeManifest.build([TreeEntry(n, i + 1, digest(n.encode()), i == 1) for i, n in enumerate(names)])
    assert tree.encode() == built.encode() == b"".join(tree.pieces())
    backwards = bytearray(b"ba")
    with pytest.raises(ValueError, match="out of order"):
        TreeManifest.from_columns(backwards, array("Q", [1, 2]), sizes[:2], ids[:32], executable[:2])
    dup = bytearray(b"aa")
    with pytest.raises(UnsafePathError):
        TreeManifest.from_columns(dup, array("Q", [1, 2]), sizes[:2], ids[:32], executable[:2])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(_segment, min_size=1, max_size=2), st.integers(0, 2**40), st.booleans()),
                max_size=25, unique_by=lambda t: "/".join(t[0])), st.integers(1, 60), st.integers(1, 5))
def test_a_tree_parsed_as_its_pieces_arrive_is_the_tree_decoded_whole(files, piece, batch) -> None:
    """Pieces cut anywhere (inside a path, an escape, a number, the head or the tail): the same
    entries as decoding the whole document, in batches of about `batch`."""
    from mlvc.objects import iter_tree_batches

    entries = _safe_entries(files)
    data = TreeManifest.build(entries).encode()
    pieces = [data[i:i + piece] for i in range(0, len(data), piece)]
    whole = TreeManifest.decode(data, digest(data))
    batches = list(iter_tree_batches(iter(pieces), "t", batch))
    assert [e for b in batches for e in b] == list(whole.entries)
    assert all(len(b) >= batch for b in batches[:-1])
    assert TreeManifest.from_pieces(iter(pieces), "t") == whole


@pytest.mark.parametrize("damage", [
    lambda d: d + b" ",  # something after the tail
    lambda d: d[:-1],  # no tail
    lambda d: d.replace(b"]]}", b"],]}"),  # a trailing comma
    lambda d: d.replace(b'"a/1"', b'"b/9"'),  # out of order
    lambda d: d.replace(b'["a/2"', b'[ "a/2"'),  # not the canonical spacing
    lambda d: d.replace(b'{"mlvc_tree":1', b'{"mlvc_tree":2'),
])
def test_a_tree_not_in_the_canonical_encoding_is_left_to_the_whole_document_parser(damage) -> None:
    from mlvc.objects import NotCanonical, iter_tree_batches

    data = TreeManifest.build([TreeEntry(f"a/{i}", i, digest(b"%d" % i)) for i in range(1, 4)]).encode()
    bad = damage(data)
    assert bad != data
    for piece in (1, 7, len(bad)):
        with pytest.raises(NotCanonical):
            list(iter_tree_batches((bad[i:i + piece] for i in range(0, len(bad), piece)), "t", 2))


def test_a_streamed_tree_refuses_an_unsafe_path() -> None:
    from mlvc.objects import iter_tree_batches

    data = TreeManifest.build([TreeEntry("a/x.bin", 1, digest(b"x"))]).encode().replace(b"a/x.bin", b"../x.bin")
    with pytest.raises(UnsafePathError):
        list(iter_tree_batches(iter([data[:20], data[20:]]), "t", 8))


@settings(max_examples=200, deadline=None)
@given(st.sets(st.text("ab/-.", min_size=1, max_size=5)), st.text("ab/-.", min_size=1, max_size=5))
def test_a_path_found_by_bisection_is_the_one_a_dict_of_the_entries_finds(paths, probe) -> None:
    entries = [TreeEntry(p, i, digest(p.encode())) for i, p in enumerate(sorted(paths))]
    packed = TreeEntries.pack(entries)  # unchecked: the strategy makes unsafe paths too ('/', 'a//b')
    by_path = {e.path: e for e in entries}
    for path in [*paths, probe]:
        assert packed.find(path) == by_path.get(path)
        assert packed.has_below(path) == any(p.startswith(path + "/") for p in by_path)
