"""Pooling seeds of the stress table: means, bootstrap intervals, paired differences."""
import numpy as np
import pytest

from invgc_faiss.lab.intervals import POOLED, pool_seeds, with_interval_text


def row(method, seed, rsum, ndcg, **extra):
    return {"setting": "s", "method": method, "seed": seed, "RSUM": float(np.mean(rsum)),
            "per_query": {"RSUM": rsum, "q_NDCG@10": ndcg, "g_NDCG@10": ndcg}, **extra}


def test_means_over_seeds_and_an_interval_of_the_right_width():
    rng = np.random.default_rng(0)
    n = 2000
    rows = []
    for seed in range(3):
        hit = 100.0 * (rng.uniform(size=n) < 0.6)  # per-verse values with sd ~ 49
        rows.append(row("itc", seed, hit, hit / 2, fit_s=float(seed)))
    (pooled,) = pool_seeds(rows, n_bootstrap=2000)
    per_verse = np.mean([r["per_query"]["RSUM"] for r in rows], axis=0)
    assert pooled["RSUM"] == pytest.approx(per_verse.mean())
    assert pooled["fit_s"] == pytest.approx(1.0) and pooled["seeds"] == 3 and "seed" not in pooled
    half = (pooled["RSUM_hi"] - pooled["RSUM_lo"]) / 2
    assert half == pytest.approx(1.96 * per_verse.std() / np.sqrt(n), rel=0.15)
    assert pooled["RSUM_lo"] < pooled["RSUM"] < pooled["RSUM_hi"]
    # the baseline's difference to itself is exactly 0
    assert pooled["d_RSUM"] == pooled["d_RSUM_lo"] == pooled["d_RSUM_hi"] == 0.0


def test_differences_are_paired_over_the_same_verses():
    rng = np.random.default_rng(1)
    base = 100.0 * (rng.uniform(size=500) < 0.5)
    better = base.copy()
    better[:50] = 100.0  # 50 verses gained, none lost
    rows = [row("itc", 0, base, base), row("rebalance", 0, better, base)]
    pooled = {r["method"]: r for r in pool_seeds(rows, n_bootstrap=500)}
    gain = pooled["rebalance"]["d_RSUM"]
    assert gain == pytest.approx(100.0 * np.sum(better != base) / 500)
    # paired: every draw gains (never below 0), while the two means' own intervals overlap
    assert pooled["rebalance"]["d_RSUM_lo"] > 0
    assert pooled["rebalance"]["RSUM_lo"] < pooled["itc"]["RSUM_hi"]
    assert pooled["rebalance"]["d_q_NDCG@10"] == 0.0


def test_verses_without_relevant_items_are_left_out_and_text_is_formatted():
    ndcg = np.array([50.0, np.nan, 70.0, 60.0])
    rows = [row("itc", 0, np.array([100.0, 0, 100, 100]), ndcg)]
    (pooled,) = pool_seeds(rows, n_bootstrap=200)
    assert pooled["g_NDCG@10"] == pytest.approx(60.0)
    (text,) = with_interval_text([pooled])
    assert text["RSUM"].startswith("75.0 [") and text["d_RSUM"] == "+0.0 [+0.0, +0.0]"
    assert set(POOLED) <= set(text)
