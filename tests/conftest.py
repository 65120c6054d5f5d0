"""Test-wide settings.

torch runs on one thread: the suite runs on 2-core CI machines, where the embedded CP
solver's small batched kernels were measured 15x slower with torch's default of 2
threads under load (docs/cp_solver.md).
"""

import torch

torch.set_num_threads(1)
