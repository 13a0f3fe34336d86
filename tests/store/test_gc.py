"""`mlvc.store.gc`: what a gc keeps when a chunk has two records, one of them a delta (a repack
killed after it published the new form and before it removed the old one): the base a record
that stays names stays too, whichever record the store reads."""

from __future__ import annotations

import os

import numpy as np
from helpers import open_cache

from mlvc import codec
from mlvc.hashing import digest
from mlvc.store.gc import GcResult, gc
from mlvc.store.packs import CHUNK
from mlvc.store.verify import verify


def test_the_base_of_a_second_copy_stored_as_a_delta_stays(tmp_path):
    """X raw (in a pack that sorts first: the copy the store reads) and X as a delta on B (the
    killed repack's new pack); B is in no kept version.  The gc kept the raw X and dropped B,
    leaving the delta X on nothing: a later gc that drops the raw copy as a second one (or a
    store that reads the other copy first) loses X."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(16384) * 0.02).astype(np.float32)
    b_bytes = w.tobytes()
    x_bytes = (w + rng.standard_normal(16384).astype(np.float32) * np.float32(2e-5)).astype(np.float32).tobytes()
    b, x = digest(b_bytes), digest(x_bytes)
    for attempt in range(64):  # the raw copy's pack must sort before the delta's (it is read first)
        cache = tmp_path / f"cache-{attempt}"
        with open_cache(cache) as store:
            store.put_stored(CHUNK, b, codec.RAW, b_bytes, len(b_bytes))
            store.commit()
            store.put_stored(CHUNK, x, codec.RAW, x_bytes, len(x_bytes))
            store.put_chunk(os.urandom(3000))  # garbage beside the raw X: that pack is rewritten
            store.commit()
            raw_pack = store.location(CHUNK, x).pack
            delta = codec.encode_delta(x_bytes, b_bytes, b, codec.ChunkEncoder(), 4, 0)
            store.put_stored(CHUNK, x, codec.DELTA, delta, len(x_bytes), force=True)
            store.commit()
        with open_cache(cache) as store:
            if store.location(CHUNK, x).pack == raw_pack:
                break
    with open_cache(cache) as store:
        gc(store, lambda: {(CHUNK, x)}, GcResult("workspace", None, False), grace_s=0)
    report = verify(open_cache(cache), read_data=True)
    assert report.ok, [p.message for p in report.problems]
    with open_cache(cache) as store:
        assert store.get(CHUNK, x) == x_bytes
