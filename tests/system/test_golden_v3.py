"""A format-3 store (XOR delta records of a run's checkpoints, a chain two deltas deep, beside
planes, zstd and raw records) checked into tests/: every later version must still read it
byte-exactly."""

from helpers import assert_restores_exactly, chunk_entries, golden

from mlvc.codec import DELTA
from mlvc.repo import Repo
from mlvc.store.packs import CHUNK, PLANES


def test_golden_v3_store_restores_exact_bytes(tmp_path):
    work, packs = golden("golden_v3", tmp_path, pack_format=3)
    assert {DELTA, PLANES} <= {e.codec for e in chunk_entries(packs)}
    store = Repo.find(work).store
    assert max(store.delta_depth(oid) or 0 for oid in store.iter_ids(CHUNK)) == 2
    assert_restores_exactly(work, ["run"])
