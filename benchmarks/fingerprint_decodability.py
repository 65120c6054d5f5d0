"""Why the fingerprint loses to orientation statistics: how much of the orientation
statistics a linear model reads off the fingerprint summary, on held-out VEs.

    python benchmarks/fingerprint_decodability.py FP.h5 ORIENT.h5

FP.h5: fingerprints (``vae3d fingerprint``); ORIENT.h5: orientation statistics of the
same VEs (``surrogate/baselines.py``, the uniaxial x features). Ridge regression on the
standardised fingerprint (70 % of the VEs by id hash, seed 0), R² on the other 30 %,
per feature group: the loading-axis (x) histogram in the crystal frame (what sets the
Schmid factors under the paper's load case), the Euler-angle histograms, the grain
size. R² = 0 is the training mean.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matflow_vae3d.surrogate.table import read_fingerprints, split_by_id  # noqa: E402


def main(fp_path: str, orient_path: str) -> None:
    fp, ori = read_fingerprints(fp_path), read_fingerprints(orient_path)
    idx = {v: i for i, v in enumerate(ori.ve_id)}
    keep = [k for k, v in enumerate(fp.ve_id) if v in idx]
    X = fp.mu[keep].astype(np.float64)
    Y = ori.mu[[idx[fp.ve_id[k]] for k in keep]].astype(np.float64)
    split = split_by_id(fp.ve_id[keep], 0.0, 0.3, 0)
    tr, te = split == "train", split == "test"
    Xs = (X - X[tr].mean(0)) / (X[tr].std(0) + 1e-12)
    ym = Y[tr].mean(0)
    n_axis = Y.shape[1] - 1 - 24  # 8 Euler bins x 3 angles, then the grain size
    groups = {"loading-axis histogram": slice(0, n_axis), "Euler-angle histograms": slice(n_axis, -1)}
    groups["log mean grain size"] = slice(Y.shape[1] - 1, Y.shape[1])
    print(f"{len(keep)} VEs ({tr.sum()} fit / {te.sum()} held out), fingerprint width {X.shape[1]}")
    print("| ridge lambda | " + " | ".join(f"R² {g}" for g in groups) + " |")
    print("|---|" + "---|" * len(groups))
    for lam in (1.0, 10.0, 100.0):
        W = np.linalg.solve(Xs[tr].T @ Xs[tr] + lam * np.eye(X.shape[1]), Xs[tr].T @ (Y[tr] - ym))
        P = Xs[te] @ W + ym
        r2 = 1 - ((P - Y[te]) ** 2).sum(0) / ((Y[te] - ym) ** 2).sum(0)
        print(f"| {lam:g} | " + " | ".join(f"{r2[s].mean():.3f}" for s in groups.values()) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
