"""Files written by earlier versions load and search as they did: tests/core/files holds indexes
written by invgc-faiss 0.1.0 (file format 1) with that version's search results."""
import json
import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss

FILES = os.path.join(os.path.dirname(__file__), "files")
EXPECTED = json.load(open(os.path.join(FILES, "expected.json")))
INPUTS = np.load(os.path.join(FILES, "inputs.npz"))


@pytest.mark.parametrize("name", sorted(EXPECTED["cases"]))
def test_an_index_written_by_the_previous_version_loads_and_searches_the_same(name):
    expected = EXPECTED["cases"][name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sampled bank's knob warning, as then
        index = invgc_faiss.read_index(os.path.join(FILES, f"{name}.invgc"))
    D, I = index.search(INPUTS["xq"], 5)
    assert_array_equal(I, expected["I"])
    assert_allclose(D, expected["D"], atol=1e-5)
    if name.endswith("_ids"):
        index.add_with_ids(INPUTS["more"], np.arange(30) + 1000)
        assert index.rates.form == "paper" and index.rates.gallery == 0.8  # search-time rates
    else:
        index.add(INPUTS["more"])  # later adds are corrected as the old index corrected them
    assert_array_equal(index.search(INPUTS["xq"], 5)[1], expected["I_after_add"])
    assert type(index) is (invgc_faiss.InvGCRerankIndex if name.startswith("rerank")
                           else invgc_faiss.InvGCIndex)
    if name.startswith("rerank"):  # no x . m kept before format 3: raw candidates, as then
        assert index.candidates == "raw" and index.axis_ is None
