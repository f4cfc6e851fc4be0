"""invgc-faiss: drop-in faiss indexes that apply InvGC (inverse graph convolution) at add time.

>>> index = invgc_faiss.InvGCIndex(faiss.IndexFlatIP(d), query_bank=Bq)
>>> index.add(xb); D, I = index.search(xq, 10)
"""
from .correction import InvGC
from .index import InvGCIndex, index_factory
from .knob_check import KnobReport, check_knobs
from .persistence import read_index, write_index
from .query_side import QueryCorrection, query_corrected
from .rates import Rates
from .renormalization import Renormalization, renormalized_queries
from .rerank import InvGCRerankIndex
from .streaming import add_in_batches, transform_in_batches
from .tuning import TuneResult, tune

__version__ = "0.7.0"

__all__ = ["InvGC", "InvGCIndex", "InvGCRerankIndex", "KnobReport", "QueryCorrection", "Rates",
           "Renormalization", "TuneResult", "add_in_batches", "check_knobs", "index_factory",
           "query_corrected", "read_index", "renormalized_queries", "transform_in_batches",
           "tune", "write_index", "__version__"]
