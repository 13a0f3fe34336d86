"""A format-4 store (a run's checkpoints as XOR deltas whose mostly-zero top planes are SPARSE,
a chain two deltas deep, beside planes, zstd and raw records) checked into tests/: every later
version must still read it byte-exactly."""

import hashlib
import shutil
from pathlib import Path

from mlvc.codec import DELTA, PLANES, SPARSE
from mlvc.ops.checkout import checkout
from mlvc.ops.status import UNCHANGED, status
from mlvc.repo import Repo
from mlvc.store.packs import CHUNK, PACK_MAGIC, decode_index

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden_v4"


def _plane_codecs(pack: bytes, entry) -> tuple[int, ...]:
    """The plane codecs of a chunk record stored as planes, or inside a delta as planes."""
    payload = pack[entry.offset:entry.offset + entry.stored]
    if entry.codec == DELTA:
        if payload[16] != PLANES:
            return ()
        payload = payload[17:]
    elif entry.codec != PLANES:
        return ()
    return tuple(payload[2 + 5 * j] for j in range(payload[0]))


def test_golden_v4_store_restores_exact_bytes(tmp_path):
    work = tmp_path / "golden"
    shutil.copytree(GOLDEN, work)
    packs = sorted((work / ".mlvc" / "cache" / "packs").glob("*.pack"))
    assert packs and all(p.read_bytes()[:9] == PACK_MAGIC + b"\x04" for p in packs)
    entries = [(p.read_bytes(), e) for p in packs for e in decode_index(p.with_suffix(".idx").read_bytes(), p.name)
               if e.type == CHUNK]
    assert {DELTA, PLANES} <= {e.codec for _p, e in entries}
    assert any(SPARSE in _plane_codecs(pack, e) for pack, e in entries if e.codec == DELTA)
    repo = Repo.find(work)
    store = repo.store
    assert max(store.delta_depth(oid) or 0 for oid in store.iter_ids(CHUNK)) == 2
    from mlvc.store.verify import verify

    assert verify(store, read_data=True).ok
    result = checkout(repo)
    assert not result.failed and sorted(result.restored) == ["run"]
    for line in (work / "expected.sha256").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((work / name).read_bytes()).hexdigest() == digest, name
    assert all(s.state == UNCHANGED for s in status(Repo.find(work)))
