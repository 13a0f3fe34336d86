"""A format-2 store (byte-plane records of fp32, bf16 and fp16 chunks beside zstd and raw ones)
checked into tests/: every later version must still read it byte-exactly."""

import hashlib
import shutil
from pathlib import Path

from mlvc.ops.checkout import checkout
from mlvc.ops.status import UNCHANGED, status
from mlvc.repo import Repo
from mlvc.store.packs import CHUNK, PACK_MAGIC, PLANES, RAW, ZSTD, decode_index

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden_v2"


def test_golden_v2_store_restores_exact_bytes(tmp_path):
    work = tmp_path / "golden"
    shutil.copytree(GOLDEN, work)
    packs = sorted((work / ".mlvc" / "cache" / "packs").glob("*.pack"))
    assert packs and all(p.read_bytes()[:9] == PACK_MAGIC + b"\x02" for p in packs)
    codecs = {e.codec for idx in packs for e in decode_index(idx.with_suffix(".idx").read_bytes(), idx.name)
              if e.type == CHUNK}
    assert {PLANES, ZSTD} <= codecs <= {PLANES, ZSTD, RAW}
    repo = Repo.find(work)
    from mlvc.store.verify import verify

    assert verify(repo.store, read_data=True).ok
    result = checkout(repo)
    assert not result.failed and sorted(result.restored) == ["half.safetensors", "model.pt", "notes.txt"]
    for line in (work / "expected.sha256").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((work / name).read_bytes()).hexdigest() == digest, name
    assert all(s.state == UNCHANGED for s in status(Repo.find(work)))
