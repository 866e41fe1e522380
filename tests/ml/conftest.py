"""Fixtures for the fraud-model tests: one generated PaySim-layout file and its split."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits

from ml.paysim import load_paysim
from ml.train import fit, time_split
from tests.ml.paysim_gen import generate


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # A few thousand rows: OpenMP threads only wait for each other, and on a busy 2-core CI
    # machine the gradient boosting's spin-waiting turned 0.7 s fits into 20 s ones.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def paysim_file(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("paysim") / "paysim.csv")


@pytest.fixture(scope="session")
def events(paysim_file):
    return load_paysim(paysim_file)


@pytest.fixture(scope="session")
def split(events):
    return time_split(events)


@pytest.fixture(scope="session")
def gbm(split):
    return fit("gbm", split.train)
