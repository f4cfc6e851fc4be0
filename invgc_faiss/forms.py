"""The two forms of the InvGC correction, their parameters and their per-item rates.

For a gallery row ``x`` (unit) and the subtractive offset ``o_B = off_B(x)`` of bank ``B``
(LocalAdj or full, :mod:`invgc_faiss.correction`):

* ``"paper"`` -- Jian & Wang (2023), parameters ``r_g, r_q``::

      x_B = normalize(x - r_B o_B)
      x'  = normalize(sum over every fitted bank of x_B)      (r_B = 0 contributes x itself)

* ``"projection"`` -- parameters ``rho_g, rho_q``: remove the part of ``x`` along its local bank
  mean direction ``ô_B = o_B / |o_B|``::

      x_B = normalize(x - rho_B (x . ô_B) ô_B)                 (o_B = 0: x_B = x)
      x'  = normalize(sum over the banks with rho_B > 0 of x_B)   (none: x' = x)

  which is the paper's form with the per-item rate ``r_B(x) = rho_B (x . o_B) / |o_B|^2``. At
  ``rho_B = 1`` each ``x_B`` is orthogonal to ``ô_B``. Why a second form: the paper's form gains
  only near ``r ~ (x . ô)/|o|``, a narrow peak that depends on the data and the pool (a little
  less or more leaves a residual along ``ô`` that dominates the ranking, and small rates harm);
  the projection form puts every item at that point by construction, so one setting serves many
  data sets. A bank with ``rho_B = 0`` is left out of the combination (and not searched at add
  time) rather than contributing ``x``: "query bank only" is ``rho_g = 0``.

``r = 0`` (paper, every bank) and ``rho = 0`` (projection, every bank) are the identity, exactly.
"""
import numpy as np

from .validation import check_rate

FORMS = ("paper", "projection")
RATE_NAMES = {"paper": ("r_g", "r_q"), "projection": ("rho_g", "rho_q")}

#: Constructor defaults, chosen by the defaults study (docs/results.md,
#: benchmarks/defaults_study.py): projection, query bank only at rho_q = 1. With a gallery bank
#: alone no untuned setting measured was safe (rho_g = 1 lost 0.8 R@1 in one direction, 0.5 and
#: the paper form more), so the default there is the identity, with a warning.
PROJECTION_DEFAULTS = {"rho_q": 1.0, "rho_g_with_query_bank": 0.0, "rho_g_alone": 0.0}
#: Default grids of the label-free tuner, per form: they reach past each form's optimum
#: (the paper form's peak lies near r ~ 1-1.5 at large pools; rho near 1)
TUNING_GRIDS = {
    "projection": {"rho_g": (0.0, 0.5, 1.0), "rho_q": (0.0, 0.5, 0.8, 0.9, 1.0, 1.1, 1.25),
                   "pool_rate": (0.05, 0.1, 0.2)},
    "paper": {"r_g": (0.0, 0.25, 0.5, 1.0, 1.5, 2.0), "r_q": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
              "pool_rate": (0.01, 0.05, 0.1, 0.2)},
}
#: The paper form's rates when it is chosen without rates: the label-free tuner's most frequent
#: picks on the six real directions of the defaults study
PAPER_DEFAULTS = {"r_g": 0.25, "r_q": 1.5}


def resolve_form(form, r_g, r_q, rho_g, rho_q):
    """Validate the form and its rates as given to a constructor (``None`` = not given).

    The form is ``form`` if given, else ``"paper"`` when ``r_g`` or ``r_q`` is given, else
    ``"projection"``. Rates of the other form are refused.

    Returns
    -------
    form : str
    given : dict ``{"gallery": rate or None, "query": rate or None}`` (validated, >= 0)
    """
    paper_given = r_g is not None or r_q is not None
    projection_given = rho_g is not None or rho_q is not None
    if form is None:
        form = "paper" if paper_given else "projection"
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if paper_given and projection_given:
        raise ValueError("give either the paper form's r_g/r_q or the projection form's "
                         "rho_g/rho_q, not both")
    if form == "paper" and projection_given:
        raise ValueError("rho_g/rho_q are the projection form's rates; the paper form takes r_g/r_q")
    if form == "projection" and paper_given:
        raise ValueError("r_g/r_q are the paper form's rates; the projection form takes "
                         "rho_g/rho_q (or pass form='paper')")
    gallery, query = (r_g, r_q) if form == "paper" else (rho_g, rho_q)
    g_name, q_name = RATE_NAMES[form]
    return form, {"gallery": None if gallery is None else check_rate(gallery, g_name),
                  "query": None if query is None else check_rate(query, q_name)}


def default_rate(form, bank, has_query_bank):
    """The rate of ``bank`` (``"gallery"`` or ``"query"``) when none was given."""
    if form == "paper":
        return PAPER_DEFAULTS["r_g" if bank == "gallery" else "r_q"]
    if bank == "query":
        return PROJECTION_DEFAULTS["rho_q"]
    return PROJECTION_DEFAULTS["rho_g_with_query_bank" if has_query_bank else "rho_g_alone"]


def active_banks(form, rates):
    """Indexes of the banks that enter the combination: all (paper), those with ``rho > 0``
    (projection). Empty means the identity."""
    rates = np.asarray(rates, dtype=np.float64)
    if form == "paper":
        return list(range(rates.size)) if rates.any() else []
    return [b for b in range(rates.size) if rates[b] > 0]


def item_rates(form, rate, x_dot_o, o_dot_o):
    """Per-item rate ``r_B(x)`` of one bank: ``rate`` itself (paper) or
    ``rate (x . o) / (o . o)`` (projection; 0 where ``o = 0``).

    Parameters
    ----------
    form : str
    rate : float
    x_dot_o, o_dot_o : ndarray of any shape S, float64

    Returns
    -------
    ndarray of shape S, float64
    """
    if form == "paper":
        return np.full(np.shape(x_dot_o), float(rate))
    o_dot_o = np.asarray(o_dot_o, dtype=np.float64)
    safe = np.where(o_dot_o > 0, o_dot_o, 1.0)
    return np.where(o_dot_o > 0, rate * np.asarray(x_dot_o, np.float64) / safe, 0.0)
