"""Many threads searching while one thread adds and removes: no crash, consistent snapshots."""
import threading
import time

import faiss
import numpy as np

from tests.helpers.data import random_unit
from invgc_faiss import InvGCIndex, InvGCRerankIndex

BATCH = 50


def run_concurrently(index, xb, n_batches, n_searchers=4):
    """One writer adds ``n_batches`` batches of ids ``1000 b + 0..BATCH-1`` and removes batch
    ``b - 1`` after every batch ``b = 2, 5, 8, ...``; searchers check every result against the
    writer's timeline: an id seen by a search was being added before the search ended, and was
    not yet removed when the search started. Returns the number of searches checked."""
    d = xb.shape[1]
    queries = random_unit(np.random.default_rng(1), 16, d)
    clock = time.perf_counter
    added_at, removed_at = {}, {}
    errors, results = [], []
    done = threading.Event()

    def writer():
        try:
            for b in range(n_batches):
                added_at[b] = clock()
                index.add_with_ids(xb[b * BATCH:(b + 1) * BATCH], np.arange(BATCH) + 1000 * b)
                if b % 3 == 2:
                    index.remove_ids(np.arange(BATCH) + 1000 * (b - 1))
                    removed_at[b - 1] = clock()
        except Exception as exc:
            errors.append(exc)
        finally:
            done.set()

    def searcher():
        try:
            while not done.is_set():
                start = clock()
                _, I = index.search(queries, 2 * BATCH)
                results.append((start, clock(), I))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=searcher)
                                                   for _ in range(n_searchers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    for start, end, I in results:
        for row in I:
            seen = row[row >= 0]
            assert len(np.unique(seen)) == len(seen)
            assert (row[len(seen):] == -1).all()  # padding only at the end
            for batch in np.unique(seen // 1000):
                assert seen[seen // 1000 == batch].max() % 1000 < BATCH
                assert added_at[batch] <= end
                assert removed_at.get(batch, np.inf) >= start
    return len(results)


def test_searches_during_adds_and_removes(rng):
    d, n_batches = 32, 60
    xb = random_unit(rng, n_batches * BATCH, d)
    banks = {"gallery_bank": random_unit(rng, 300, d), "query_bank": random_unit(rng, 300, d),
             "rho_q": 1.0}  # rates given: applied on these isotropic banks
    index = InvGCIndex(faiss.IndexFlatIP(d), **banks)
    searches = run_concurrently(index, xb, n_batches)
    assert searches > 0
    expected = [b for b in range(n_batches) if not (b % 3 == 1 and b + 1 < n_batches)]
    assert index.ntotal == BATCH * len(expected)
    np.testing.assert_array_equal(
        np.sort(index.stored_ids()),
        np.sort(np.concatenate([np.arange(BATCH) + 1000 * b for b in expected])))
    # final state equals a single-threaded build of the surviving batches
    twin = InvGCIndex(faiss.IndexFlatIP(d), **banks)
    for b in expected:
        twin.add_with_ids(xb[b * BATCH:(b + 1) * BATCH], np.arange(BATCH) + 1000 * b)
    q = random_unit(rng, 10, d)
    np.testing.assert_array_equal(index.search(q, 10)[1], twin.search(q, 10)[1])


def test_rerank_searches_during_adds(rng):
    d, n_batches = 32, 30
    xb = random_unit(rng, n_batches * BATCH, d)
    index = InvGCRerankIndex(faiss.IndexFlatIP(d), gallery_bank=random_unit(rng, 300, d),
                             query_bank=random_unit(rng, 300, d), k_factor=2, rho_q=1.0)
    assert run_concurrently(index, xb, n_batches) > 0
