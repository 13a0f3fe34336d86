"""`FileBases`: chunks' plaintexts read back from local files, each checked against its id."""

from __future__ import annotations

import os
import threading

from mlvc.hashing import digest
from mlvc.store.filebases import FileBases


def _file(tmp_path, name: str, parts: list[bytes]) -> tuple[str, list[tuple[bytes, int]]]:
    path = tmp_path / name
    path.write_bytes(b"".join(parts))
    return str(path), [(digest(p), len(p)) for p in parts]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_reads_a_chunk_only_when_its_bytes_hash_to_its_id(tmp_path):
    parts = [os.urandom(1000), os.urandom(3000), os.urandom(10)]
    path, chunks = _file(tmp_path, "a.bin", parts)
    with FileBases() as bases:
        bases.add_path(path, chunks)
        assert [bases.read(oid) for oid, _n in chunks] == parts
        assert bases.read(digest(b"elsewhere")) is None
        with open(path, "r+b") as f:  # changed since: never trusted
            f.seek(1500)
            f.write(b"\0")
        assert bases.read(chunks[1][0]) is None
        assert bases.read(chunks[0][0]) == parts[0]
        os.truncate(path, 1200)  # shorter than the chunk list says
        assert bases.read(chunks[1][0]) is None and bases.read(chunks[2][0]) is None
        assert bases.hits == 4


def test_keeps_at_most_max_files_and_closes_what_it_drops(tmp_path):
    before = _open_fds()
    files = [_file(tmp_path, f"f{i}", [os.urandom(100), bytes([i]) * 50]) for i in range(5)]
    bases = FileBases(max_files=2)
    for path, chunks in files:
        fd = os.open(path, os.O_RDONLY)
        bases.add_fd(fd, chunks)
        os.close(fd)  # the caller's own: FileBases keeps a duplicate
    assert _open_fds() == before + 2
    assert [bases.read(files[i][1][0][0]) is not None for i in range(5)] == [False, False, False, True, True]
    bases.close()
    assert _open_fds() == before
    assert bases.read(files[4][1][0][0]) is None


def test_a_file_that_cannot_be_opened_is_no_source(tmp_path):
    with FileBases() as bases:
        bases.add_path(tmp_path / "missing", [(digest(b"x"), 1)])
        assert bases.read(digest(b"x")) is None


def test_reads_from_many_threads_while_files_come_and_go(tmp_path):
    files = [_file(tmp_path, f"f{i}", [os.urandom(4096) for _ in range(4)]) for i in range(12)]
    bases = FileBases(max_files=3)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                for _path, chunks in files:
                    for oid, n in chunks:
                        got = bases.read(oid)
                        assert got is None or (len(got) == n and digest(got) == oid)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(20):
        for path, chunks in files:
            bases.add_path(path, chunks)
    for t in threads:
        t.join()
    bases.close()
    assert not errors


def test_a_base_derived_from_a_delta_and_the_file_that_holds_its_chunk(tmp_path):
    """v2's chunk C (in a file) stored as a delta on v1's B: B = C decoded with C's record,
    checked against B's id; a wrong record, or a record naming another base, gives nothing."""
    from mlvc import codec

    b = os.urandom(4096)
    c = bytes(x ^ (1 if i % 7 == 0 else 0) for i, x in enumerate(b))
    path, chunks = _file(tmp_path, "v2.bin", [c])
    record = codec.encode_delta(c, b, digest(b), codec.ChunkEncoder(3))
    stored = {digest(c): record}
    with FileBases() as bases:
        bases.add_path(path, chunks)
        bases.add_derived([digest(c)], lambda ids: {digest(c): digest(b)} if ids == [digest(c)] else {}, stored.get)
        assert bases.read(digest(b)) == b
        stored[digest(c)] = record[:16] + bytes([codec.RAW]) + bytes(len(b))  # decodes to C itself
        assert bases.read(digest(b)) is None
        stored[digest(c)] = digest(b"other") + record[16:]
        assert bases.read(digest(b)) is None
        stored[digest(c)] = None
        assert bases.read(digest(b)) is None
        assert bases.hits == 1
