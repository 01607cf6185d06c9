"""A trained quickstart run shared by the attack and sweep tests (trained once per session)."""

import pytest
import torch

import hydranet as hn
from hydranet.train import load_run


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """Quickstart, 3 epochs, one thread (restored after): digit accuracy about 0.88 on the test split, undefended."""
    path, threads = tmp_path_factory.mktemp("r") / "run", torch.get_num_threads()
    hn.Experiment("quickstart", {"train.epochs": 3, "train.progress": False, "train.threads": 1}).fit(path)
    torch.set_num_threads(threads)
    return load_run(path)
