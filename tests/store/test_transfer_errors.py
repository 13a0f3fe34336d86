"""Errors keep their types and fields through transfer (`TransferResult.failed` holds the errors
themselves), and the store names no command line in what it tells a user: the CLI words the
remedy (`mlvc.cli.error_table`)."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from mlvc.chunking import ChunkerParams
from mlvc.errors import EXIT_CORRUPT, EXIT_MISSING_OBJECT, CorruptObjectError, ObjectNotFoundError, Remedy
from mlvc.hashing import digest, to_oid
from mlvc.objects import FileManifest
from mlvc.store.memory import MemoryBackend
from mlvc.store.packs import CHUNK, FILE_MANIFEST
from mlvc.store.packstore import PackStore, Role
from mlvc.store.transfer import Artifact, transfer
from mlvc.store.types import Root

STORE = Path(__file__).resolve().parents[2] / "mlvc" / "store"
# a command line: `...`, an mlvc subcommand, an option
COMMAND = re.compile(r"`|\bmlvc (?:pull|push|fetch|verify|gc|remote|checkout|add|status|init)\b|(?:^| )--[a-z]")


def _file_without_its_chunk(store: PackStore) -> tuple[bytes, bytes]:
    """A file manifest whose one chunk the store lacks: (file id, chunk id)."""
    data = os.urandom(3000)
    chunk = digest(data)
    fid = digest(data + b"x")
    fm = FileManifest(fid, len(data), ChunkerParams(16384, 65536, 262144), ((chunk, len(data)),))
    store.put_object(FILE_MANIFEST, fid, fm.encode())
    store.commit()
    return fid, chunk


def test_a_failure_keeps_its_type_fields_and_code(tmp_path):
    src = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "src", fsync=False)
    dst = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "dst", fsync=False, name="remote d")
    fid, chunk = _file_without_its_chunk(src)
    whole = os.urandom(2000)
    src.put_chunk(whole)
    src.commit()
    out = transfer(src, dst, [Artifact("a.bin", Root("file", to_oid(fid), 3000)),
                              Artifact("b.bin", Root("file", to_oid(fid), 3000)),
                              Artifact("gone", Root("dir", "xxh128:" + "1" * 32))])
    assert sorted(out.failed) == ["a.bin", "b.bin", "gone"]
    err = out.failed["a.bin"]
    assert isinstance(err, ObjectNotFoundError) and err.oid.startswith(to_oid(chunk))
    assert err.where == src.name and err.remedy is Remedy.PUSH_FROM_ELSEWHERE
    assert "needed by a.bin, b.bin" in str(err) and err.hint == "remote d does not have it either"
    assert out.failed_codes == {"a.bin": EXIT_MISSING_OBJECT, "b.bin": EXIT_MISSING_OBJECT,
                                "gone": EXIT_MISSING_OBJECT}
    assert isinstance(out.failed["gone"], ObjectNotFoundError)
    plain = out.as_dict()
    assert plain["failed"]["a.bin"] == f"{err} (remote d does not have it either)"
    assert plain["failed_codes"]["gone"] == EXIT_MISSING_OBJECT and plain["done"] == []


def test_a_damaged_record_fails_as_corrupt_with_its_id(tmp_path):
    backend = MemoryBackend()
    src = PackStore(backend, role=Role.REMOTE, scratch=tmp_path / "src", fsync=False)
    data = os.urandom(5000)
    oid, _ = src.put_chunk(data)
    src.commit()
    pack = next(k for k in backend.list("packs/") if k.endswith(".pack"))
    body = bytearray(backend.get_bytes(pack))
    body[-10] ^= 0xFF
    backend.delete(pack)
    backend.put_bytes(pack, bytes(body))
    fid = digest(data + b"y")
    fm = FileManifest(fid, len(data), ChunkerParams(16384, 65536, 262144), ((oid, len(data)),))
    src = PackStore(backend, role=Role.REMOTE, scratch=tmp_path / "src2", fsync=False)
    src.put_object(FILE_MANIFEST, fid, fm.encode())
    src.commit()
    dst = PackStore(MemoryBackend(), role=Role.REMOTE, scratch=tmp_path / "dst", fsync=False)
    out = transfer(src, dst, [Artifact("f", Root("file", to_oid(fid), len(data)))])
    err = out.failed["f"]
    assert isinstance(err, CorruptObjectError) and err.oid == to_oid(oid) and err.exit_code == EXIT_CORRUPT
    assert not dst.has(CHUNK, oid)


def _hint_texts(tree: ast.AST):
    """The literal text of every `hint=` argument (f-strings: their literal parts)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "hint":
                    for part in ast.walk(kw.value):
                        if isinstance(part, ast.Constant) and isinstance(part.value, str):
                            yield node.lineno, part.value


def test_the_store_names_no_command_line_in_its_hints():
    found = [f"{path.name}:{line}: {text!r}" for path in sorted(STORE.glob("*.py"))
             for line, text in _hint_texts(ast.parse(path.read_text()))
             if COMMAND.search(text)]
    assert not found, found
