"""Prediction speed of the load-path surrogate: N paths of T increments (default
10,000 x 100) through the default network (PathTrainConfig's: one GRU layer of 64, 3
members, 79 features), one and two threads.

    python benchmarks/bench_predict_path.py [--n 10000] [--steps 100] [--members 3]

The weights are untrained (the cost does not depend on them); inputs are random
encoded increments. Reports the best of 3 runs after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matflow_vae3d.surrogate.path_network import PathGRU  # noqa: E402
from matflow_vae3d.surrogate.path_surrogate import PathSurrogate, PathTrainConfig  # noqa: E402
from matflow_vae3d.surrogate.path_table import N_STEP_INPUTS, N_TARGETS  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--members", type=int, default=PathTrainConfig.n_members)
    ap.add_argument("--hidden", type=int, default=PathTrainConfig.hidden)
    ap.add_argument("--layers", type=int, default=PathTrainConfig.layers)
    ap.add_argument("--features", type=int, default=79)
    ap.add_argument("--batch", type=int, default=512, help="prediction batch (predict_members' default)")
    ap.add_argument("--features-initial-only", action="store_true", help="features in the initial hidden state only")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    net = PathGRU(a.features, a.hidden, a.layers, a.members, feature_steps=not a.features_initial_only)
    meta = {
        "features": "fingerprint",
        "feature_scaling": {"mean": [0.0] * a.features, "std": [1.0] * a.features},
        "target_scale": [1.0] * N_TARGETS,
    }
    sur = PathSurrogate(net, meta)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(a.n, a.features)).astype(np.float32)
    U = rng.normal(size=(a.n, a.steps, N_STEP_INPUTS)).astype(np.float32)
    print(f"| threads | {a.n} paths x {a.steps} steps, {a.members} members (s) | per path (ms) |")
    print("|---|---|---|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sur.predict_members(X[:64], U[:64])
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            sur.predict_members(X, U, batch_size=a.batch)
            best = min(best, time.perf_counter() - t0)
        print(f"| {threads} | {best:.2f} | {1e3 * best / a.n:.3f} |")


if __name__ == "__main__":
    main()
