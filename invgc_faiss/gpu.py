"""GPU placement: bank top-k by faiss's GPU brute-force kNN, offsets gathered on the GPU, GPU inner indexes.

``device="gpu"`` (on :class:`~invgc_faiss.InvGC`, :class:`~invgc_faiss.InvGCIndex`,
:func:`~invgc_faiss.read_index`) needs a faiss build with GPU support (``faiss-gpu-cu12``, or
faiss from conda) and PyTorch with CUDA; without them it warns once and runs on the CPU, with the
same results. What moves to the GPU:

* Each exact LocalAdj bank: the bank rows live on the GPU; a gallery batch ``X`` (n, d) gets its
  top-k bank rows from ``faiss.bfKnn`` (GPU brute force, fp32 GEMM + k-selection, outputs left on
  the GPU) and its offsets ``off_i = (1/|F_i|) sum_{j in F_i} s_ij b_j`` and degrees
  ``deg_i = sum_j s_ij`` from one weighted gather, ``torch.nn.functional.embedding_bag`` with
  the similarities as per-sample weights: O(n x k) memory, no (n, k, d) temporary. Only the
  offsets (n, d) and degrees (n,) come back to the host, where the CPU kernel combines them.
* The inner index (``faiss.index_cpu_to_gpu``): adds and searches run on the GPU. Files written
  by :func:`~invgc_faiss.write_index` hold its CPU copy.

Approximate bank indexes (IVF, HNSW) and the full variant stay on the CPU.
"""
import faiss
import numpy as np

from .validation import warn_caller

DEVICES = ("cpu", "gpu")

_resources = None


def unavailable_reason():
    """Why the GPU path cannot run here (a sentence), or None when it can."""
    if not hasattr(faiss, "StandardGpuResources"):
        return "this faiss build has no GPU support (install faiss-gpu-cu12 instead of faiss-cpu)"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (the GPU offsets are gathered with torch)"
    if not torch.cuda.is_available():  # asked first: older faiss GPU builds abort without a driver
        return "PyTorch sees no CUDA device"
    if faiss.get_num_gpus() < 1:
        return "faiss sees no GPU"
    return None


def check_device(device):
    """``device`` if it is one of :data:`DEVICES`, else ``ValueError``."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return device


def resolve_device(device):
    """The device that will run: ``device`` itself, or ``"cpu"`` with a RuntimeWarning naming
    the reason when ``"gpu"`` cannot run here."""
    if check_device(device) == "gpu":
        reason = unavailable_reason()
        if reason is not None:
            warn_caller(f"device='gpu' asked for, but {reason}: running on the CPU (same "
                        "results, CPU speed)", RuntimeWarning)
            return "cpu"
    return device


def resources():
    """The process's one ``faiss.StandardGpuResources`` (faiss advises sharing it: it holds
    the cuBLAS handle, streams and a temporary-memory pool)."""
    global _resources
    if _resources is None:
        _resources = faiss.StandardGpuResources()
    return _resources


def is_gpu_index(index):
    """Whether ``index`` is a faiss GPU index."""
    return hasattr(faiss, "GpuIndex") and isinstance(faiss.downcast_index(index), faiss.GpuIndex)


def index_to_gpu(index):
    """A GPU copy of a CPU faiss index, on GPU 0."""
    return faiss.index_cpu_to_gpu(resources(), 0, index)


def index_to_cpu(index):
    """``index`` itself if it is a CPU index, else its CPU copy."""
    return faiss.index_gpu_to_cpu(index) if is_gpu_index(index) else index


def _pointer(tensor, cast):
    """A faiss SWIG pointer to a contiguous torch tensor's first element."""
    assert tensor.is_contiguous()
    return cast(tensor.data_ptr())


def knn(queries, bank, k):
    """Exact inner-product top-k of GPU ``queries`` (n, d) in a GPU ``bank`` (M, d), by
    ``faiss.bfKnn`` on PyTorch's current stream.

    Returns
    -------
    sims : torch.Tensor of shape (n, k), float32, on the GPU
    nbrs : torch.Tensor of shape (n, k), int64, on the GPU
    """
    import torch

    n, d = queries.shape
    sims = torch.empty((n, k), dtype=torch.float32, device=queries.device)
    nbrs = torch.empty((n, k), dtype=torch.int64, device=queries.device)
    args = faiss.GpuDistanceParams()
    args.metric = faiss.METRIC_INNER_PRODUCT
    args.k = k
    args.dims = d
    args.vectors = _pointer(bank, faiss.cast_integer_to_float_ptr)
    args.vectorsRowMajor = True
    args.vectorType = faiss.DistanceDataType_F32
    args.numVectors = bank.shape[0]
    args.queries = _pointer(queries, faiss.cast_integer_to_float_ptr)
    args.queriesRowMajor = True
    args.queryType = faiss.DistanceDataType_F32
    args.numQueries = n
    args.outDistances = _pointer(sims, faiss.cast_integer_to_float_ptr)
    args.outIndices = _pointer(nbrs, faiss.cast_integer_to_idx_t_ptr)
    args.outIndicesType = faiss.IndicesDataType_I64
    device = queries.device.index
    args.device = device
    res = resources()
    previous = res.getDefaultStream(device)
    res.setDefaultStream(device, faiss.cast_integer_to_cudastream_t(
        torch.cuda.current_stream(queries.device).cuda_stream))
    try:
        faiss.bfKnn(res, args)
    finally:
        res.setDefaultStream(device, previous)
    return sims, nbrs


def weighted_neighbour_mean(bank, sims, nbrs):
    """:func:`invgc_faiss.kernels.weighted_neighbour_mean` in torch, on any device.

    For each row ``i`` with ``F_i = {j : nbrs[i, j] >= 0}``::

        found[i]   = |F_i|
        offsets[i] = (1/|F_i|) sum_{j in F_i} sims[i, j] bank[nbrs[i, j]]     (0 if F_i is empty)
        degrees[i] = sum_{j in F_i} sims[i, j]

    Parameters
    ----------
    bank : torch.Tensor of shape (M, d), float32
    sims : torch.Tensor of shape (n, k), float32
    nbrs : torch.Tensor of shape (n, k), int64, bank rows or -1

    Returns
    -------
    offsets : torch.Tensor of shape (n, d), float32
    degrees : torch.Tensor of shape (n,), float32 (summed in float64)
    found : torch.Tensor of shape (n,), int64
    """
    import torch

    valid = nbrs >= 0
    weights = torch.where(valid, sims, torch.zeros((), dtype=sims.dtype, device=sims.device))
    rows = torch.where(valid, nbrs, torch.zeros((), dtype=nbrs.dtype, device=nbrs.device))
    found = valid.sum(dim=1)
    offsets = torch.nn.functional.embedding_bag(rows, bank, per_sample_weights=weights,
                                                mode="sum")
    offsets /= found.clamp(min=1).unsqueeze(1).to(offsets.dtype)
    degrees = weights.to(torch.float64).sum(dim=1).to(torch.float32)
    return offsets, degrees, found


class GpuBank:
    """One exact LocalAdj bank on the GPU: ``__call__`` has the contract of
    :meth:`invgc_faiss.offsets.LocalAdjOffset.__call__`.

    Parameters
    ----------
    bank : ndarray of shape (M, d), float32, unit rows
    k : int, neighbours per row
    """

    def __init__(self, bank, k):
        import torch

        self.k = k
        self.rows = torch.from_numpy(np.ascontiguousarray(bank)).to("cuda:0")

    def __call__(self, x, offsets, degrees):
        """Write ``off(x)`` into ``offsets`` (n, d) and ``deg(x)`` into ``degrees`` (n,), host
        arrays; return the neighbours found per row, int64 (n,)."""
        import torch

        queries = torch.from_numpy(x if x.flags.writeable else x.copy()).to(self.rows.device)
        sims, nbrs = knn(queries, self.rows, self.k)
        off, deg, found = weighted_neighbour_mean(self.rows, sims, nbrs)
        offsets[:] = off.cpu().numpy()
        degrees[:] = deg.cpu().numpy()
        return found.cpu().numpy()
