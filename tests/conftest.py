"""
pytest glue for the trial TestCases: run them in a scratch directory, as
trial does in _trial_temp, so that TestCase.mktemp() never writes into the
checkout.
"""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _scratch_directory(tmp_path_factory):
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("trial_temp"))
    yield
    os.chdir(old)
