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
