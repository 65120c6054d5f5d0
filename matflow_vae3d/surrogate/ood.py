"""How unlike the training inputs an input is: the out-of-population score of a
surrogate's prediction.

The surrogate's inputs (the fingerprint's decoded statistics or summary) are
standardised per feature with the training rows' mean and std (what the network sees).
The score of an input is its mean Euclidean distance to its ``k`` nearest training
inputs, divided by the same statistic of the training inputs themselves (each against
the others, its 99th percentile): about 1 or below for an input like the training VEs,
well above for one unlike any of them. Rotated copies of a training VE (ids
``<id>@r<k>``) are kept with their originals: they are how the surrogate saw that VE.

:data:`OOD_THRESHOLD` is where `vae3d predict` warns (docs/surrogate.md "Out of
population": measured on held-out random-texture VEs and on textured ones).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: nearest training inputs averaged
K_NEAREST = 5
#: the score above which a prediction is flagged
OOD_THRESHOLD = 1.5
#: the share of training inputs whose own score is at most 1 (the scale's quantile)
SCALE_QUANTILE = 0.99


def _knn_mean(A: np.ndarray, B: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """(len(A),) mean distance of each row of A to its k nearest rows of B."""
    out = np.empty(len(A))
    for s in range(0, len(A), 512):
        a = A[s : s + 512]
        d2 = (a * a).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * a @ B.T
        d = np.sqrt(np.maximum(d2, 0.0))
        if exclude_self:
            d[np.arange(len(a)), np.arange(s, s + len(a))] = np.inf
        kk = min(k, d.shape[1] - (1 if exclude_self else 0))
        out[s : s + 512] = np.sort(d, axis=1)[:, :kk].mean(1)
    return out


def fit_ood(X_std: np.ndarray, k: int = K_NEAREST) -> dict[str, Any]:
    """The record a checkpoint stores: the standardised training inputs (float32) and the
    scale (``SCALE_QUANTILE`` of their own k-nearest mean distance). X_std: (n, D)."""
    X = np.asarray(X_std, dtype=np.float64)
    if len(X) < 2:
        raise ValueError("an out-of-population score needs at least 2 training inputs")
    own = _knn_mean(X, X, k, exclude_self=True)
    scale = float(np.quantile(own, SCALE_QUANTILE))
    return {"k": int(k), "scale": max(scale, 1e-12), "threshold": OOD_THRESHOLD, "train_inputs": X.astype(np.float32)}


def ood_score(record: dict[str, Any], X_std: np.ndarray) -> np.ndarray:
    """(n,) out-of-population scores of standardised inputs X_std (n, D)."""
    T = np.asarray(record["train_inputs"], dtype=np.float64)
    X = np.asarray(X_std, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != T.shape[1]:
        raise ValueError(f"inputs of shape {X.shape} do not match the training inputs' {T.shape[1]} features")
    return _knn_mean(X, T, int(record["k"])) / float(record["scale"])
