"""Property-based fuzzing of the public API (hypothesis).

Invariant after every step: either a clear ValueError/TypeError left the index unchanged, or the
call succeeded and the index matches a plain Python model (ids, ntotal) and the stored vectors
match the dense float64 reference of docs/science.md. Fast by default; ``--hypothesis-profile=thorough``
runs >= 10,000 examples.
"""
import faiss
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.helpers import dense_reference as ref
from tests.helpers.data import random_unit
from invgc_faiss import InvGCIndex

D = 8
_RNG = np.random.default_rng(99)
BANK_G, BANK_Q = random_unit(_RNG, 40, D), random_unit(_RNG, 30, D)
PARAMS = {"gallery_bank": BANK_G, "query_bank": BANK_Q, "r_g": 0.6, "r_q": 1.2, "pool_rate": 0.1}


def vectors(seed, n):
    return random_unit(np.random.default_rng(seed), n, D)


def snapshot(index):
    return (index.ntotal, index.stored_ids().tolist(), index.index.reconstruct_n(0, index.ntotal),
            index.sequential_ids)


def assert_same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3]
    np.testing.assert_array_equal(a[2], b[2])


BAD_BATCHES = {
    "nan": lambda x: np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x),
    "inf": lambda x: np.where(np.arange(x.size).reshape(x.shape) == 1, np.inf, x),
    "dim": lambda x: x[:, :-1],
    "1d": lambda x: x[0],
    "3d": lambda x: x[None],
    "complex": lambda x: x.astype(complex),
    "object": lambda x: x.astype(object),
    "strings": lambda x: x.astype(str),
    "non_unit": lambda x: 3 * x,
}


class IndexMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.index = InvGCIndex(faiss.IndexFlatIP(D), **PARAMS)
        self.model = {}  # id -> original vector, in internal order
        self.mode = None  # "sequential", "user" or None (empty)

    def expect_error(self, call, errors=(ValueError, TypeError)):
        before = snapshot(self.index)
        with pytest.raises(errors):
            call()
        assert_same(snapshot(self.index), before)

    @rule(seed=st.integers(0, 2**16), n=st.integers(0, 30))
    def add(self, seed, n):
        x = vectors(seed, n)
        if self.mode == "user" and n:
            self.expect_error(lambda: self.index.add(x))
            return
        self.index.add(x)
        if n:
            start = len(self.model)
            self.model.update({start + i: row for i, row in enumerate(x)})
            self.mode = "sequential"

    @rule(seed=st.integers(0, 2**16),
          ids=st.lists(st.integers(-3, 200), min_size=0, max_size=20))
    def add_with_ids(self, seed, ids):
        x = vectors(seed, len(ids))
        ids_arr = np.array(ids, dtype=np.int64)
        bad = (self.mode == "sequential" or any(i < 0 for i in ids) or len(set(ids)) != len(ids)
               or any(i in self.model for i in ids))
        if bad and ids:
            self.expect_error(lambda: self.index.add_with_ids(x, ids_arr))
            return
        self.index.add_with_ids(x, ids_arr)
        if ids:
            self.model.update(dict(zip(ids, x)))
            self.mode = "user"

    @rule(ids=st.lists(st.integers(-2, 220), max_size=25))
    def remove(self, ids):
        removed = self.index.remove_ids(np.array(ids, dtype=np.int64))
        gone = [i for i in self.model if i in set(ids)]
        assert removed == len(gone)
        kept = [(i, v) for i, v in self.model.items() if i not in set(ids)]
        if self.mode == "sequential":
            kept = [(pos, v) for pos, (_, v) in enumerate(kept)]
        self.model = dict(kept)
        if not self.model:
            self.mode = None

    @rule()
    def reset(self):
        self.index.reset()
        self.model, self.mode = {}, None

    @rule(seed=st.integers(0, 2**16), k=st.integers(1, 50))
    def search(self, seed, k):
        q = vectors(seed, 3)
        D_, I = self.index.search(q, k)
        assert I.shape == D_.shape == (3, k)
        n = len(self.model)
        assert (I[:, min(k, n):] == -1).all()
        assert set(I[:, :min(k, n)].ravel()) <= set(self.model)

    @rule(kind=st.sampled_from(sorted(BAD_BATCHES)), seed=st.integers(0, 2**16))
    def bad_add(self, kind, seed):
        x = BAD_BATCHES[kind](vectors(seed, 4))
        self.expect_error(lambda: self.index.add(x))

    @rule(k=st.integers(-5, 0))
    def bad_search(self, k):
        self.expect_error(lambda: self.index.search(vectors(0, 2), k))

    @precondition(lambda self: self.mode == "user")
    @rule(dtype=st.sampled_from(["float64", "bool"]))
    def bad_ids_dtype(self, dtype):
        self.expect_error(lambda: self.index.add_with_ids(vectors(1, 2), np.array([500, 501],
                                                                                  dtype=dtype)))

    @invariant()
    def matches_model_and_reference(self):
        assert self.index.ntotal == len(self.model)
        assert self.index.stored_ids().tolist() == list(self.model)
        if self.model:
            expected = ref.invgc(np.array(list(self.model.values())), [BANK_G, BANK_Q], [0.6, 1.2],
                                 "localadj", 0.1)
            np.testing.assert_allclose(self.index.index.reconstruct_n(0, self.index.ntotal),
                                       expected, atol=1e-5)


TestIndexMachine = IndexMachine.TestCase


@given(shape=st.tuples(st.integers(0, 3), st.integers(0, 12)),
       dtype=st.sampled_from(["float16", "float32", "float64", "int32", "uint8", "bool",
                              "complex64"]),
       ndim=st.sampled_from([1, 2, 3]))
def test_arbitrary_arrays_are_added_or_refused_cleanly(shape, dtype, ndim):
    index = InvGCIndex(faiss.IndexFlatIP(D), **PARAMS)
    index.add(vectors(0, 5))
    before = snapshot(index)
    x = np.ones(shape, dtype=dtype)
    x = x.reshape(-1) if ndim == 1 else (x[None] if ndim == 3 else x)
    try:
        index.add(x)
    except (ValueError, TypeError):
        assert_same(snapshot(index), before)
        return
    assert index.ntotal == 5 + x.shape[0]  # only unit rows of dimension D get through
    assert x.shape[0] == 0 or np.allclose(np.linalg.norm(x.astype(float), axis=1), 1, atol=1e-3)


def test_huge_batch_in_one_call(rng):
    index = InvGCIndex(faiss.IndexFlatIP(D), batch_size=1000, **PARAMS)
    x = random_unit(rng, 20_000, D)
    index.add(x)
    assert index.ntotal == 20_000
    np.testing.assert_allclose(index.index.reconstruct_n(19_990, 10),
                               ref.invgc(x[-10:], [BANK_G, BANK_Q], [0.6, 1.2], "localadj", 0.1),
                               atol=1e-5)
