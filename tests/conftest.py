"""Test-wide settings.

torch runs on one thread in every test: the suite runs on 2-core CI machines, where the
embedded CP solver's and the small VAE's kernels were measured 10-15x slower with torch's
default of 2 threads under load (docs/cp_solver.md, docs/vae.md). Set before each test,
so a command that changed the thread count (e.g. `--threads 2`) does not leak into the
next test.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    torch.set_num_threads(1)
    yield
