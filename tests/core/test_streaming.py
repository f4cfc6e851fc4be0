"""Galleries larger than memory: add_in_batches, transform_in_batches, read_npy_batches."""
import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

from invgc_faiss import InvGCIndex
from invgc_faiss.streaming import add_in_batches, transform_in_batches


def test_add_in_batches_from_memmap_equals_one_add(tmp_path, small_data):
    s = small_data
    path = tmp_path / "gallery.npy"
    np.save(path, s["xb"])
    gallery = np.load(path, mmap_mode="r")
    streamed = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                          rho_q=1.0)  # rates given: applied on these isotropic banks
    seen = []
    assert add_in_batches(streamed, gallery, batch_size=64,
                          progress=lambda n, total: seen.append((n, total))) == 300
    assert seen[0] == (64, 300) and sum(n for n, _ in seen) == 300
    whole = InvGCIndex(faiss.IndexFlatIP(16), gallery_bank=s["bank_g"], query_bank=s["bank_q"],
                       rho_q=1.0)
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


def test_transform_in_batches_writes_the_corrected_rows_to_a_npy_memmap(tmp_path, small_data):
    s = small_data
    np.save(tmp_path / "gallery.npy", s["xb"])
    index = InvGCIndex(faiss.IndexFlatIP(16), query_bank=s["bank_q"], rho_q=1.0)
    index.add(s["xb"])
    out = np.lib.format.open_memmap(tmp_path / "corrected.npy", "w+", np.float32, (300, 16))
    assert transform_in_batches(index.correction, np.load(tmp_path / "gallery.npy", mmap_mode="r"),
                                out, batch_size=70) == 300
    out.flush()
    assert_array_equal(np.load(tmp_path / "corrected.npy"), index.index.reconstruct_n(0, 300))
    with pytest.raises(ValueError, match="the source had 300 rows, out has 301"):
        transform_in_batches(index.correction, s["xb"], np.empty((301, 16), np.float32))
    with pytest.raises(ValueError, match="batch starting at row 280: out has 299 rows, the source"):
        transform_in_batches(index.correction, s["xb"], np.empty((299, 16), np.float32),
                             batch_size=70)
    bad = s["xb"].copy()
    bad[150, 3] = np.inf
    with pytest.raises(ValueError, match="batch starting at row 140"):
        transform_in_batches(index.correction, bad, np.empty((300, 16), np.float32), batch_size=70)


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
