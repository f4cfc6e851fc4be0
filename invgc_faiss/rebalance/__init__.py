"""Alignments of the two sides: structure-aware rebalancing and its closed-form baselines.

Structure-aware rebalancing (docs/science.md §4) and the alignment baselines it is judged
against all produce an :class:`Alignment` that :class:`invgc_faiss.InvGCIndex` applies (gallery
side before the InvGC correction, query side inside ``search``) and saves with the index.

>>> adapter = RebalancingAdapter().fit(ref_queries, ref_gallery)
>>> index = invgc_faiss.InvGCIndex(faiss.IndexFlatIP(d), gallery_bank=ref_gallery,
...                                query_bank=ref_queries, alignment=adapter)
"""
from .adapter import RebalancingAdapter
from .alignment import Alignment, IdentityAlignment, LeastSquaresAlignment, ProcrustesAlignment

#: name -> constructor of every alignment the stress test compares
ALIGNMENTS = {
    "identity": IdentityAlignment,
    "procrustes": ProcrustesAlignment,
    "lstsq": LeastSquaresAlignment,
    "itc": lambda **kw: RebalancingAdapter(w_kd=0.0, w_within=0.0, w_rep=0.0, **kw),
    "rebalance": RebalancingAdapter,
}

__all__ = ["ALIGNMENTS", "Alignment", "IdentityAlignment", "LeastSquaresAlignment",
           "ProcrustesAlignment", "RebalancingAdapter"]
