"""device="gpu": the CPU fallback (everywhere) and, where faiss and PyTorch see a GPU, the GPU path
against the CPU path and the dense float64 reference (bank search, offsets, inner index, files)."""
import importlib.util
import warnings

import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tests.helpers import dense_reference as ref
import invgc_faiss
from tests.helpers.data import cone_data, unit_rows
from invgc_faiss import InvGC, InvGCIndex, InvGCRerankIndex, gpu, kernels
from invgc_faiss.offsets import LocalAdjOffset

TOL = 1e-5
IP = faiss.METRIC_INNER_PRODUCT
REASON = gpu.unavailable_reason()
needs_gpu = pytest.mark.skipif(REASON is not None, reason=f"no GPU path here: {REASON}")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed")


def separated(x, banks, pool_rate, gap=1e-5):
    """Rows whose float64 top-k is not a near-tie at rank k in any bank (gap to rank k + 1 above
    ``gap``): there the float32 searches of CPU and GPU must pick the reference's neighbours."""
    keep = np.ones(x.shape[0], bool)
    for bank in banks:
        k = max(1, int(np.floor(pool_rate * bank.shape[0])))
        s = -np.sort(-(x.astype(np.float64) @ bank.T.astype(np.float64)), axis=1)
        keep &= s[:, k - 1] - s[:, k] > gap
    return keep


@pytest.fixture
def data():
    return cone_data(5, 32, 3000, 50, 1500, 1200)


def build(s, device, cls=InvGCIndex, **params):
    rates = {} if {"r_g", "r_q", "rho_g", "rho_q"} & set(params) else {"r_g": 0.25, "r_q": 1.5}
    params = {**rates, "pool_rate": 0.05, "max_bank_size": None, "batch_size": 700, **params}
    return cls(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
               device=device, **params)


def test_unknown_device_is_a_value_error(data):
    with pytest.raises(ValueError, match="device must be one of"):
        InvGC(device="tpu")
    with pytest.raises(ValueError, match="device must be one of"):
        build(data, "cuda")


@pytest.mark.skipif(REASON is None, reason="a GPU is usable here: no fallback to test")
def test_gpu_without_a_gpu_warns_and_gives_the_cpu_result_bit_for_bit(data, tmp_path):
    s = data
    with pytest.warns(RuntimeWarning, match="running on the CPU"):
        index = build(s, "gpu")
    assert index.device_ == "cpu" and index.correction.device_ == "cpu"
    assert not gpu.is_gpu_index(index.index)
    cpu = build(s, "cpu")
    index.add(s["xb"])
    cpu.add(s["xb"])
    assert_array_equal(index.index.reconstruct_n(0, 3000), cpu.index.reconstruct_n(0, 3000))
    invgc_faiss.write_index(index, tmp_path / "i.invgc")
    with pytest.warns(RuntimeWarning, match="running on the CPU"):
        loaded = invgc_faiss.read_index(tmp_path / "i.invgc", device="gpu")
    assert_array_equal(loaded.search(s["xq"], 10)[1], cpu.search(s["xq"], 10)[1])


@needs_torch
def test_torch_gather_matches_the_numba_kernel_with_missing_neighbours():
    import torch

    rng = np.random.default_rng(3)
    bank = unit_rows(rng.standard_normal((400, 24)))
    x = unit_rows(rng.standard_normal((60, 24)))
    sims, nbrs = LocalAdjOffset(bank, 0.1).bank_index.search(x, 40)
    nbrs[rng.random(nbrs.shape) < 0.3] = -1
    nbrs[0] = -1  # a row where nothing was found
    expected = (np.empty((60, 24), np.float32), np.empty(60, np.float32), np.empty(60, np.int64))
    kernels.weighted_neighbour_mean(bank, sims, nbrs, *expected)
    got = gpu.weighted_neighbour_mean(torch.from_numpy(bank), torch.from_numpy(sims),
                                      torch.from_numpy(nbrs))
    for g, e in zip(got, expected):
        assert_allclose(g.numpy(), e, atol=TOL)
    assert got[2][0] == 0 and np.all(got[0][0].numpy() == 0)


@needs_gpu
def test_gpu_bank_offsets_match_the_cpu_bank_and_the_dense_reference(data):
    s = data
    cpu = LocalAdjOffset(s["bank_q"], 0.05)
    on_gpu = LocalAdjOffset(s["bank_q"], 0.05, device="gpu")
    assert on_gpu.on_gpu is not None
    got = (np.empty((3000, s["d"]), np.float32), np.empty(3000, np.float32))
    expected = (np.empty((3000, s["d"]), np.float32), np.empty(3000, np.float32))
    assert np.all(on_gpu(s["xb"], *got) == on_gpu.k)
    cpu(s["xb"], *expected)
    assert_allclose(got[0], expected[0], atol=TOL)
    assert_allclose(got[1], expected[1], rtol=TOL)
    rows = separated(s["xb"], [s["bank_q"]], 0.05)
    assert rows.mean() > 0.9
    assert_allclose(got[0][rows], ref.localadj_offset(s["xb"], s["bank_q"], 0.05)[rows], atol=TOL)


@needs_gpu
@pytest.mark.parametrize("rates", [{"r_g": 0.25, "r_q": 1.5}, {"rho_q": 1.0}, {"rho_g": 0.7, "rho_q": 1.0}])
def test_gpu_index_matches_the_cpu_index_and_the_dense_reference(data, rates):
    s = data
    index = build(s, "gpu", **rates)
    assert index.device_ == "gpu" and gpu.is_gpu_index(index.index)
    assert index.correction.device_ == "gpu"
    index.add(s["xb"])
    stored = index.index.reconstruct_n(0, 3000)
    if "r_g" in rates:
        expected = ref.invgc(s["xb"], [s["bank_g"], s["bank_q"]], [0.25, 1.5], pool_rate=0.05)
    else:
        used = [(b, rates[k]) for b, k in ((s["bank_g"], "rho_g"), (s["bank_q"], "rho_q"))
                if rates.get(k)]
        expected = ref.projection_invgc(s["xb"], [b for b, _ in used], [r for _, r in used], 0.05)
    rows = separated(s["xb"], [s["bank_g"], s["bank_q"]], 0.05)
    assert rows.mean() > 0.9
    assert_allclose(stored[rows], expected[rows], atol=TOL)
    cpu = build(s, "cpu", **rates)
    cpu.add(s["xb"])
    d_gpu, i_gpu = index.search(s["xq"], 10)
    d_cpu, i_cpu = cpu.search(s["xq"], 10)
    assert_allclose(d_gpu, d_cpu, atol=TOL)
    assert np.mean(i_gpu == i_cpu) > 0.99  # only float ties may order differently


@needs_gpu
def test_gpu_index_writes_a_cpu_file_and_loads_on_either_device(data, tmp_path):
    s = data
    index = build(s, "gpu")
    index.add_with_ids(s["xb"], np.arange(3000) * 7)
    invgc_faiss.write_index(index, tmp_path / "g.invgc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on_cpu = invgc_faiss.read_index(tmp_path / "g.invgc")
        on_gpu = invgc_faiss.read_index(tmp_path / "g.invgc", device="gpu")
    assert on_cpu.device_ == "cpu" and on_gpu.device_ == "gpu"
    d0, i0 = index.search(s["xq"], 10)
    for loaded in (on_cpu, on_gpu):
        d, i = loaded.search(s["xq"], 10)
        assert_allclose(d, d0, atol=TOL)
        assert np.mean(i == i0) > 0.99
    on_gpu.add_with_ids(s["xq"], np.arange(50) + 100000)  # later adds are corrected on the GPU too
    assert_allclose(on_gpu.reconstruct(100003), build(s, "cpu").correction.transform(s["xq"][3:4])[0],
                    atol=TOL)


@needs_gpu
def test_gpu_rerank_index_scores_like_the_cpu_one(data):
    s = data
    on_gpu = build(s, "gpu", cls=InvGCRerankIndex, offset_dtype="float32")
    cpu = build(s, "cpu", cls=InvGCRerankIndex, offset_dtype="float32")
    on_gpu.add(s["xb"])
    cpu.add(s["xb"])
    d_gpu, i_gpu = on_gpu.search(s["xq"], 10)
    d_cpu, i_cpu = cpu.search(s["xq"], 10)
    assert_allclose(d_gpu, d_cpu, atol=TOL)
    assert np.mean(i_gpu == i_cpu) > 0.99


@needs_gpu
def test_remove_ids_over_a_gpu_index_removes_or_refuses_cleanly(data):
    s = data
    index = build(s, "gpu")
    index.add(s["xb"][:500])
    before = index.search(s["xq"], 5)
    try:
        removed = index.remove_ids(np.arange(10))
    except RuntimeError:  # faiss's GPU flat index has no remove_ids: nothing may change
        assert index.ntotal == 500
        assert_array_equal(index.search(s["xq"], 5)[1], before[1])
    else:
        assert removed == 10 and index.ntotal == 490
