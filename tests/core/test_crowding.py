"""The defaults where there is no cone: the fit measures the query bank's crowding and leaves
vectors unchanged where the projection form harms (docs/science.md §1e)."""
import warnings

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import invgc_faiss
from invgc_faiss import InvGC, InvGCIndex, checks
from invgc_faiss.lab.synthetic import make_cone_pairs
from tests.helpers.data import cone


@pytest.fixture(scope="module")
def pairs():
    """Generated cone pairs (shared direction about 0.8: below the threshold as they come)."""
    return make_cone_pairs(n_test=300, n_bank=3000, d=32, seed=2)


def centred(rows):
    rows = rows.astype(np.float64) - rows.mean(axis=0)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def fit_quietly(**kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        correction = InvGC(**{k: v for k, v in kwargs.items() if k != "query_bank"}).fit(
            query_bank=kwargs["query_bank"])
    return correction, [str(w.message) for w in caught]


def test_a_crowded_query_bank_gets_the_projection_form(rng):
    correction, caught = fit_quietly(query_bank=cone(rng, 3000, 32, 0.15))
    report = correction.report_
    assert report.crowding["shared_direction"] >= checks.MIN_SHARED_DIRECTION
    assert not report.not_crowded and correction.rates_.query == 1.0
    assert not any("not crowded" in message for message in caught)


def test_without_a_cone_the_defaults_are_the_identity_and_say_why(pairs):
    bank = centred(pairs.bank_queries)
    correction, caught = fit_quietly(query_bank=bank)
    report = correction.report_
    assert report.not_crowded and report.crowding["shared_direction"] < checks.MIN_SHARED_DIRECTION
    assert correction.rates_.active(correction.bank_names_) == []
    assert len(caught) == 1 and "not crowded" in caught[0] and "max_bank_size" not in caught[0]
    x = centred(pairs.gallery)
    assert_array_equal(correction.transform(x), x)  # the plain index, bit for bit


def test_rates_given_are_applied_whatever_the_crowding(pairs):
    bank = centred(pairs.bank_queries)
    correction, caught = fit_quietly(query_bank=bank, rho_q=1.0)
    assert not correction.report_.not_crowded and correction.rates_.query == 1.0
    assert not any("not crowded" in message for message in caught)
    assert correction.report_.crowding["shared_direction"] < checks.MIN_SHARED_DIRECTION


def test_the_decision_survives_a_file(pairs, tmp_path):
    bank = centred(pairs.bank_queries)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = InvGCIndex(faiss.IndexFlatIP(32), query_bank=bank)
        invgc_faiss.write_index(index, tmp_path / "i.invgc")
        loaded = invgc_faiss.read_index(tmp_path / "i.invgc")
    assert loaded.correction.report_.not_crowded
    x = centred(pairs.gallery)
    loaded.add(x)
    assert_array_equal(loaded.index.reconstruct_n(0, x.shape[0]), x)
