"""Saving and loading an :class:`InvGCIndex` with everything its correction needs.

File layout (format version 1)::

    b"INVGCFAISS"                      10-byte magic
    uint32 little-endian               header length h
    h bytes                            JSON header: format_version, parameters, id mode,
                                       payload length and SHA-256
    payload                            an .npz archive (no pickles): the inner faiss index bytes,
                                       stored ids, per-item columns, the banks, and the bank search
                                       indexes that are not the default exact flat one, and
                                       the alignment's side matrices if the index has one

An alignment comes back as a plain :class:`invgc_faiss.rebalance.Alignment` with the same
matrices (so the same searches); the header keeps its name and fitting parameters.

Writing is atomic: a temporary file in the target folder is written, flushed, fsync'ed and
renamed over the target, and the folder is fsync'ed, so a crash leaves either the old file or the
new one. Reading checks the magic, the version and the payload's SHA-256, so a truncated,
bit-flipped or foreign file raises ``ValueError`` instead of loading wrong data.

``faiss.write_index(index, path)`` also works on an InvGCIndex (it is an IndexIDMap2): that file
holds the corrected vectors and ids and is read back by stock faiss as a plain IndexIDMap2, without
the correction (so later adds would not be corrected).
"""
import hashlib
import io
import json
import os
import struct

import faiss
import numpy as np

from . import gpu
from .atomic import write_atomically
from .correction import InvGC
from .index import InvGCIndex
from .rebalance import Alignment
from .rerank import InvGCRerankIndex

MAGIC = b"INVGCFAISS"
FORMAT_VERSION = 1


def _is_default_bank_index(bank_index):
    return type(faiss.downcast_index(bank_index)) is faiss.IndexFlatIP


def _payload_arrays(index):
    correction = index.correction
    arrays = {"inner": faiss.serialize_index(gpu.index_to_cpu(index.index)),
              "ids": index.stored_ids()}
    for name, column in index.items.columns.items():
        arrays[f"item_{name}"] = column
    for name, off in zip(correction.bank_names_, correction.offsets_):
        arrays[f"bank_{name}"] = off.bank
        bank_index = getattr(off, "bank_index", None)
        if bank_index is not None and not _is_default_bank_index(bank_index):
            arrays[f"bank_index_{name}"] = faiss.serialize_index(bank_index)
    if correction.gallery_mean_ is not None:
        arrays["gallery_mean"] = correction.gallery_mean_
    if index.alignment is not None:
        for side, matrix in index.alignment.matrices().items():
            arrays[f"alignment_{side}"] = matrix
    return arrays


def _alignment_header(alignment):
    if alignment is None:
        return None
    get_params = getattr(alignment, "get_params", None)
    return {"name": alignment.name, "d": alignment.d_,
            "params": get_params() if get_params is not None else {}}


def write_index(index, path):
    """Write ``index`` (an :class:`InvGCIndex`) to ``path`` atomically.

    Parameters
    ----------
    index : InvGCIndex or InvGCRerankIndex
    path : str or os.PathLike
    """
    if not isinstance(index, InvGCIndex):
        raise TypeError(
            f"write_index takes an InvGCIndex, got {type(index).__name__}; use faiss.write_index "
            "for plain faiss indexes"
        )
    buffer = io.BytesIO()
    np.savez(buffer, **_payload_arrays(index))
    payload = buffer.getvalue()
    header = json.dumps({
        "format_version": FORMAT_VERSION,
        "params": index.correction.get_params(),
        "bank_names": index.correction.bank_names_,
        "keep_originals": index.keep_originals,
        "sequential_ids": index.sequential_ids,
        "alignment": _alignment_header(index.alignment),
        "mode": "rerank" if isinstance(index, InvGCRerankIndex) else "baked",
        "rerank": ({"k_factor": index.k_factor, "offset_dtype": index.offset_dtype,
                    "rates": index.rates.tolist()} if isinstance(index, InvGCRerankIndex) else None),
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "faiss_version": faiss.__version__,
    }).encode("utf-8")
    write_atomically(path, [MAGIC, struct.pack("<I", len(header)), header, payload])


def _read_checked(path):
    """Header dict and payload bytes of a file written by :func:`write_index`, integrity-checked."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not an invgc-faiss index file (bad magic)")
    start = len(MAGIC) + 4
    if len(data) < start:
        raise ValueError(f"{path} is truncated (no header)")
    (header_len,) = struct.unpack("<I", data[len(MAGIC):start])
    try:
        header = json.loads(data[start:start + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has a corrupt header: {exc}") from None
    if not isinstance(header, dict) or header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {header.get('format_version') if isinstance(header, dict) else '?'}"
            f", this library reads {FORMAT_VERSION}"
        )
    payload = data[start + header_len:]
    if len(payload) != header.get("payload_bytes"):
        raise ValueError(
            f"{path} is truncated or padded: payload has {len(payload)} bytes, header says "
            f"{header.get('payload_bytes')}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise ValueError(f"{path} is corrupt: payload checksum mismatch")
    return header, payload


def read_index(path, device="cpu"):
    """Read an :class:`InvGCIndex` written by :func:`write_index`.

    ``device="gpu"`` puts the inner index and the exact banks on the GPU (as the constructor's
    ``device``; files never store the device, so an index written from a GPU loads on a CPU-only
    machine). Raises ``ValueError`` for a file that is not one, is truncated, corrupt, or of
    another format version. Search results of the loaded index equal those of the saved one.
    """
    path = os.fspath(path)
    device = gpu.resolve_device(device)
    header, payload = _read_checked(path)
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    names = header["bank_names"]
    bank_indexes = {f"{name}_bank_index": faiss.deserialize_index(arrays[f"bank_index_{name}"])
                    for name in names if f"bank_index_{name}" in arrays}
    # files from before bank sampling had a default: whole banks
    correction = InvGC(**{"max_bank_size": None, **header["params"]}, **bank_indexes,
                       device=device)
    correction.fit(**{f"{name}_bank": arrays[f"bank_{name}"] for name in names},
                   all_banks=header.get("mode") == "rerank")
    if "gallery_mean" in arrays:
        correction.fit_gallery_mean(arrays["gallery_mean"])
    columns = {key[len("item_"):]: arrays[key] for key in arrays if key.startswith("item_")}
    rerank = header.get("rerank")
    cls, extra = ((InvGCRerankIndex, {"k_factor": rerank["k_factor"],
                                      "offset_dtype": rerank["offset_dtype"]})
                  if header.get("mode") == "rerank" else (InvGCIndex, {}))
    aligned = header.get("alignment")
    if aligned is not None:
        extra["alignment"] = Alignment(arrays.get("alignment_query"), arrays.get("alignment_gallery"),
                                       d=aligned["d"], name=aligned["name"])
    inner = faiss.deserialize_index(arrays["inner"])
    index = cls.restore(
        gpu.index_to_gpu(inner) if device == "gpu" else inner, arrays["ids"], correction,
        keep_originals=header["keep_originals"], columns=columns,
        sequential_ids=header["sequential_ids"], **extra,
    )
    if rerank is not None:
        index.rates = np.array(rerank["rates"], dtype=np.float64)
    return index
