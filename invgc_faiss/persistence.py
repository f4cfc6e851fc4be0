"""Saving and loading an :class:`InvGCIndex` with everything its correction needs.

File layout (format version 1)::

    b"INVGCFAISS"                      10-byte magic
    uint32 little-endian               header length h
    h bytes                            JSON header: format_version, the correction's
                                       parameters, bank names, id mode, the index's mode
                                       ("baked" or "rerank") and what that mode keeps (the
                                       alignment's name; rerank's k_factor, offset dtype and
                                       rates), payload length and SHA-256
    payload                            an .npz archive (no pickles): the inner faiss index bytes,
                                       stored ids, per-item columns, the banks, the bank search
                                       indexes that are not the default exact flat one, and
                                       the alignment's side matrices if the index has one

Format 2 added the correction's ``fixed_rates`` and writes rerank rates as a value
(:meth:`invgc_faiss.rates.Rates.to_dict`). Format 3 (this version) keeps rerank mode's
``candidates``, its axis ``m`` and the per-item ``x . m`` (:mod:`invgc_faiss.rerank`). Files of
formats 1 and 2 load as before; their rerank indexes search raw candidates (they keep no
``x . m``).

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
from .base import InvGCBase
from .correction import InvGC
from .index import InvGCIndex
from .rerank import InvGCRerankIndex

MAGIC = b"INVGCFAISS"
FORMAT_VERSION = 3
READS = (1, 2, 3)
MODES = {"baked": InvGCIndex, "rerank": InvGCRerankIndex}


def _is_default_bank_index(bank_index):
    return type(faiss.downcast_index(bank_index)) is faiss.IndexFlatIP


def _payload_arrays(index):
    arrays = {"inner": faiss.serialize_index(gpu.index_to_cpu(index.index)),
              "ids": index.stored_ids()}
    for name, column in index.items.columns.items():
        arrays[f"item_{name}"] = column
    return {**arrays, **_correction_arrays(index.correction)}


def _correction_arrays(correction):
    """The banks (samples), the bank search indexes that are not the default, the gallery
    mean: what refitting a correction needs beyond its parameters."""
    arrays = {}
    for name, off in zip(correction.bank_names_, correction.offsets_):
        arrays[f"bank_{name}"] = off.bank
        bank_index = getattr(off, "bank_index", None)
        if bank_index is not None and not _is_default_bank_index(bank_index):
            arrays[f"bank_index_{name}"] = faiss.serialize_index(bank_index)
    if correction.gallery_mean_ is not None:
        arrays["gallery_mean"] = correction.gallery_mean_
    return arrays


def write_index(index, path):
    """Write ``index`` (an :class:`InvGCIndex` or :class:`InvGCRerankIndex`) to ``path``
    atomically.

    Parameters
    ----------
    index : InvGCIndex or InvGCRerankIndex
    path : str or os.PathLike
    """
    mode = next((mode for mode, cls in MODES.items() if type(index) is cls), None)
    if not isinstance(index, InvGCBase) or mode is None:
        raise TypeError(
            f"write_index takes an InvGCIndex or InvGCRerankIndex, got {type(index).__name__}; use "
            "faiss.write_index for plain faiss indexes"
        )
    state, state_arrays = index._file_state()
    header = {"keep_originals": index.keep_originals, "sequential_ids": index.sequential_ids,
              "mode": mode, **state}
    write_atomically(path, _framed(index.correction, header,
                                   {**_payload_arrays(index), **state_arrays}))


def correction_bytes(correction):
    """A fitted :class:`InvGC` as bytes (the file format, ``mode`` "correction"): what a store
    keeps beside its table so that a reopened store corrects later rows the same way."""
    return b"".join(_framed(correction, {"mode": "correction"}, _correction_arrays(correction)))


def correction_from_bytes(data, device="cpu", what="correction"):
    """The :class:`InvGC` of :func:`correction_bytes`, refitted on its banks; ``ValueError`` for
    bytes that are not one (``what`` names them in the message)."""
    header, payload = _checked(bytes(data), what)
    if header.get("mode") != "correction":
        raise ValueError(f"{what} holds an index, not a correction: use read_index")
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return _refitted(header, arrays, gpu.resolve_device(device), InvGC)


def _framed(correction, fields, arrays):
    """Magic, header length, JSON header (the correction's parameters and bank names, then
    ``fields``) and the .npz payload of ``arrays``, as a list of bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    header = json.dumps({
        "format_version": FORMAT_VERSION,
        "params": correction.get_params(),
        "bank_names": correction.bank_names_,
        **fields,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "faiss_version": faiss.__version__,
    }).encode("utf-8")
    return [MAGIC, struct.pack("<I", len(header)), header, payload]


def _read_checked(path):
    """Header dict and payload bytes of a file written by :func:`write_index`, integrity-checked."""
    with open(path, "rb") as f:
        data = f.read()
    return _checked(data, path)


def _checked(data, path):
    """Header dict and payload bytes of :func:`_framed` bytes, integrity-checked; ``path`` names
    them in errors."""
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
    version = header.get("format_version") if isinstance(header, dict) else "?"
    if version not in READS:
        raise ValueError(f"{path} has format version {version}, this library reads "
                         f"{', '.join(map(str, READS))}")
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
    """Read an index written by :func:`write_index`.

    ``device="gpu"`` puts the inner index and the exact banks on the GPU (as the constructor's
    ``device``; files never store the device, so an index written from a GPU loads on a CPU-only
    machine). Raises ``ValueError`` for a file that is not one, is truncated, corrupt, or of
    another format version. Search results of the loaded index equal those of the saved one.
    """
    path = os.fspath(path)
    device = gpu.resolve_device(device)
    header, payload = _read_checked(path)
    if header.get("mode") == "correction":
        raise ValueError(f"{path} holds a correction, not an index: use correction_from_bytes")
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    cls = MODES[header.get("mode", "baked")]
    correction = _refitted(header, arrays, device, cls)
    columns = {key[len("item_"):]: arrays[key] for key in arrays if key.startswith("item_")}
    inner = faiss.deserialize_index(arrays["inner"])
    index = cls.restore(
        gpu.index_to_gpu(inner) if device == "gpu" else inner, arrays["ids"], correction,
        keep_originals=header["keep_originals"], columns=columns,
        sequential_ids=header["sequential_ids"], **cls._restore_kwargs(header, arrays))
    index._restore_state(header, arrays)
    return index


def _refitted(header, arrays, device, cls):
    """The correction of a file's header and arrays, fitted again on its banks (``cls``: what
    the file holds, for the defaults of files older than a parameter)."""
    names = header["bank_names"]
    bank_indexes = {f"{name}_bank_index": faiss.deserialize_index(arrays[f"bank_index_{name}"])
                    for name in names if f"bank_index_{name}" in arrays}
    # defaults of files written before a parameter existed: whole banks (before bank sampling),
    # every bank checked in rerank mode (before fixed_rates), exact products (before n_components)
    params = {"max_bank_size": None, "fixed_rates": cls is not InvGCRerankIndex,
              "n_components": None, **header["params"]}
    correction = InvGC(**params, **bank_indexes, device=device)
    correction.fit(**{f"{name}_bank": arrays[f"bank_{name}"] for name in names})
    if "gallery_mean" in arrays:
        correction.fit_gallery_mean(arrays["gallery_mean"])
    return correction
