import pytest

from mlvc.errors import PointerError, UnsafePathError
from mlvc.pointer import PointerFile

GOOD = """\
mlvc: 1
path: model.pt
kind: file
id: xxh128:0123456789abcdef0123456789abcdef
size: 10
files: 1
hash: xxh3-128
chunker: {algo: fastcdc2020, min: 16384, avg: 65536, max: 262144}
role: model
meta: {lr: 0.001}
"""


def test_roundtrip():
    p = PointerFile.parse(GOOD, "x.mlvc")
    assert p.role == "model" and p.meta == {"lr": 0.001}
    assert PointerFile.parse(p.to_yaml(), "x.mlvc") == p


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("kind: file", "kind: [file"), "not valid YAML"),
    (lambda s: s.replace("mlvc: 1", "mlvc: 99"), "unsupported format version 99"),
    (lambda s: s.replace("id: xxh128:0123", "id: md5:0123"), "id must look like"),
    (lambda s: s.replace("kind: file", "kind: socket"), "kind must be"),
    (lambda s: s.replace("size: 10", "size: -1"), "non-negative"),
    (lambda s: s.replace("role: model", "role: boss"), "role must be"),
    (lambda s: "just a string", "expected a YAML mapping"),
])
def test_hand_edited_pointers_are_refused_clearly(edit, message):
    with pytest.raises(PointerError) as exc:
        PointerFile.parse(edit(GOOD), "x.mlvc")
    assert message in str(exc.value) and "x.mlvc" in str(exc.value)


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../b"])
def test_escaping_paths_are_refused(path):
    with pytest.raises(UnsafePathError):
        PointerFile.parse(GOOD.replace("path: model.pt", f"path: {path}"), "x.mlvc")


# ------------------------------------------------------------- merge conflict markers

OTHER_ID = "xxh128:fedcba9876543210fedcba9876543210"


def conflicted(style: str) -> str:
    head, _, tail = GOOD.partition("id: xxh128:0123456789abcdef0123456789abcdef\nsize: 10\n")
    base = "||||||| base\nid: xxh128:00000000000000000000000000000000\nsize: 1\n" if style == "diff3" else ""
    return (head + "<<<<<<< HEAD\nid: xxh128:0123456789abcdef0123456789abcdef\nsize: 10\n" + base
            + f"=======\nid: {OTHER_ID}\nsize: 12\n>>>>>>> feature/more-data\n" + tail)


@pytest.mark.parametrize("style", ["merge", "diff3"])
def test_conflict_markers_name_both_sides_and_how_to_resolve(style):
    from mlvc.errors import EXIT_BAD_POINTER, PointerConflictError

    with pytest.raises(PointerConflictError) as exc:
        PointerFile.parse(conflicted(style), "data/x.mlvc at HEAD", "data/x.mlvc")
    err = exc.value
    assert err.exit_code == EXIT_BAD_POINTER and isinstance(err, PointerError)
    assert (err.ours, err.theirs) == ("xxh128:0123456789abcdef0123456789abcdef", OTHER_ID)
    assert (err.ours_label, err.theirs_label) == ("HEAD", "feature/more-data")
    assert str(err) == ("invalid pointer file data/x.mlvc at HEAD: unresolved git merge conflict: ours (HEAD) "
                        f"xxh128:0123456789abcdef0123456789abcdef, theirs (feature/more-data) {OTHER_ID}")
    assert err.hint == ("keep one side: `git checkout --ours data/x.mlvc` or `git checkout --theirs data/x.mlvc`, "
                        "then `git add data/x.mlvc` and `mlvc checkout data/x`; a directory merges file by "
                        "file with `mlvc merge data/x.mlvc`")


def test_a_broken_conflict_still_names_what_it_can():
    from mlvc.errors import PointerConflictError

    text = GOOD.replace("size: 10\n", "size: 10\n<<<<<<< HEAD\n>>>>>>> x\n>>>>>>> y\n")
    with pytest.raises(PointerConflictError) as exc:
        PointerFile.parse(text, "x.mlvc")
    # stray markers stay in the side's text: its id is read from the id line, and nothing recurses
    assert exc.value.ours == exc.value.theirs == "xxh128:0123456789abcdef0123456789abcdef"
    assert exc.value.ours_label == "HEAD" and exc.value.theirs_label == ""
    with pytest.raises(PointerConflictError) as exc:
        PointerFile.parse("<<<<<<< HEAD\nmlvc: 1\n=======\n>>>>>>> b\n", "x.mlvc")
    assert "ours (HEAD) with no readable id, theirs (b) with no readable id" in str(exc.value)


def test_source_field_round_trips_and_old_pointers_have_none() -> None:
    from mlvc.pointer import PointerFile, PointerSource

    ptr = PointerFile("images", "dir", "xxh128:" + "ab" * 16, 10, 2,
                      source=PointerSource("git@host:org/registry.git", "datasets/images", "0" * 40, "v1"))
    again = PointerFile.parse(ptr.to_yaml(), "p")
    assert again.source == ptr.source and again == ptr
    digits = PointerSource("../registry", "m.bin", "1" * 40)  # an all-digit id stays a string
    assert PointerFile.parse(PointerFile("m.bin", "file", ptr.oid, 1, 1, source=digits).to_yaml(), "p").source == digits
    plain = PointerFile.parse(PointerFile("m.bin", "file", ptr.oid, 1, 1).to_yaml(), "p")
    assert plain.source is None and "source" not in PointerFile("m.bin", "file", ptr.oid, 1, 1).to_yaml()


@pytest.mark.parametrize("source, words", [
    ("[1, 2]", "mapping"),
    ("{url: '-uoops', path: a, commit: '%s'}" % ("a" * 40), "url"),
    ("{url: r, path: ../../etc, commit: '%s'}" % ("a" * 40), "source path"),
    ("{url: r, path: a, commit: HEAD}", "commit"),
    ("{url: r, path: a, commit: '%s', rev: '--upload-pack=x'}" % ("a" * 40), "rev"),
])
def test_hostile_source_fields_are_refused(source: str, words: str) -> None:
    from mlvc.errors import PointerError
    from mlvc.pointer import PointerFile

    text = f"mlvc: 1\npath: a\nkind: file\nid: xxh128:{'ab' * 16}\nsize: 1\nsource: {source}\n"
    with pytest.raises(PointerError, match=words):
        PointerFile.parse(text, "p")
