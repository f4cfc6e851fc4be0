"""What a benchmark ran on, for the head of every result file: CPU model, cores, the BLAS library
and kernel numpy uses (threadpoolctl's report), numpy, faiss and numba versions, and the
OPENBLAS_* settings in force.

    from machine import describe
    print(describe())
"""
import os
import platform


def cpu_model():
    """The CPU's model name (/proc/cpuinfo), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_kernels():
    """``prefix version kernel threads`` of every BLAS library loaded (numpy's and faiss's)."""
    import faiss  # noqa: F401  (loads faiss's own BLAS, reported beside numpy's)
    import numpy  # noqa: F401
    import threadpoolctl

    return [f"{lib.get('prefix')} {lib.get('version')} kernel={lib.get('architecture')} "
            f"threads={lib.get('num_threads')}"
            for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]


def describe():
    """One line per fact, each starting with ``# ``."""
    import faiss
    import numba
    import numpy

    settings = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    lines = [f"cpu: {cpu_model()} ({os.cpu_count()} cores)",
             f"python {platform.python_version()}, numpy {numpy.__version__}, "
             f"faiss {faiss.__version__}, numba {numba.__version__}",
             *(f"blas: {k}" for k in blas_kernels()),
             f"env: {settings or 'no OPENBLAS_* set'}"]
    return "\n".join(f"# {line}" for line in lines)


if __name__ == "__main__":
    print(describe())
