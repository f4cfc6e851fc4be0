"""write_index/read_index round trips, stock-faiss interoperability, corrupt files, atomicity."""
import os

import faiss
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import invgc_faiss
from invgc_faiss import InvGCIndex, persistence

IP = faiss.METRIC_INNER_PRODUCT


def build(s, inner="Flat", **params):
    params = {"gallery_bank": s["bank_g"], "query_bank": s["bank_q"], "r_g": 0.4, "r_q": 0.9,
              "pool_rate": 0.05, **params}
    index = invgc_faiss.index_factory(s["d"], inner, IP, **params)
    index.train(s["xb"])
    return index


def assert_same_search(a, b, xq):
    Da, Ia = a.search(xq, 10)
    Db, Ib = b.search(xq, 10)
    assert_array_equal(Ia, Ib)
    assert_array_equal(Da, Db)


@pytest.mark.parametrize("case", ["flat", "full", "ivf_user_ids_after_remove", "ann_bank",
                                  "one_bank_originals"])
def test_round_trip_gives_identical_results(tmp_path, small_data, case):
    s = small_data
    if case == "flat":
        index = build(s)
        index.add(s["xb"])
    elif case == "full":
        index = build(s, variant="full")
        index.add(s["xb"])
    elif case == "ivf_user_ids_after_remove":
        index = build(s, "IVF8,Flat")
        index.add_with_ids(s["xb"], np.arange(300) * 3)
        index.remove_ids(np.arange(0, 300, 2))
        index.index.nprobe = 3
    elif case == "ann_bank":
        index = build(s, gallery_bank_index="HNSW8", query_bank_index="IVF4,Flat")
        index.add(s["xb"])
    else:
        index = build(s, query_bank=None, keep_originals=True)
        index.add(s["xb"])
    path = tmp_path / "index.invgc"
    invgc_faiss.write_index(index, path)
    loaded = invgc_faiss.read_index(path)
    assert isinstance(loaded, InvGCIndex)
    assert loaded.ntotal == index.ntotal and loaded.sequential_ids == index.sequential_ids
    assert_array_equal(loaded.stored_ids(), index.stored_ids())
    assert_same_search(loaded, index, s["xq"])
    for name, column in index.items.columns.items():
        assert_array_equal(loaded.items.columns[name], column)
    # the correction travels: later adds are corrected the same way
    more = s["xb"][:20] * np.float32(1)
    ids = np.arange(20) + 10_000
    for target in (index, loaded):
        if target.sequential_ids:
            target.add(more)
        else:
            target.add_with_ids(more, ids)
    assert_same_search(loaded, index, s["xq"])


def test_inner_index_is_served_by_stock_faiss(tmp_path, small_data):
    """index.index holds corrected vectors: plain faiss writes, reads and searches it."""
    s = small_data
    index = build(s)
    index.add(s["xb"])
    path = str(tmp_path / "inner.faiss")
    faiss.write_index(index.index, path)
    stock = faiss.read_index(path)
    assert type(stock) is faiss.IndexFlatIP
    assert_same_search(stock, index, s["xq"])


def test_faiss_write_index_accepts_the_wrapper(tmp_path, small_data):
    s = small_data
    index = build(s)
    index.add_with_ids(s["xb"], np.arange(300) + 42)
    path = str(tmp_path / "wrapper.faiss")
    faiss.write_index(index, path)
    stock = faiss.read_index(path)
    assert isinstance(stock, faiss.IndexIDMap2)
    assert_same_search(stock, index, s["xq"])


@pytest.fixture
def saved(tmp_path, small_data):
    index = build(small_data)
    index.add(small_data["xb"])
    path = tmp_path / "index.invgc"
    invgc_faiss.write_index(index, path)
    return path


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        invgc_faiss.read_index(saved)


def test_bit_flip_is_detected(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        invgc_faiss.read_index(saved)


def test_foreign_file(tmp_path, small_data):
    path = str(tmp_path / "plain.faiss")
    faiss.write_index(faiss.IndexFlatIP(4), path)
    with pytest.raises(ValueError, match="not an invgc-faiss index file"):
        invgc_faiss.read_index(path)


def test_other_format_version(saved, monkeypatch):
    monkeypatch.setattr(persistence, "READS", (99,))
    with pytest.raises(ValueError, match=f"format version {persistence.FORMAT_VERSION}, this "
                                         "library reads 99"):
        invgc_faiss.read_index(saved)


def test_write_refuses_plain_index(tmp_path):
    with pytest.raises(TypeError, match="takes an InvGCIndex"):
        invgc_faiss.write_index(faiss.IndexFlatIP(4), tmp_path / "x")


def test_failed_write_keeps_previous_file_and_leaves_no_temp(saved, small_data, monkeypatch):
    before = saved.read_bytes()
    index = build(small_data)
    index.add(small_data["xb"][:10])

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        invgc_faiss.write_index(index, saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


def test_a_correction_alone_round_trips_as_bytes(saved, small_data):
    """What stores keep beside a table: the correction's bytes, integrity-checked."""
    correction = build(small_data).correction
    data = persistence.correction_bytes(correction)
    restored = persistence.correction_from_bytes(data)
    assert restored.get_params() == correction.get_params()
    np.testing.assert_array_equal(restored.transform(small_data["xb"]),
                                  correction.transform(small_data["xb"]))
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    with pytest.raises(ValueError, match="the saved one is corrupt"):
        persistence.correction_from_bytes(bytes(flipped), what="the saved one")
    with pytest.raises(ValueError, match="holds an index"):
        persistence.correction_from_bytes(saved.read_bytes())
    path = saved.parent / "correction.invgc"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="holds a correction"):
        invgc_faiss.read_index(path)
