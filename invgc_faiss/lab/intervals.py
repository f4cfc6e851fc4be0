"""Pooling the stress table's seeds: means over seeds and 95 % bootstrap intervals.

Each seed's row of a (setting, method) keeps per-verse values (``row["per_query"]``: RSUM of both
directions, NDCG@10 of each side; :mod:`invgc_faiss.lab.stress`). Pooled value: the mean over
seeds and test verses. Interval: ``n_bootstrap`` draws, each of ``n`` test verses with
replacement, the same verses for every seed and every method of a setting; a draw's value is the
mean over its verses of the seeds' mean. The 2.5th and 97.5th percentiles bound the mean. A
difference to the ``baseline`` method uses the same draws (paired), so its interval is narrower
than the two means' intervals suggest. The intervals carry the test-verse sampling; the seeds
(noise draw, adapter split and shuffles) enter through the averaged values, so with 3 seeds a
seed-to-seed spread larger than the interval is shown by the per-seed columns of the JSON, not
by the interval.
"""
import warnings

import numpy as np

POOLED = ("RSUM", "q_NDCG@10", "g_NDCG@10")


def _groups(rows):
    """(setting, method) -> that pair's rows, in first-seen order."""
    groups = {}
    for row in rows:
        groups.setdefault((row["setting"], row["method"]), []).append(row)
    return groups


def _nanmean(values, axis):
    """``np.nanmean`` without the warning for an all-NaN slice (its mean stays NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _per_verse(rows, name):
    """Per-verse value of ``name``, mean over seeds (NaN where a verse has none)."""
    return _nanmean(np.stack([np.asarray(r["per_query"][name], np.float64) for r in rows]), 0)


def _bounds(values, draws):
    means = _nanmean(values[draws], 1)
    return float(np.nanpercentile(means, 2.5)), float(np.nanpercentile(means, 97.5))


def pool_seeds(rows, *, baseline="itc", n_bootstrap=1000, seed=0):
    """One row per (setting, method) from per-seed rows.

    Parameters
    ----------
    rows : list of dict, rows of :func:`invgc_faiss.lab.stress.evaluate_setting` over seeds
    baseline : str, the method differences are taken to (skipped where a setting lacks it)
    n_bootstrap : int
    seed : int, seeds the draws

    Returns
    -------
    list of dict: ``setting``, ``method``, ``seeds``; every numeric column's mean over seeds;
    for each name of :data:`POOLED`: ``name`` (pooled mean), ``name_lo``, ``name_hi`` and, beside
    the baseline, ``d_name``, ``d_name_lo``, ``d_name_hi``
    """
    rng = np.random.default_rng(seed)
    groups, draws, out = _groups(rows), {}, []
    for (setting, method), group in groups.items():
        n = len(group[0]["per_query"]["RSUM"])
        if setting not in draws:
            draws[setting] = rng.integers(0, n, size=(n_bootstrap, n))
        pooled = {"setting": setting, "method": method, "seeds": len(group)}
        for key, value in group[0].items():
            if isinstance(value, (int, float, np.floating)) and key != "seed":
                pooled[key] = float(np.mean([r[key] for r in group]))
        base = groups.get((setting, baseline))
        for name in POOLED:
            values = _per_verse(group, name)
            pooled[name] = float(np.nanmean(values))
            pooled[f"{name}_lo"], pooled[f"{name}_hi"] = _bounds(values, draws[setting])
            if base is not None:
                diff = values - _per_verse(base, name)
                pooled[f"d_{name}"] = float(np.nanmean(diff))
                pooled[f"d_{name}_lo"], pooled[f"d_{name}_hi"] = _bounds(diff, draws[setting])
        out.append(pooled)
    return out


def with_interval_text(pooled):
    """Copies of pooled rows with ``name`` and ``d_name`` as ``"mean [lo, hi]"`` text."""
    out = []
    for row in pooled:
        row = dict(row)
        for name in POOLED:
            for key in (name, f"d_{name}"):
                if key in row:
                    sign = "+" if key.startswith("d_") else ""
                    row[key] = (f"{row[key]:{sign}.1f} [{row[key + '_lo']:{sign}.1f}, "
                                f"{row[key + '_hi']:{sign}.1f}]")
        out.append(row)
    return out
