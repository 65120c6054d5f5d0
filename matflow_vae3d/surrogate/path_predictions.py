"""The load-path prediction file (``format = "matflow-vae3d/path-predictions"``).

One row per (VE, path), laid out like the CP path results file
(:mod:`matflow_vae3d.cp.path_results`) so that predictions and CP read the same way:

============== ====================== ===============================================
``ve_id``      (n,) str               VE id
``path_id``    (n,) str               load path id
``loadcase``   (n,) str               the path as DAMASK load.yaml text
``n_states``   (n,) int64             states of the path (increments + 1)
``t``          (n, S) float64, s      time of each state, NaN beyond n_states
``sigma``      (n, S, 3, 3) Pa        predicted mean Cauchy stress (ensemble mean)
``sigma_std``  (n, S, 3, 3) Pa        calibrated ensemble spread (0 for one model)
``F``          (n, S, 3, 3)           predicted mean deformation gradient
============== ====================== ===============================================

Root attributes: ``format``, ``format_version``, ``model`` (checkpoint path),
``model_sha256`` (of the features' VAE), ``features``, ``n_members``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..fileio import atomic_output, open_hdf5

FORMAT = "matflow-vae3d/path-predictions"
FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")


def write_path_predictions(
    path,
    ve_id: Sequence[str],
    path_id: Sequence[str],
    loadcase: Sequence[str],
    t: Sequence[np.ndarray],
    sigma: Sequence[np.ndarray],
    sigma_std: Sequence[np.ndarray],
    F: Sequence[np.ndarray],
    attrs: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write rows (each t (S_i,), sigma/sigma_std/F (S_i, 3, 3)) padded with NaN to
    the longest row. Atomic; refuses an existing file unless ``overwrite``."""
    n = len(ve_id)
    if not (len(path_id) == len(loadcase) == len(t) == len(sigma) == len(sigma_std) == len(F) == n):
        raise ValueError("every per-row sequence must have one entry per row")
    S = max((len(x) for x in t), default=1)

    def pad(rows, shape):
        out = np.full((n, S) + shape, np.nan)
        for k, r in enumerate(rows):
            out[k, : len(r)] = r
        return out

    path = Path(path)
    with atomic_output(path, overwrite) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        for k, v in attrs.items():
            f.attrs[k] = v
        f.create_dataset("ve_id", data=np.asarray(list(ve_id), dtype=object), dtype=_STR)
        f.create_dataset("path_id", data=np.asarray(list(path_id), dtype=object), dtype=_STR)
        f.create_dataset("loadcase", data=np.asarray(list(loadcase), dtype=object), dtype=_STR)
        f.create_dataset("n_states", data=np.asarray([len(x) for x in t], dtype=np.int64))
        f.create_dataset("t", data=pad(t, ()))
        f.create_dataset("sigma", data=pad(sigma, (3, 3)))
        f.create_dataset("sigma_std", data=pad(sigma_std, (3, 3)))
        f.create_dataset("F", data=pad(F, (3, 3)))
    return path


def read_path_predictions(path) -> dict[str, Any]:
    """{field: array} plus the root attributes of a path prediction file."""
    with open_hdf5(path, "path prediction file") as f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != FORMAT:
            raise ValueError(f"{path} is not a path prediction file (format {fmt!r}, expected {FORMAT!r})")
        out: dict[str, Any] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for name in ("ve_id", "path_id", "loadcase"):
            out[name] = np.array([v.decode() if isinstance(v, bytes) else v for v in f[name][:]], dtype=object)
        for name in ("n_states", "t", "sigma", "sigma_std", "F"):
            out[name] = f[name][:]
    return out
