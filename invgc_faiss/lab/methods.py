"""The methods the evaluation compares, each with its hyper-parameter grid.

A method is ``(grid, make)``: ``grid`` maps parameter names to candidate values (tuned label-free
by :mod:`invgc_faiss.lab.grid_search`), ``make(params, query_bank, gallery_bank)`` returns ``build(d)``, a
callable that returns an empty index-like object with ``add`` and ``search``.
"""
import faiss

from . import baselines
from ..correction import DEFAULT_MAX_BANK_SIZE
from ..index import InvGCIndex
from ..rates import RENORMALIZATION, TUNING_GRIDS
from ..renormalization import Renormalization

#: LocalAdj rates reach 3 and pools 0.2 (docs/science.md §2: the tuner often picks large ones)
LOCALADJ_RATES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
LOCALADJ_POOLS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.2)
FULL_RATES = tuple(round(0.1 * i, 1) for i in range(11)) + (1.5, 2.0)


def _plain(params, query_bank, gallery_bank):
    return lambda d: faiss.IndexFlatIP(d)


def _nnn(params, query_bank, gallery_bank):
    bias = baselines.nnn_bias(query_bank, params["alpha"], params["k"])
    return lambda d: baselines.ScoreBiasIndex(d, bias)


def _csls(params, query_bank, gallery_bank):
    bias = baselines.nnn_bias(query_bank, 0.5, params["k"])
    return lambda d: baselines.ScoreBiasIndex(d, bias)


def _qb_norm(params, query_bank, gallery_bank):
    return lambda d: baselines.QueryBankNormIndex(d, query_bank, beta=params["beta"],
                                                  k_factor=params.get("k_factor", 8))


def _dbnorm(params, query_bank, gallery_bank):
    bias = baselines.dbnorm_bias(query_bank, gallery_bank, params["beta1"], params["beta2"])
    return lambda d: baselines.ScoreBiasIndex(d, bias)


def _renorm(params, query_bank, gallery_bank):
    """Renormalization (docs/science.md §1e, §6): R1 or R2, both sides or the queries only."""
    renorm = Renormalization(params["kind"], params["sides"]).fit(query_bank, gallery_bank)
    return lambda d: InvGCIndex(faiss.IndexFlatIP(d), query_bank=query_bank,
                                gallery_bank=gallery_bank, alignment=renorm, rho_g=0.0,
                                rho_q=0.0)


def _invgc(variant, max_bank_size=None):
    """InvGC with whole banks by default (the evaluation's protocol)."""
    def make(params, query_bank, gallery_bank):
        params = {"max_bank_size": max_bank_size, **params}
        return lambda d: InvGCIndex(faiss.IndexFlatIP(d), gallery_bank=gallery_bank,
                                    query_bank=query_bank, variant=variant, **params)
    return make


#: The InvGC methods whose grids are scored without rebuilding: name -> (variant, form)
INVGC_GRIDS = {"invgc_full": ("full", "paper"), "invgc_localadj": ("localadj", "paper"),
               "invgc_projection": ("localadj", "projection")}

METHODS = {
    "plain": ({}, _plain),
    "nnn": ({"alpha": (0.25, 0.5, 0.75, 1.0, 1.5), "k": (1, 8, 32, 128, 256)}, _nnn),
    "csls": ({"k": (1, 5, 10, 20, 50, 100)}, _csls),
    "qb_norm": ({"beta": (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)}, _qb_norm),
    "dbnorm": ({"beta1": (1.0, 5.0, 20.0, 50.0), "beta2": (0.5, 1.0, 5.0, 20.0, 50.0)}, _dbnorm),
    "renorm": (TUNING_GRIDS[RENORMALIZATION], _renorm),
    "invgc_full": ({"r_g": FULL_RATES, "r_q": FULL_RATES}, _invgc("full")),
    "invgc_localadj": ({"r_g": LOCALADJ_RATES, "r_q": LOCALADJ_RATES,
                        "pool_rate": LOCALADJ_POOLS}, _invgc("localadj")),
    "invgc_projection": (TUNING_GRIDS["projection"], _invgc("localadj")),
    # the constructor's defaults, untuned (bank sample included)
    "invgc_default": ({}, _invgc("localadj", DEFAULT_MAX_BANK_SIZE)),
}
