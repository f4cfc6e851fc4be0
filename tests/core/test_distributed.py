"""Dask build gives the same index as one process (extra `dask`)."""
import importlib.util

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from tests.helpers.data import random_unit
from invgc_faiss import InvGCIndex, InvGCRerankIndex

pytestmark = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="needs the dask extra")


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def data():
    rng = np.random.default_rng(5)
    d = 24
    return {"d": d, "xb": random_unit(rng, 1000, d), "xq": random_unit(rng, 30, d),
            "banks": {"gallery_bank": random_unit(rng, 300, d),
                      "query_bank": random_unit(rng, 200, d), "pool_rate": 0.05,
                      "rho_q": 1.0}}  # rates given: applied on these isotropic banks


@pytest.mark.parametrize("inner", ["Flat", "IVF8,Flat"])
@pytest.mark.parametrize("from_path", [False, True])
def test_distributed_build_equals_single_process(client, data, tmp_path, inner, from_path):
    from invgc_faiss.distributed import build_distributed

    def make():
        index = InvGCIndex(faiss.index_factory(data["d"], inner, faiss.METRIC_INNER_PRODUCT),
                           **data["banks"])
        index.train(data["xb"])
        return index

    single = make()
    single.add(data["xb"])
    source = data["xb"]
    if from_path:
        source = str(tmp_path / "g.npy")
        np.save(source, data["xb"])
    seen = []
    built = build_distributed(client, make(), source, chunk_size=170,
                              progress=lambda n, total: seen.append(n))
    assert sum(seen) == 1000 and built.ntotal == 1000 and built.sequential_ids
    ivf = faiss.try_extract_index_ivf(built.index)
    if ivf is not None:
        ivf.nprobe = faiss.extract_index_ivf(single.index).nprobe = 8
    D0, I0 = single.search(data["xq"], 10)
    D, I = built.search(data["xq"], 10)
    assert_array_equal(I, I0)
    assert_array_equal(D, D0)
    assert_array_equal(built.items.columns["degrees"], single.items.columns["degrees"])
    built.add(data["xq"])  # keeps working as a normal index afterwards
    assert built.ntotal == 1030


def test_distributed_build_refuses_what_it_cannot_do(client, data):
    from invgc_faiss.distributed import build_distributed

    full = InvGCIndex(faiss.IndexFlatIP(data["d"]), **data["banks"])
    full.add(data["xb"][:5])
    with pytest.raises(ValueError, match="needs an empty index"):
        build_distributed(client, full, data["xb"])
    with pytest.raises(TypeError, match="baked InvGCIndex"):
        build_distributed(client, InvGCRerankIndex(faiss.IndexFlatIP(data["d"]), **data["banks"]),
                          data["xb"])
    bad = data["xb"].copy()
    bad[400, 0] = np.nan
    empty = InvGCIndex(faiss.IndexFlatIP(data["d"]), **data["banks"])
    with pytest.raises(ValueError, match="chunk at row 340 contains NaN"):
        build_distributed(client, empty, bad, chunk_size=170)
    assert empty.ntotal == 0
