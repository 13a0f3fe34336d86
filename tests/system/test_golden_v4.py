"""A format-4 store (a run's checkpoints as XOR deltas whose mostly-zero top planes are SPARSE,
a chain two deltas deep, beside planes, zstd and raw records) checked into tests/: every later
version must still read it byte-exactly."""

from helpers import assert_restores_exactly, chunk_entries, golden

from mlvc.codec import DELTA, PLANES, SPARSE
from mlvc.repo import Repo
from mlvc.store.packs import CHUNK


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
    work, packs = golden("golden_v4", tmp_path, pack_format=4)
    body = {p.name: p.read_bytes() for p in packs}
    entries = [(body[p.name], e) for p in packs for e in chunk_entries([p])]
    assert {DELTA, PLANES} <= {e.codec for _p, e in entries}
    assert any(SPARSE in _plane_codecs(pack, e) for pack, e in entries if e.codec == DELTA)
    store = Repo.find(work).store
    assert max(store.delta_depth(oid) or 0 for oid in store.iter_ids(CHUNK)) == 2
    assert_restores_exactly(work, ["run"])
