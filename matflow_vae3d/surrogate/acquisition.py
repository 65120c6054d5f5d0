"""Active learning: rank fingerprinted but not yet simulated VEs by how unsure the
ensemble is about them, so a campaign simulates the most informative VEs next.

Score (``'spread'``, default): mean over the loaded increments (1..n) of the
calibrated ensemble spread, in MPa. ``'spread-max'``: its maximum over increments.
Higher = more informative; ties are broken by VE id so the order is deterministic.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from matflow_vae3d.fileio import atomic_output

from .ensemble import Surrogate
from .table import Fingerprints

SCORES = ("spread", "spread-max")


def acquisition_scores(surrogate: Surrogate, X: np.ndarray, score: str = "spread", batch_size: int | None = 65536):
    """Scores (n,) MPa, predicted mean and spread (n, n_states) MPa for X (n, latent_dim)."""
    if score not in SCORES:
        raise ValueError(f"unknown acquisition score {score!r}: use one of {SCORES}")
    if surrogate.n_members < 2:
        raise ValueError("acquisition by predicted spread needs an ensemble: train with --ensemble N (N >= 2)")
    mean, std = surrogate.predict(X, batch_size=batch_size)
    s = std[:, 1:]
    return (s.mean(axis=1) if score == "spread" else s.max(axis=1)), mean, std


def rank_candidates(
    surrogate: Surrogate, candidates: Fingerprints, top: int | None = None, score: str = "spread", skip_ids=None
) -> list[dict]:
    """Candidates ranked by decreasing score; rows of dicts with rank, ve_id, score_mpa,
    pred_last_mpa (mean at the last increment), spread_last_mpa. VEs in ``skip_ids``
    (default: the surrogate's training/validation/test VEs, already simulated) are left
    out. Raises ValueError for fingerprints of another VAE/dimension or none left."""
    surrogate.check_fingerprints(candidates)
    if skip_ids is None:
        skip_ids = (
            set(surrogate.meta.get("train_ids", []))
            | set(surrogate.meta.get("val_ids", []))
            | set(surrogate.meta.get("test_ids", []))
        )
    keep = np.asarray([v not in skip_ids for v in candidates.ve_id.tolist()], dtype=bool)
    if not keep.any():
        raise ValueError(f"all {len(keep)} candidate VEs were already simulated (in the surrogate's table)")
    ids = candidates.ve_id[keep]
    sc, mean, std = acquisition_scores(surrogate, candidates.mu[keep], score)
    order = sorted(range(len(ids)), key=lambda i: (-sc[i], ids[i]))
    if top is not None:
        if top < 1:
            raise ValueError(f"--top must be >= 1, got {top}")
        order = order[:top]
    return [
        {
            "rank": r + 1,
            "ve_id": ids[i],
            "score_mpa": float(sc[i]),
            "pred_last_mpa": float(mean[i, -1]),
            "spread_last_mpa": float(std[i, -1]),
        }
        for r, i in enumerate(order)
    ]


def write_ranking(rows: list[dict], path: str | Path, overwrite: bool = False) -> Path:
    """Write the ranking as CSV (atomically; refuses to replace a file unless overwrite)."""
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["rank", "ve_id", "score_mpa", "pred_last_mpa", "spread_last_mpa"])
            w.writeheader()
            for row in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path
