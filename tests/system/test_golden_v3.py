"""A format-3 store (XOR delta records of a run's checkpoints, a chain two deltas deep, beside
planes, zstd and raw records) checked into tests/: every later version must still read it
byte-exactly."""

import hashlib
import shutil
from pathlib import Path

from mlvc.codec import DELTA
from mlvc.ops.checkout import checkout
from mlvc.ops.status import UNCHANGED, status
from mlvc.repo import Repo
from mlvc.store.packs import CHUNK, PACK_MAGIC, PLANES, decode_index

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden_v3"


def test_golden_v3_store_restores_exact_bytes(tmp_path):
    work = tmp_path / "golden"
    shutil.copytree(GOLDEN, work)
    packs = sorted((work / ".mlvc" / "cache" / "packs").glob("*.pack"))
    assert packs and all(p.read_bytes()[:9] == PACK_MAGIC + b"\x03" for p in packs)
    codecs = {e.codec for idx in packs for e in decode_index(idx.with_suffix(".idx").read_bytes(), idx.name)
              if e.type == CHUNK}
    assert {DELTA, PLANES} <= codecs
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
