"""Accuracy of a surrogate on held-out VEs: metrics and figures.

Error definitions (states 1..n; the unloaded state 0 is excluded everywhere, its
stress is 0 by construction):

- ``mse_scaled``: mean squared error in the model's min-max scaled units (the
  training loss, comparable with the paper's MSE).
- per increment k: ``mae_mpa[k]`` = mean over VEs of |predicted - true| (MPa) and
  ``sd_mpa[k]`` its standard deviation over VEs; ``rel_pct[k]`` = mean over VEs of
  100 |predicted - true| / |true| and ``rel_pct_sd[k]``.
- headline ``mae_mpa_mean +- mae_mpa_sd``: mean and standard deviation over the
  increments of ``mae_mpa[k]``. We read the paper's "mean relative error 2.75 +- 0.46
  MPa across increments" this way (an error in MPa is an absolute error).
- ``r2``: coefficient of determination over all (VE, increment) values;
  ``r2_per_increment[k]`` over VEs at each increment.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import save_figure
from ..vae.fingerprints import check_same_input_kind, check_same_vae
from .ensemble import COVERAGE_2SIGMA, coverage


def _r2(y_true: np.ndarray, y_pred: np.ndarray, axis=None):
    ss_res = np.sum((y_true - y_pred) ** 2, axis=axis)
    ss_tot = np.sum((y_true - np.mean(y_true, axis=axis, keepdims=axis is not None)) ** 2, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, scaling=None, first: int = 1) -> dict[str, Any]:
    """Metrics of predicted vs true curves, y_* : (n, n_states) MPa (see module doc).

    ``scaling`` (a :class:`MinMaxScaling` over states ``first..``) gives ``mse_scaled``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)[:, first:]
    y_pred = np.asarray(y_pred, dtype=np.float64)[:, first:]
    if y_true.shape != y_pred.shape or y_true.shape[0] == 0:
        raise ValueError(f"need equal non-empty shapes, got {y_true.shape} and {y_pred.shape}")
    err = np.abs(y_pred - y_true)
    mae_k = err.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = 100 * err / np.abs(y_true)
    rel = np.where(np.isfinite(rel), rel, np.nan)
    out: dict[str, Any] = {
        "n_ve": int(y_true.shape[0]),
        "mae_mpa": mae_k.tolist(),
        "sd_mpa": err.std(axis=0).tolist(),
        "rel_pct": np.nanmean(rel, axis=0).tolist(),
        "rel_pct_sd": np.nanstd(rel, axis=0).tolist(),
        "r2_per_increment": np.atleast_1d(_r2(y_true, y_pred, axis=0)).tolist(),
        "mae_mpa_mean": float(mae_k.mean()),
        "mae_mpa_sd": float(mae_k.std()),
        "abs_err_all_mean": float(err.mean()),
        "abs_err_all_sd": float(err.std()),
        "rel_pct_mean": float(np.nanmean(rel)),
        "rel_pct_sd_all": float(np.nanstd(rel)),
        "r2": float(_r2(y_true.ravel(), y_pred.ravel())),
        "rmse_mpa": float(np.sqrt(np.mean((y_pred - y_true) ** 2))),
    }
    if scaling is not None:
        d = scaling.transform(y_pred) - scaling.transform(y_true)
        out["mse_scaled"] = float(np.mean(d**2))
    return out


def calibration_metrics(y_true, mean, std_raw, scale: float | None, first: int = 1) -> dict[str, Any]:
    """Coverage of +-2 sigma before (raw ensemble spread) and after recalibration
    (spread x ``scale``), and a reliability curve: for k in 0..3, the observed fraction
    inside +-k sigma vs the Gaussian 2 Phi(k) - 1. Arrays (n, n_states) MPa."""
    y, m, s = (np.asarray(a, dtype=np.float64)[:, first:] for a in (y_true, mean, std_raw))
    ks = np.linspace(0, 3, 31)
    nominal = [math.erf(k / math.sqrt(2)) for k in ks]
    out = {
        "nominal_2sigma": COVERAGE_2SIGMA,
        "coverage_2sigma_raw": coverage(y, m, s, 2.0),
        "mean_spread_raw_mpa": float(s.mean()),
        "k": ks.tolist(),
        "nominal": nominal,
        "observed_raw": [coverage(y, m, s, k) for k in ks],
        "calibration_scale": scale,
    }
    if scale is not None:
        out["coverage_2sigma_calibrated"] = coverage(y, m, s * scale, 2.0)
        out["observed_calibrated"] = [coverage(y, m, s * scale, k) for k in ks]
        out["mean_spread_calibrated_mpa"] = float((s * scale).mean())
    return out


# ----------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _xaxis(strain: np.ndarray, n_states: int):
    strain = np.asarray(strain, dtype=np.float64)
    if strain.shape == (n_states,) and np.all(np.isfinite(strain)):
        return 100 * strain, "nominal strain (%)"
    return np.arange(n_states), "increment"


def plot_curves(ve_id, y_true, mean, std, strain, path, component="xx") -> Path:
    """True vs predicted curves of the best, median and worst VEs by mean absolute
    error (y_true, mean, std : (n, n_states) MPa; std may be None)."""
    plt = _plt()
    err = np.abs(mean[:, 1:] - y_true[:, 1:]).mean(axis=1)
    order = np.argsort(err)
    picks = [("best", order[0]), ("median", order[len(order) // 2]), ("worst", order[-1])]
    x, xlabel = _xaxis(strain, y_true.shape[1])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=120, sharey=True)
    for ax, (name, i) in zip(axes, picks):
        ax.plot(x, y_true[i], "k.-", label="CP")
        ax.plot(x, mean[i], "C1--", label="surrogate")
        if std is not None and np.any(std[i] > 0):
            ax.fill_between(
                x, mean[i] - 2 * std[i], mean[i] + 2 * std[i], color="C1", alpha=0.25, lw=0, label="+-2 sigma"
            )
        ax.set_title(f"{name}: {ve_id[i]} (MAE {err[i]:.2f} MPa)", fontsize=9)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel(f"sigma_{component} (MPa)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_error_per_increment(metrics: dict[str, Any], path) -> Path:
    """Mean absolute error per increment +- its standard deviation over VEs, in MPa
    and in % (as the paper's Fig. 9)."""
    plt = _plt()
    k = np.arange(1, len(metrics["mae_mpa"]) + 1)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120)
    m, s = np.asarray(metrics["mae_mpa"]), np.asarray(metrics["sd_mpa"])
    a1.errorbar(k, m, yerr=s, fmt="o-", ms=3, capsize=2)
    a1.axhline(
        metrics["mae_mpa_mean"],
        color="k",
        lw=0.8,
        ls=":",
        label=f"mean over increments {metrics['mae_mpa_mean']:.2f} MPa",
    )
    a1.set_xlabel("increment")
    a1.set_ylabel("|predicted - true| (MPa)")
    a1.legend(fontsize=8)
    m, s = np.asarray(metrics["rel_pct"]), np.asarray(metrics["rel_pct_sd"])
    a2.errorbar(k, m, yerr=s, fmt="o-", ms=3, capsize=2, color="C2")
    a2.set_xlabel("increment")
    a2.set_ylabel("|predicted - true| / |true| (%)")
    from matplotlib.ticker import MaxNLocator

    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"error per increment, {metrics['n_ve']} held-out VEs", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_calibration(cal: dict[str, Any], y_true, mean, std_raw, path) -> Path:
    """Reliability diagram (observed vs nominal coverage of +-k sigma) before and after
    recalibration, and |error| vs predicted spread."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=120)
    a1.plot([0, 1], [0, 1], "k:", lw=0.8)
    a1.plot(
        cal["nominal"],
        cal["observed_raw"],
        "o-",
        ms=3,
        label=f"raw spread (2 sigma: {100 * cal['coverage_2sigma_raw']:.1f} %)",
    )
    if cal.get("observed_calibrated") is not None:
        a1.plot(
            cal["nominal"],
            cal["observed_calibrated"],
            "s-",
            ms=3,
            label=f"x {cal['calibration_scale']:.2f} (2 sigma: {100 * cal['coverage_2sigma_calibrated']:.1f} %)",
        )
    a1.set_xlabel("nominal coverage of +-k sigma (Gaussian)")
    a1.set_ylabel("observed fraction inside")
    a1.legend(fontsize=8)
    s = np.asarray(std_raw)[:, 1:].ravel()
    e = np.abs(np.asarray(mean) - np.asarray(y_true))[:, 1:].ravel()
    a2.loglog(np.maximum(s, 1e-6), np.maximum(e, 1e-6), ".", ms=2, alpha=0.4)
    lim = [max(min(s.min(), e.min()), 1e-4), max(s.max(), e.max())]
    a2.plot(lim, [2 * lim[0], 2 * lim[1]], "k:", lw=0.8, label="|error| = 2 x spread")
    a2.set_xlabel("ensemble spread, raw (MPa)")
    a2.set_ylabel("|predicted - true| (MPa)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_parity(y_true, mean, path, component="xx") -> Path:
    """Predicted vs true stress at the last increment."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.8, 3.6), dpi=120)
    a, b = y_true[:, -1], mean[:, -1]
    ax.plot(a, b, ".", ms=4)
    lim = [min(a.min(), b.min()), max(a.max(), b.max())]
    ax.plot(lim, lim, "k:", lw=0.8)
    ax.set_xlabel(f"CP sigma_{component}, last increment (MPa)")
    ax.set_ylabel("surrogate (MPa)")
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- driver
EVAL_SPLITS = ("heldout", "test", "val", "train", "all")


def select_rows(surrogate, table, split: str = "heldout") -> np.ndarray:
    """Row indices of ``table`` to evaluate on, by the ids stored in the model:
    'heldout' = neither trained on nor used for early stopping/calibration (the
    model's test VEs plus VEs it never saw), 'test', 'val', 'train' or 'all'."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {EVAL_SPLITS}")
    ids = table.ve_id.tolist()
    meta = surrogate.meta
    if split == "all":
        return np.arange(len(ids))
    if split == "heldout":
        seen = set(meta.get("train_ids", [])) | set(meta.get("val_ids", []))
        return np.asarray([i for i, v in enumerate(ids) if v not in seen], dtype=int)
    chosen = set(meta.get(f"{split}_ids", []))
    return np.asarray([i for i, v in enumerate(ids) if v in chosen], dtype=int)


def check_compatible(surrogate, table) -> None:
    """Refuse a table the model cannot be compared with (ValueError)."""
    if table.n_states != surrogate.n_states:
        raise ValueError(
            f"the surrogate predicts {surrogate.n_states} states ({surrogate.n_states - 1} "
            f"increments) but the CP results have {table.n_states} ({table.n_states - 1} "
            "increments)"
        )
    if table.component != surrogate.meta.get("component", table.component):
        raise ValueError(f"the surrogate predicts sigma_{surrogate.meta['component']}, not sigma_{table.component}")
    if table.inputs != surrogate.inputs:
        raise ValueError(f"the surrogate reads the {surrogate.inputs!r} input, the table holds {table.inputs!r}")
    check_same_input_kind(surrogate.input_kind, table.input_kind, "the surrogate's training inputs", "the table's")
    if table.latent_dim != surrogate.latent_dim:
        raise ValueError(
            f"the surrogate was trained on {surrogate.latent_dim}-dimensional fingerprints, "
            f"these are {table.latent_dim}-dimensional"
        )
    check_same_vae(surrogate.model_sha256, table.model_sha256, "the surrogate's training fingerprints", "these")


def evaluate(
    surrogate, table, split: str = "heldout", out_dir=None, baseline_curve: np.ndarray | None = None
) -> dict[str, Any]:
    """Metrics (and, with ``out_dir``, figures) of ``surrogate`` on ``table``'s rows of
    ``split`` (see :func:`select_rows`). ``baseline_curve`` (n_states,) MPa, e.g. the
    training mean curve, is scored on the same rows for reference."""
    check_compatible(surrogate, table)
    rows = select_rows(surrogate, table, split)
    if len(rows) == 0:
        raise ValueError(
            f"no VE of the {split!r} split in this table ({len(table)} VEs); try --split all or pass other files"
        )
    first = 1 if surrogate.meta.get("outputs", "non-trivial") == "non-trivial" else 0
    y = table.Y[rows]
    members = surrogate.predict_members(table.X[rows])
    mean = members.mean(axis=0)
    std_raw = members.std(axis=0, ddof=1) if members.shape[0] > 1 else None
    scale = surrogate.calibration_scale
    res: dict[str, Any] = {
        "split": split,
        "n_ve": int(len(rows)),
        "n_members": surrogate.n_members,
        "component": table.component,
    }
    if first == 1:
        res["metrics"] = regression_metrics(y, mean, surrogate.scaling, first=1)
    else:  # the paper's 21 outputs: MSE over all of them, errors over the loaded states
        res["metrics"] = regression_metrics(y, mean, None, first=1)
        res["metrics"]["mse_scaled"] = float(
            np.mean((surrogate.scaling.transform(mean) - surrogate.scaling.transform(y)) ** 2)
        )
    if std_raw is not None:
        res["calibration"] = calibration_metrics(y, mean, std_raw, scale)
    if baseline_curve is None and surrogate.meta.get("train_mean_curve") is not None:
        baseline_curve = np.asarray(surrogate.meta["train_mean_curve"])
    if baseline_curve is not None:
        base = np.broadcast_to(np.asarray(baseline_curve), y.shape)
        res["baseline_mean_curve"] = regression_metrics(y, base, None, first=1)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        std_plot = None if std_raw is None else std_raw * (scale or 1.0)
        plot_curves(table.ve_id[rows], y, mean, std_plot, table.strain, out_dir / "curves.png", table.component)
        plot_error_per_increment(res["metrics"], out_dir / "error_per_increment.png")
        plot_parity(y, mean, out_dir / "parity.png", table.component)
        if std_raw is not None:
            plot_calibration(res["calibration"], y, mean, std_raw, out_dir / "calibration.png")
    return res


def summary_lines(res: dict[str, Any]) -> list[str]:
    """Human-readable summary of :func:`evaluate`'s result."""
    m = res["metrics"]
    lines = [
        f"{res['n_ve']} VEs ({res['split']}), {res['n_members']} member(s), sigma_{res['component']}",
        f"MSE (scaled units)              {m.get('mse_scaled', float('nan')):.3e}",
        f"MAE per increment, mean +- sd   {m['mae_mpa_mean']:.3f} +- {m['mae_mpa_sd']:.3f} MPa "
        f"(paper: 2.75 +- 0.46 MPa)",
        f"|error| over all values         {m['abs_err_all_mean']:.3f} +- {m['abs_err_all_sd']:.3f} MPa",
        f"relative error                  {m['rel_pct_mean']:.2f} +- {m['rel_pct_sd_all']:.2f} %",
        f"R^2                             {m['r2']:.4f}",
    ]
    if "baseline_mean_curve" in res:
        b = res["baseline_mean_curve"]
        lines.append(
            f"baseline (training mean curve)  {b['mae_mpa_mean']:.3f} +- {b['mae_mpa_sd']:.3f} MPa, R^2 {b['r2']:.4f}"
        )
    if "calibration" in res:
        c = res["calibration"]
        s = f"+-2 sigma coverage              raw {100 * c['coverage_2sigma_raw']:.1f} %"
        if c.get("coverage_2sigma_calibrated") is not None:
            s += f", x{c['calibration_scale']:.2f} (fitted on val) {100 * c['coverage_2sigma_calibrated']:.1f} %"
        lines.append(s + f" (nominal {100 * c['nominal_2sigma']:.1f} %)")
    return lines


def per_increment_csv(res: dict[str, Any], strain, path) -> Path:
    """Per-increment metrics as CSV: increment, strain, MAE/SD MPa, relative %, R^2."""
    m = res["metrics"]
    strain = np.asarray(strain, dtype=np.float64)
    with open(path, "w") as f:
        f.write("increment,strain,mae_mpa,sd_mpa,rel_pct,rel_pct_sd,r2\n")
        for k in range(len(m["mae_mpa"])):
            e = strain[k + 1] if len(strain) > k + 1 else float("nan")
            f.write(
                f"{k + 1},{e:.6g},{m['mae_mpa'][k]:.6g},{m['sd_mpa'][k]:.6g},"
                f"{m['rel_pct'][k]:.6g},{m['rel_pct_sd'][k]:.6g},"
                f"{m['r2_per_increment'][k]:.6g}\n"
            )
    return Path(path)
