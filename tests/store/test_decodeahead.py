"""The decode-ahead of a restore (`mlvc/store/decodeahead.py`): byte planes decoded into
recycled buffers, never into one that a chunk still handed out lies in."""

from __future__ import annotations

import resource

from helpers import open_cache

from mlvc import codec
from mlvc.hashing import hasher


def _planes_store(path, n: int, seed: int):
    """A cache holding `n` chunks of 64 KiB fp32 values, stored as byte planes: (refs, blobs)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    store = open_cache(path, fsync=False)
    enc = codec.ChunkEncoder(3)
    refs, blobs = [], []
    for _ in range(n):
        blob = (rng.standard_normal(1 << 14) * 0.02).astype(np.float32).tobytes()
        refs.append((store.put_chunk(blob, None, enc, 4)[0], len(blob)))
        blobs.append(blob)
    store.commit()
    store.close()
    return refs, blobs


def test_chunks_held_by_the_reader_keep_their_bytes_while_later_ones_are_decoded(tmp_path):
    """A reader that keeps every chunk (as a caller that joins them does) gets each one's bytes,
    however many batches are decoded after it: no buffer is reused while a chunk lies in it;
    one that drops each chunk at once gets the same bytes."""
    refs, blobs = _planes_store(tmp_path / "c", 300, 5)
    store = open_cache(tmp_path / "c")
    kept = list(store.iter_chunks(refs + refs[:40], check_ids=False))
    assert [bytes(d) for d in kept] == blobs + blobs[:40]
    assert [bytes(d) for d in store.iter_chunks(refs, check_ids=True)] == blobs
    store.close()


def test_a_restore_of_byte_planes_does_not_fault_in_fresh_memory_for_every_chunk(tmp_path):
    """Decoded chunks go to the file and are dropped; the next batches decode into the same
    buffers.  A fresh array per chunk was freed and given back to the kernel after each batch,
    and faulted in again page by page: ~10 page faults per 64 KiB chunk, ~40% of the decode's
    CPU.  Now a restore faults in its few buffers once (and the pack's pages)."""
    n = 1200  # 75 MiB
    refs, _blobs = _planes_store(tmp_path / "c", n, 6)
    store = open_cache(tmp_path / "c")
    h = hasher()
    for d in store.iter_chunks(refs[:50], check_ids=False):  # the decode threads started
        h.update(d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for d in store.iter_chunks(refs, check_ids=False):
        h.update(d)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    store.close()
    assert faults < 4 * n, faults  # before: 5.4-6.4 a chunk; now ~2.2 (the pack's pages, the buffers)
