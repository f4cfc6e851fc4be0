"""Soak: 200k vectors in random batches with interleaved removals and searches."""
import gc

import faiss
import numpy as np
import pytest

from tests.helpers.data import random_unit
from invgc_faiss import InvGCIndex


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_soak_ids_match_model_and_memory_tracks_data():
    rng = np.random.default_rng(7)
    d = 32
    index = InvGCIndex(faiss.IndexFlatIP(d), gallery_bank=random_unit(rng, 1000, d),
                       query_bank=random_unit(rng, 1000, d), pool_rate=0.01)
    index.add_with_ids(random_unit(rng, 10, d), np.arange(10))  # warm the kernels
    index.reset()
    gc.collect()
    start_rss = rss_bytes()
    live, next_id, added, steps = set(), 0, 0, 0
    queries = random_unit(rng, 8, d)
    while added < 200_000:
        n = int(rng.integers(1, 5000))
        index.add_with_ids(random_unit(rng, n, d), np.arange(next_id, next_id + n))
        live.update(range(next_id, next_id + n))
        next_id += n
        added += n
        if rng.random() < 0.3 and live:
            victims = rng.choice(np.fromiter(live, np.int64), size=min(len(live), 2000),
                                 replace=False)
            victims = np.concatenate([victims, [-5, next_id + 10]])  # unknown ids are ignored
            assert index.remove_ids(victims) == len(victims) - 2
            live.difference_update(victims.tolist())
        if steps % 5 == 0:
            _, I = index.search(queries, 10)
            assert set(I.ravel()) <= live
        assert index.ntotal == len(live)
        steps += 1
    assert set(index.stored_ids().tolist()) == live
    gc.collect()
    # bytes per live item: vector, id, rev_map entry (~64 B), degrees
    data_bytes = len(live) * (4 * d + 8 + 64 + 8)
    growth = rss_bytes() - start_rss
    assert growth <= data_bytes + 64 * 2**20, (growth, data_bytes)
