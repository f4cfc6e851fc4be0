"""Texts and the by-hand check shared by the vector-store client tests (LangChain, LlamaIndex,
Haystack): small documents, reference banks of passages and questions, and InvGC applied by hand
with the dense reference."""
import numpy as np

from . import dense_reference as ref

DOCS = [
    "The harvest was plentiful in the fields of Bethlehem.",
    "A storm rose on the sea and the sailors were afraid.",
    "She gleaned barley behind the reapers until evening.",
    "The king built a temple of cedar and gold.",
    "The prophet ran away and boarded a ship to Tarshish.",
    "Bread and wine were set on the table for the guests.",
    "The shepherd counted his sheep at the gate at night.",
    "Soldiers marched to the city walls at dawn.",
    "The widow and her daughter-in-law returned to Judah.",
    "A great fish swallowed the man who fled.",
]
BANK_DOCS = [f"Passage {i}: " + t for i, t in enumerate(
    ["rain fell on the hills", "the merchant sold wool", "children played in the square",
     "the river flooded the valley", "a letter arrived from the capital", "the old man prayed",
     "the wheat was threshed", "a lamp burned through the night", "the fishermen cast nets",
     "the queen gave a feast", "the army camped by the river", "the well was deep and cold"])]
BANK_QUERIES = ["who sold wool", "where did the children play", "what flooded", "who prayed",
                "what burned all night", "who cast nets", "where did the army camp",
                "what was deep and cold", "who gave a feast", "what arrived"]
QUERIES = ["Who went to sea to flee?", "Who gathered grain after the harvesters?",
           "What happened to the city at sunrise?"]
RATES = {"r_g": 0.5, "r_q": 1.5, "pool_rate": 0.25}


def by_hand(e5, banks, docs, query, k):
    """Top-k doc texts and scores of InvGC applied by hand (dense reference)."""
    corrected = ref.invgc(e5.passage(docs), [banks["gallery_bank"], banks["query_bank"]],
                          [RATES["r_g"], RATES["r_q"]], "localadj", RATES["pool_rate"])
    scores = corrected @ e5.query(query).astype(np.float64)
    top = np.argsort(-scores)[:k]
    return [docs[i] for i in top], scores[top]
