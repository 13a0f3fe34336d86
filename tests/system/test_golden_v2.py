"""A format-2 store (byte-plane records of fp32, bf16 and fp16 chunks beside zstd and raw ones)
checked into tests/: every later version must still read it byte-exactly."""

from helpers import assert_restores_exactly, chunk_entries, golden

from mlvc.store.packs import PLANES, RAW, ZSTD


def test_golden_v2_store_restores_exact_bytes(tmp_path):
    work, packs = golden("golden_v2", tmp_path, pack_format=2)
    assert {PLANES, ZSTD} <= {e.codec for e in chunk_entries(packs)} <= {PLANES, ZSTD, RAW}
    assert_restores_exactly(work, ["half.safetensors", "model.pt", "notes.txt"])
