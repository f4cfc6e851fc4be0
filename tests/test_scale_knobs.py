"""Scale knobs: approximate bank search parameters, bank sampling, streaming adds."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import dense_reference as ref
import invgc_faiss
from invgc_faiss import InvGCIndex
from invgc_faiss.streaming import add_in_batches


def test_bank_search_params_are_applied_and_persisted(tmp_path, small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(s["d"]), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       gallery_bank_index="IVF4,Flat", query_bank_index="HNSW8",
                       bank_search_params="nprobe=3,efSearch=77")
    g, q = (off.bank_index for off in index.correction.offsets_)
    assert faiss.extract_index_ivf(g).nprobe == 3
    assert faiss.downcast_index(q).hnsw.efSearch == 77
    index.add(s["xb"])
    invgc_faiss.write_index(index, tmp_path / "i")
    loaded = invgc_faiss.read_index(tmp_path / "i")
    assert faiss.extract_index_ivf(loaded.correction.offsets_[0].bank_index).nprobe == 3
    loaded.add(s["xq"])
    index.add(s["xq"])
    assert_array_equal(loaded.search(s["xq"], 5)[1], index.search(s["xq"], 5)[1])


def test_bad_bank_search_params(small_data):
    with pytest.raises(ValueError, match="'nosuchknob' applies to none of the bank indexes"):
        InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=small_data["bank_g"],
                   gallery_bank_index="IVF4,Flat", bank_search_params="nosuchknob=3")


def test_full_probe_ivf_bank_equals_exact_bank(small_data):
    s = small_data
    exact = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    ann = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                     gallery_bank_index="IVF4,Flat", query_bank_index="IVF4,Flat",
                     bank_search_params="nprobe=4")
    assert_allclose(ann.correction.transform(s["xb"]), exact.correction.transform(s["xb"]),
                    atol=1e-6)


def test_max_bank_size_samples_the_bank(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       max_bank_size=50, bank_seed=3, pool_rate=0.1)
    sample_g, sample_q = index.correction.banks
    assert sample_g.shape == sample_q.shape == (50, 16)
    rows = {tuple(r) for r in s["bank_g"]}
    assert all(tuple(r) in rows for r in sample_g)
    index.add(s["xb"])
    expected = ref.invgc(s["xb"], [sample_g, sample_q], [0.3, 0.3], "localadj", 0.1)
    assert_allclose(index.index.reconstruct_n(0, 300), expected, atol=1e-5)


def test_add_in_batches_from_memmap_equals_one_add(tmp_path, small_data):
    s = small_data
    path = tmp_path / "gallery.npy"
    np.save(path, s["xb"])
    gallery = np.load(path, mmap_mode="r")
    streamed = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    seen = []
    assert add_in_batches(streamed, gallery, batch_size=64,
                          progress=lambda n, total: seen.append((n, total))) == 300
    assert seen[0] == (64, 300) and sum(n for n, _ in seen) == 300
    whole = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"])
    whole.add(s["xb"])
    assert_array_equal(streamed.index.reconstruct_n(0, 300), whole.index.reconstruct_n(0, 300))


def test_add_in_batches_from_generator_with_ids_and_a_bad_batch(small_data):
    s = small_data
    index = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"])
    bad = s["xb"][200:].copy()
    bad[5, 0] = np.nan
    batches = iter([s["xb"][:100], s["xb"][100:200], bad])
    with pytest.raises(ValueError, match="batch starting at row 200: x contains NaN"):
        add_in_batches(index, batches, ids=np.arange(300) + 7)
    assert_array_equal(index.stored_ids(), np.arange(200) + 7)  # earlier batches stay


def test_read_npy_batches(tmp_path, small_data):
    from invgc_faiss.streaming import read_npy_batches

    path = tmp_path / "g.npy"
    np.save(path, small_data["xb"])
    batches = list(read_npy_batches(str(path), 128))
    assert [b.shape for b in batches] == [(128, 16), (128, 16), (44, 16)]
    assert_array_equal(np.concatenate(batches), small_data["xb"])
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated at row"):
        list(read_npy_batches(str(path), 128))
