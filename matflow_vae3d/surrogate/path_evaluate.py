"""Accuracy of a load-path surrogate on held-out (VE, path) rows, and its figures.

Errors are over the 6 Cauchy stress components and every real increment of a row
(the unloaded state 0 is excluded): a row's error is its mean |predicted - CP| in MPa;
the headline is the mean +- standard deviation of the row errors. ``mae_by_component``
is per Voigt component (xx, yy, zz, yz, xz, xy); ``relative_mae`` is the mean over rows
of the row error divided by the row's stress range (max - min over its increments and
components), the scale-free error of a path. ``r2`` is over all
(row, increment, component) values; ``mae_by_kind`` groups rows by path kind;
``mae_free_strain`` is the mean |error| (in 1e-3) of the deformation components the
path leaves free (those whose stress is prescribed). Trivial baseline: zero stress
(:func:`zero_prediction`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import save_figure
from .ensemble import coverage
from .path_table import N_SIGMA, VOIGT, PathTable, path_kind


def zero_prediction(table: PathTable) -> np.ndarray:
    """The constant baseline: zero stress and no deformation (n, T, N_TARGETS)."""
    return np.zeros_like(table.Y)


def path_metrics(table: PathTable, pred: np.ndarray, rows: np.ndarray, std: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of ``pred`` (n, T, N_TARGETS; sigma Pa, F - I) on ``rows`` of ``table``
    (module doc); ``std`` (same shape, calibrated spread) adds the +-2 sigma coverage."""
    rows = np.asarray(rows)
    if len(rows) == 0:
        raise ValueError("no rows to evaluate")
    m = table.mask[rows]
    y = table.Y[rows][..., :N_SIGMA] / 1e6
    p = pred[rows][..., :N_SIGMA] / 1e6
    err = np.abs(p - y)  # (r, T, 6) MPa
    per_row = (err * m[..., None]).sum(axis=(1, 2)) / (m.sum(axis=1) * N_SIGMA)
    yt, pt = y[m].ravel(), p[m].ravel()
    ss_tot = np.sum((yt - yt.mean()) ** 2)
    kinds = np.array([path_kind(pid) for pid in table.path_id[rows]])
    mask9 = table.U[rows][..., 9:18] > 0.5  # stress prescribed -> deformation free
    free = mask9 & m[..., None]
    d_err = np.abs(pred[rows][..., N_SIGMA:] - table.Y[rows][..., N_SIGMA:]) / 1e-3
    comp = (err * m[..., None]).sum(axis=(0, 1)) / m.sum()
    y_real = np.where(m[..., None], y, np.nan)
    span = np.nanmax(y_real, axis=(1, 2)) - np.nanmin(y_real, axis=(1, 2))
    out: dict[str, Any] = {
        "n_rows": int(len(rows)),
        "n_ves": int(len(set(table.ve_id[rows]))),
        "mae_mpa": float(per_row.mean()),
        "mae_mpa_sd": float(per_row.std()),
        "mae_mpa_per_row": per_row.tolist(),
        "rmse_mpa": float(np.sqrt(np.mean((pt - yt) ** 2))),
        "r2": float(1 - np.sum((pt - yt) ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
        "mae_by_component": {"xyz"[i] + "xyz"[j]: float(v) for (i, j), v in zip(VOIGT, comp)},
        "relative_mae": float(np.mean(per_row / np.maximum(span, 1e-9))),
        "mae_by_kind": {k: float(per_row[kinds == k].mean()) for k in sorted(set(kinds))},
        "rows_by_kind": {k: int((kinds == k).sum()) for k in sorted(set(kinds))},
        "mae_free_strain_1e-3": float(d_err[free].mean()) if free.any() else float("nan"),
    }
    if std is not None:
        s = std[rows][..., :N_SIGMA] / 1e6
        out["coverage_2sigma"] = coverage(yt, pt, s[m].ravel(), 2.0)
    return out


def plot_paths(table: PathTable, pred: np.ndarray, rows: np.ndarray, path, std: np.ndarray | None = None) -> Path:
    """CP (solid) vs predicted (dashed, with the +-2 sigma band) stress components
    against time for the best, median and worst of ``rows`` by row error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    met = path_metrics(table, pred, rows)
    err = np.asarray(met["mae_mpa_per_row"])
    order = np.argsort(err)
    picks = [("best", order[0]), ("median", order[len(order) // 2]), ("worst", order[-1])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    names = [f"σ_{'xyz'[i]}{'xyz'[j]}" for i, j in VOIGT]
    for ax, (label, k) in zip(axes, picks):
        r = rows[k]
        n = int(table.mask[r].sum())
        t = table.t[r, : n + 1]
        for c in range(N_SIGMA):
            y = np.r_[0.0, table.Y[r, :n, c] / 1e6]
            p = np.r_[0.0, pred[r, :n, c] / 1e6]
            if np.abs(y).max() < 1.0 and np.abs(p).max() < 1.0:
                continue  # a stress-free component: leave the panel readable
            (line,) = ax.plot(t, y, "-", lw=1.6, label=names[c])
            ax.plot(t, p, "--", color=line.get_color(), lw=1.2)
            if std is not None:
                s = np.r_[0.0, std[r, :n, c] / 1e6]
                ax.fill_between(t, p - 2 * s, p + 2 * s, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(f"{label}: {table.path_id[r]}\nVE {table.ve_id[r]}, MAE {err[k]:.2f} MPa", fontsize=8)
        ax.set_xlabel("time (s)")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Cauchy stress (MPa); CP solid, surrogate dashed")
    fig.tight_layout()
    return save_figure(fig, path)
