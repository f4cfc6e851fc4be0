"""What the store tests of every engine check the same way."""
import faiss
from numpy.testing import assert_allclose, assert_array_equal

import invgc_faiss
from invgc_faiss import InvGC, QueryCorrection, query_corrected


def fitted(s):
    """The correction the store tests bake with (query bank, pool 0.2)."""
    return InvGC(pool_rate=0.2).fit(query_bank=s["bank_q"])


def assert_no_rebuild_route_matches(make_route, s, rescore):
    """``make_route(query_correction, rescore_or_None)`` over a store holding ``s["xb"]`` as
    ids 0..n-1 searches as ``query_corrected`` over a flat index, or with ``rescore`` as
    ``InvGCRerankIndex`` (k_factor 1, the same candidates)."""
    correction, side = fitted(s), QueryCorrection().fit(s["bank_q"])
    route = make_route(side, correction if rescore else None)
    reference = (invgc_faiss.InvGCRerankIndex(faiss.IndexFlatIP(s["d"]), correction=correction,
                                              k_factor=1, offset_dtype="float32") if rescore
                 else query_corrected(faiss.IndexFlatIP(s["d"]), side))
    reference.add(s["xb"])
    D_ref, I_ref = reference.search(s["xq"], 5)
    D, I = route.search(s["xq"], 5)
    assert_array_equal(I, I_ref)
    assert_allclose(D, D_ref, atol=1e-5)
