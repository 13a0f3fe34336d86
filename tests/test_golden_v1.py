"""A format-1 store checked into tests/: every later version must still read it byte-exactly."""

import hashlib
import shutil
from pathlib import Path

from mlvc.ops.checkout import checkout
from mlvc.ops.status import UNCHANGED, status
from mlvc.pointer import load
from mlvc.repo import Repo

GOLDEN = Path(__file__).parent / "fixtures" / "golden_v1"


def test_golden_store_restores_exact_bytes(tmp_path):
    work = tmp_path / "golden"
    shutil.copytree(GOLDEN, work)
    repo = Repo.find(work)
    from mlvc.store.verify import verify

    assert verify(repo.store).ok
    result = checkout(repo)
    assert not result.failed and sorted(result.restored) == ["data", "model.bin"]
    for line in (work / "expected.sha256").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((work / name).read_bytes()).hexdigest() == digest, name
    assert load(work / "model.bin.mlvc").oid == "xxh128:4843260ec804cf7eb47f0c4196603aba"
    assert all(s.state == UNCHANGED for s in status(Repo.find(work)))
