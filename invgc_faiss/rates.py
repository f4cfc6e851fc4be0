"""The rates of the correction as one value: its form and a rate per bank, their defaults and grids.

For a gallery row ``x`` (unit) and the subtractive offset ``o_B = off_B(x)`` of bank ``B``
(:mod:`invgc_faiss.offsets`), the two forms are:

* ``"paper"`` -- Jian & Wang (2023), rates ``r_g, r_q``::

      x_B = normalize(x - r_B o_B)
      x'  = normalize(sum over every fitted bank of x_B)      (r_B = 0 contributes x itself)

* ``"projection"`` -- rates ``rho_g, rho_q``: remove the part of ``x`` along its local bank
  mean direction ``ô_B = o_B / |o_B|``::

      x_B = normalize(x - rho_B (x . ô_B) ô_B)                 (o_B = 0: x_B = x)
      x'  = normalize(sum over the banks with rho_B > 0 of x_B)   (none: x' = x)

  which is the paper's form with the per-item rate ``r_B(x) = rho_B (x . o_B) / |o_B|^2``. The
  paper's form gains only near ``r ~ (x . ô)/|o|``, a narrow peak that depends on the data; the
  projection form puts every item at that point, so one setting serves many data sets. A bank
  with ``rho_B = 0`` is left out (and not searched): "query bank only" is ``rho_g = 0``.

Every rate 0 is the identity, exactly. Banks are named ``"gallery"`` and ``"query"``; arrays of
per-bank values follow a list of those names (a correction's ``bank_names_``).

A third kind, ``"query-side"`` (rate ``rho``, on the query bank), moves the *queries* instead:
``q~ = q - rho (q . m) m`` with ``m`` the query bank's normalized mean, the gallery untouched
(:mod:`invgc_faiss.query_side`). It is not a form of the gallery correction (``InvGC`` refuses
it); :func:`invgc_faiss.tune` weighs it against the two forms.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import kernels, row_blocks
from .validation import check_rate

FORMS = ("paper", "projection")
QUERY_SIDE = "query-side"
#: What :func:`invgc_faiss.tune` weighs besides the correction's forms and the query-side one:
#: renormalization alone (:mod:`invgc_faiss.renormalization`), and the projection form fitted on
#: renormalized banks and applied to renormalized rows
RENORMALIZATION = "renormalization"
RENORMALIZED = "renormalized"
#: Every kind of rates: the gallery correction's forms and the query-side correction
KINDS = FORMS + (QUERY_SIDE,)
BANKS = ("gallery", "query")
#: The constructor's rate keywords of each kind, gallery bank first (None: no such rate)
RATE_NAMES = {"paper": ("r_g", "r_q"), "projection": ("rho_g", "rho_q"), QUERY_SIDE: (None, "rho")}
#: Defaults, chosen by the defaults study (docs/results.md, benchmarks/defaults_study.py):
#: projection, query bank only at rho_q = 1. With a gallery bank alone no untuned setting measured
#: was safe (rho_g = 1 lost 0.8 R@1 in one direction), so rho_g defaults to 0 there too (the
#: identity, with a warning). The paper form's defaults are the label-free tuner's most frequent
#: picks on the six real directions of that study.
DEFAULTS = {"projection": {"gallery": 0.0, "query": 1.0},
            "paper": {"gallery": 0.25, "query": 1.5}}
#: Default grids of the label-free tuner, per form: they reach past each form's optimum
#: (the paper form's peak lies near r ~ 1-1.5 at large pools; rho near 1)
TUNING_GRIDS = {
    "projection": {"rho_g": (0.0, 0.5, 1.0), "rho_q": (0.0, 0.5, 0.8, 0.9, 1.0, 1.1, 1.25),
                   "pool_rate": (0.05, 0.1, 0.2)},
    "paper": {"r_g": (0.0, 0.25, 0.5, 1.0, 1.5, 2.0), "r_q": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
              "pool_rate": (0.01, 0.05, 0.1, 0.2)},
    QUERY_SIDE: {"rho": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25)},
    RENORMALIZATION: {"kind": ("R1", "R2"), "sides": ("both", "query")},
    RENORMALIZED: {"kind": ("R1",), "rho_q": (0.25, 0.5, 0.75, 1.0), "pool_rate": (0.05, 0.2)},
}
#: Everything :func:`invgc_faiss.tune` weighs by default
TUNE_FORMS = KINDS + (RENORMALIZATION, RENORMALIZED)


@dataclasses.dataclass(frozen=True)
class Rates:
    """A form and its rate per bank (``None``: not given; :meth:`resolved` fills the default).

    Build it from constructor keywords with :meth:`given`; turn it back into keywords with
    :meth:`params`. Immutable: :meth:`replaced` returns a new value.
    """

    form: str = "projection"
    gallery: float | None = None
    query: float | None = None

    @classmethod
    def given(cls, form=None, *, r_g=None, r_q=None, rho_g=None, rho_q=None):
        """The rates as a constructor gets them (``None`` = not given), validated.

        The form is ``form`` if given, else ``"paper"`` when ``r_g`` or ``r_q`` is given, else
        ``"projection"``. Rates of the other form are refused with ``ValueError``."""
        paper_given = r_g is not None or r_q is not None
        projection_given = rho_g is not None or rho_q is not None
        if form is None:
            form = "paper" if paper_given else "projection"
        if form == QUERY_SIDE:
            raise ValueError("form='query-side' moves the queries, not the gallery: use "
                             "invgc_faiss.QueryCorrection with query_corrected(index, ...)")
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if paper_given and projection_given:
            raise ValueError("give either the paper form's r_g/r_q or the projection form's "
                             "rho_g/rho_q, not both")
        if form == "paper" and projection_given:
            raise ValueError("rho_g/rho_q are the projection form's rates; the paper form takes "
                             "r_g/r_q")
        if form == "projection" and paper_given:
            raise ValueError("r_g/r_q are the paper form's rates; the projection form takes "
                             "rho_g/rho_q (or pass form='paper')")
        gallery, query = (r_g, r_q) if form == "paper" else (rho_g, rho_q)
        g_name, q_name = RATE_NAMES[form]
        return cls(form, None if gallery is None else check_rate(gallery, g_name),
                   None if query is None else check_rate(query, q_name))

    @classmethod
    def query_side(cls, rho):
        """The query-side kind at rate ``rho`` (the gallery bank has no rate there)."""
        return cls(QUERY_SIDE, None, check_rate(rho, "rho"))

    @classmethod
    def identity(cls, form="projection"):
        """Every rate 0: the plain index."""
        return cls.query_side(0.0) if form == QUERY_SIDE else cls(form, 0.0, 0.0)

    def params(self):
        """Constructor keywords: ``{"form": ..., "r_g": ..., "r_q": ...}``, the ``rho`` names,
        or ``{"form": "query-side", "rho": ...}`` (rates not given are left out)."""
        names = dict(zip(BANKS, RATE_NAMES[self.form]))
        return {"form": self.form, **{names[bank]: getattr(self, bank) for bank in BANKS
                                      if getattr(self, bank) is not None}}

    def replaced(self, **rates):
        """A copy with some rates changed, given by their keywords (``rho_q=1.1``); keywords of
        the other form raise ``ValueError``."""
        names = dict(zip(RATE_NAMES[self.form], BANKS))
        wrong = [key for key in rates if key not in names]
        if wrong:
            raise ValueError(f"these rates use the {self.form} form: set "
                             f"{'/'.join(RATE_NAMES[self.form])}, not {'/'.join(wrong)}")
        return dataclasses.replace(self, **{names[key]: check_rate(value, key)
                                            for key, value in rates.items() if value is not None})

    def resolved(self, names):
        """A copy with the default rate of the form for each bank in ``names`` not given."""
        return dataclasses.replace(self, **{
            bank: DEFAULTS[self.form][bank] for bank in names if getattr(self, bank) is None})

    def of(self, names):
        """The rates of the banks ``names``, float64 (n_banks,) (a rate not given is 0)."""
        return np.array([getattr(self, bank) or 0.0 for bank in names], dtype=np.float64)

    def active(self, names):
        """Positions in ``names`` of the banks that enter the combination: all (paper, unless
        every rate is 0), those with ``rho > 0`` (projection), none (query-side: the gallery is
        not moved). Empty means the identity of the gallery."""
        rates = self.of(names)
        if self.form == QUERY_SIDE:
            return []
        if self.form == "paper":
            return list(range(rates.size)) if rates.any() else []
        return [b for b in range(rates.size) if rates[b] > 0]

    def item_rates(self, rate, x_dot_o, o_dot_o):
        """Per-item rate ``r_B(x)`` of one bank of rate ``rate``: ``rate`` itself (paper) or
        ``rate (x . o) / (o . o)`` (projection; 0 where ``o = 0``).

        Parameters
        ----------
        rate : float
        x_dot_o, o_dot_o : ndarray of any shape S, float64

        Returns
        -------
        ndarray of shape S, float64
        """
        if self.form == "paper":
            return np.full(np.shape(x_dot_o), float(rate))
        o_dot_o = np.asarray(o_dot_o, dtype=np.float64)
        safe = np.where(o_dot_o > 0, o_dot_o, 1.0)
        return np.where(o_dot_o > 0, rate * np.asarray(x_dot_o, np.float64) / safe, 0.0)

    def row_rates(self, rate, x, offsets):
        """:meth:`item_rates` of rows ``x`` and their offsets of one bank, (n, d) each;
        float64 (n,)."""
        if self.form == "paper":
            return np.full(x.shape[0], float(rate))
        x, offsets = (np.ascontiguousarray(a, np.float32) for a in (x, offsets))
        x_dot_o, o_dot_o = np.empty(x.shape[0]), np.empty(x.shape[0])
        row_blocks.map_rows(x.shape[0], lambda i, j: kernels.row_dots(
            x[i:j], offsets[i:j], x_dot_o[i:j], o_dot_o[i:j]))
        return self.item_rates(rate, x_dot_o, o_dot_o)

    def to_dict(self):
        """JSON-ready ``{"form": ..., "gallery": ..., "query": ...}`` (files keep this)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, value):
        """The inverse of :meth:`to_dict`, validated."""
        form = value.get("form")
        if form == QUERY_SIDE:
            return cls.query_side(value.get("query"))
        names = dict(zip(BANKS, RATE_NAMES.get(form, ("r_g", "r_q"))))
        return cls.given(form, **{names[bank]: value.get(bank) for bank in BANKS})
