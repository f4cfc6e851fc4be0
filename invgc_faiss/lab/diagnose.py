"""``python -m invgc_faiss diagnose``: a label-free report on unlabelled arrays, and a route.

For a query bank (reference queries) and, optionally, gallery rows: per side the mean and
nearest-neighbour cosine and the norm of the mean row; the statistic the defaults' fit judges
(:func:`invgc_faiss.checks.crowding`: how much the rows' local mean directions share with the
bank's mean direction); with a gallery, the k-occurrence skewness of the gallery's top-10
occurrences under the query bank (hubs). Then a route, by the rule measured in
``benchmarks/spread_study.py`` (docs/results.md, "Where there is no cone"):

1. the query bank is crowded (shared direction >= ``checks.MIN_SHARED_DIRECTION``): the InvGC
   defaults, which then apply the projection form;
2. else, a side has a mean worth removing (norm >= :data:`RENORM_MIN_MEAN_NORM`):
   renormalization (R1 of both sides with a gallery bank, else of the queries);
3. else plain faiss.

With reference pairs, ``tune`` measures every route on held-out pairs and is always the better
guide; the rule is what a report can say without labels.
"""
import warnings

import numpy as np

from .. import checks
from ..correction import InvGC
from ..measures import top_k_skewness
from .spread import crowding

#: Where there is no cone, a side whose mean row is at least this long has a mean worth
#: removing: on the study's settings without a cone (benchmarks/spread_study.py), R1 of both
#: sides gained 0.3 to 10.3 R@1 where the query bank's mean norm was 0.095 or more (0.0 once,
#: on generated whitened rows that plain faiss already ranks perfectly), and moved R@1 by -0.51
#: to +0.35 where it was 0.065 or less
RENORM_MIN_MEAN_NORM = 0.08
#: Rows of the query bank that search the gallery for the skewness
SKEW_QUERIES = 10000


def side_statistics(rows):
    """``{"rows", "mean_cos", "nn_cos", "mean_norm"}`` of unit rows (n, d)."""
    mean_cos, nn_cos = crowding(rows)
    return {"rows": int(rows.shape[0]), "mean_cos": mean_cos, "nn_cos": nn_cos,
            "mean_norm": float(np.linalg.norm(rows.mean(axis=0, dtype=np.float64)))}


def diagnose(query_bank, gallery=None, seed=0):
    """The report as a dict: ``sides`` (statistics per side), ``shared_direction``,
    ``k_skewness`` (None without a gallery), ``route`` and ``reason``."""
    sides = {"query bank": side_statistics(query_bank)}
    if gallery is not None:
        sides["gallery"] = side_statistics(gallery)
    with warnings.catch_warnings():  # the fit's warning says what the report says below
        warnings.simplefilter("ignore")
        report = InvGC().fit(query_bank=query_bank).report_
    shared = report.crowding["shared_direction"]
    skew = None
    if gallery is not None:
        rng = np.random.default_rng(seed)
        rows = query_bank if query_bank.shape[0] <= SKEW_QUERIES else query_bank[
            np.sort(rng.choice(query_bank.shape[0], SKEW_QUERIES, replace=False))]
        skew = top_k_skewness(rows @ gallery.T)
    largest = max(side["mean_norm"] for side in sides.values())
    if shared >= checks.MIN_SHARED_DIRECTION:
        route = "the InvGC defaults: InvGCIndex(inner, query_bank=Q)"
        reason = (f"the query bank is crowded in a cone (shared direction {shared:.2f} >= "
                  f"{checks.MIN_SHARED_DIRECTION}): the defaults apply the projection form")
    elif largest >= RENORM_MIN_MEAN_NORM:
        route = ("renormalization: InvGCIndex(inner, query_bank=Q, gallery_bank=G, "
                 "alignment=Renormalization('R1').fit(Q, G), rho_q=0)" if gallery is not None
                 else "renormalization of the queries: renormalized_queries(index, "
                      "Renormalization('R1', 'query').fit(Q))")
        reason = (f"no cone (shared direction {shared:.2f} < {checks.MIN_SHARED_DIRECTION}), "
                  f"but a side's mean row has norm {largest:.2f} >= {RENORM_MIN_MEAN_NORM}: "
                  "removing it is the safe gain")
    else:
        route = "plain faiss"
        reason = (f"no cone (shared direction {shared:.2f}) and no mean worth removing (largest "
                  f"norm {largest:.2f} < {RENORM_MIN_MEAN_NORM})")
    return {"sides": sides, "shared_direction": shared, "k_skewness": skew, "route": route,
            "reason": reason}


def format_report(result):
    """The report as lines of text."""
    lines = [f"{'side':<12} {'rows':>8} {'mean cos':>9} {'nn cos':>7} {'|mean|':>7}"]
    for name, side in result["sides"].items():
        lines.append(f"{name:<12} {side['rows']:>8} {side['mean_cos']:9.3f} "
                     f"{side['nn_cos']:7.3f} {side['mean_norm']:7.3f}")
    lines.append(f"shared direction of the query bank's local means (the defaults' fit "
                 f"statistic): {result['shared_direction']:.3f}")
    if result["k_skewness"] is not None:
        lines.append(f"k-occurrence skewness of the gallery under the query bank (top 10): "
                     f"{result['k_skewness']:.2f}")
    lines.append(f"route: {result['route']}")
    lines.append(f"why: {result['reason']}")
    lines.append("with reference pairs, `python -m invgc_faiss tune` measures every route on "
                 "held-out pairs (renormalization included)")
    return lines
