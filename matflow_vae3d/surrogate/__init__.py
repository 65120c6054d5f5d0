"""Fingerprint -> stress-curve surrogate: training table, the paper's MLP and a deep
ensemble (Lightning), calibrated spread, active-learning acquisition, baselines and
evaluation. See docs/surrogate.md.

Modules: :mod:`.table` (join, split, scaling), :mod:`.mlp` (networks),
:mod:`.lightning` (training), :mod:`.ensemble` (trained model, prediction,
calibration, checkpoint), :mod:`.evaluate` (metrics, figures), :mod:`.acquisition`,
:mod:`.baselines`. Imports are lazy so that ``import matflow_vae3d.surrogate`` stays
cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_table": "table",
    "read_fingerprints": "table",
    "read_stresses": "table",
    "split_by_id": "table",
    "MinMaxScaling": "table",
    "SurrogateTable": "table",
    "Fingerprints": "table",
    "Stresses": "table",
    "PaperMLP": "mlp",
    "EnsembleMLP": "mlp",
    "TrainConfig": "lightning",
    "train_surrogate": "lightning",
    "Surrogate": "ensemble",
    "coverage": "ensemble",
    "fit_calibration_scale": "ensemble",
    "evaluate": "evaluate",
    "regression_metrics": "evaluate",
    "rank_candidates": "acquisition",
    "acquisition_scores": "acquisition",
    "orientation_features": "baselines",
    "mean_curve": "baselines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
