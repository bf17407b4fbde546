"""DVAE tests run many tiny ops: one torch thread avoids oversubscribing a shared machine."""

import pytest


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
