"""The load-path CP results file (``format = "matflow-vae3d/path-results"``).

One row per (VE, load path) pair; paths differ in their number of states, so every
state array is padded with NaN to the longest path written so far (the second axis
grows when a longer path arrives) and ``n_states`` says how many are real:

============== ========================== ==================================================
``ve_id``      (n,) str                   VE id
``path_id``    (n,) str                   load path id (:mod:`matflow_vae3d.cp.loadpaths`)
``loadcase``   (n,) str                   the path as DAMASK load.yaml text
``status``     (n,) str                   'converged' or 'failed'
``reason``     (n,) str                   why it failed ('' when converged)
``n_states``   (n,) int64                 states of the path (increments + 1)
``n_converged`` (n,) int64                converged increments
``t``          (n, S) float64, s          time of each state, NaN beyond n_states
``F``          (n, S, 3, 3)               mean deformation gradient, NaN beyond n_converged
``P``          (n, S, 3, 3) Pa            mean first Piola-Kirchhoff stress
``sigma``      (n, S, 3, 3) Pa            mean Cauchy stress
``wall_s``     (n,) float64, s            solver time of the row
============== ========================== ==================================================

Root attributes: ``format``, ``format_version``, ``material`` (phase YAML), ``solver``,
``lattice``, ``coarsen`` (the factor every VE's grid was divided by before solving; 1,
or absent in older files: the VE's own grid), ``coarsen_rule``, ``n_committed``. Rows
are appended and committed as in the uniaxial CP results file
(:mod:`matflow_vae3d.cp.results`): ``n_committed`` is written last, so a killed campaign
resumes without losing or duplicating rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..fileio import open_hdf5
from .results import SimulationRecord
from .results import _attr_str as _s

FORMAT = "matflow-vae3d/path-results"
FORMAT_VERSION = 1

_STR = h5py.string_dtype("utf-8")
_SCALARS = {
    "ve_id": _STR,
    "path_id": _STR,
    "loadcase": _STR,
    "status": _STR,
    "reason": _STR,
    "n_states": np.int64,
    "n_converged": np.int64,
    "wall_s": np.float64,
}
_STATES = ("t", "F", "P", "sigma")
#: what a file without such an attribute (written before coarse CP) holds
_META_DEFAULT = {"coarsen": "1", "coarsen_rule": ""}


class PathResultsWriter:
    """Append (VE, path) rows; an existing file is resumed when its material, solver,
    lattice and coarsening agree (ValueError otherwise, the file untouched)."""

    def __init__(self, path, *, material: str, solver: str, lattice: str, coarsen: int = 1, coarsen_rule: str = ""):
        self.path = Path(path)
        meta = {
            "material": material,
            "solver": solver,
            "lattice": lattice,
            "coarsen": str(int(coarsen)),
            "coarsen_rule": str(coarsen_rule) if int(coarsen) > 1 else "",
        }
        if self.path.exists():
            with open_hdf5(self.path, "path results file") as f:
                _check_format(f, self.path)
                for k, v in meta.items():
                    if _s(f.attrs.get(k, _META_DEFAULT.get(k, ""))) != v:
                        raise ValueError(
                            f"{self.path} was written with a different {k}; refusing to append; choose another --out"
                        )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".creating")
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                for k, v in meta.items():
                    f.attrs[k] = v
                for name, dtype in _SCALARS.items():
                    f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(64,))
                for name in _STATES:
                    tail = () if name == "t" else (3, 3)
                    f.create_dataset(
                        name,
                        shape=(0, 1) + tail,
                        maxshape=(None, None) + tail,
                        dtype=np.float64,
                        chunks=(16, 8) + tail,
                        fillvalue=np.nan,
                    )
                f.attrs["n_committed"] = 0
            tmp.replace(self.path)
        self._f = h5py.File(self.path, "r+")

    @property
    def n_committed(self) -> int:
        return int(self._f.attrs["n_committed"])

    def done(self) -> set[tuple[str, str]]:
        """(ve_id, path_id) pairs already committed."""
        n = self.n_committed
        return {(_s(v), _s(p)) for v, p in zip(self._f["ve_id"][:n], self._f["path_id"][:n])}

    def append(self, record: SimulationRecord, path_id: str, loadcase: str) -> None:
        """Write ``record`` (its t, F, P, sigma over the path's states) as the next row,
        flush, then commit it."""
        n = self.n_committed
        S = len(record.t)
        row: dict[str, Any] = {
            "ve_id": str(record.ve_id),
            "path_id": str(path_id),
            "loadcase": str(loadcase),
            "status": str(record.status),
            "reason": str(record.reason or ""),
            "n_states": S,
            "n_converged": int(record.n_converged),
            "wall_s": float(record.wall_s),
        }
        if row["status"] not in ("converged", "failed"):
            raise ValueError(f"status must be 'converged' or 'failed', got {row['status']!r}")
        states = {
            "t": np.asarray(record.t, dtype=np.float64).reshape(S),
            **{k: np.asarray(getattr(record, k), dtype=np.float64).reshape(S, 3, 3) for k in ("F", "P", "sigma")},
        }
        for name, value in row.items():
            d = self._f[name]
            if d.shape[0] < n + 1:
                d.resize(n + 1, axis=0)
            d[n] = value
        for name, value in states.items():
            d = self._f[name]
            if d.shape[0] < n + 1:
                d.resize(n + 1, axis=0)
            if d.shape[1] < S:
                d.resize(S, axis=1)
            full = np.full(d.shape[1:], np.nan)
            full[:S] = value
            d[n] = full
        self._f.flush()
        self._f.attrs["n_committed"] = n + 1
        self._f.flush()

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_format(f, path) -> None:
    fmt = _s(f.attrs.get("format", ""))
    if fmt != FORMAT:
        raise ValueError(f"{path} is not a path results file (format {fmt!r}, expected {FORMAT!r})")
    if int(f.attrs.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {f.attrs['format_version']} is newer than this reader")


def read_path_results(path, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The committed rows of a path results file: {field: array} (strings as str
    arrays) plus the root attributes."""
    with open_hdf5(path, "path results file") as f:
        _check_format(f, path)
        n = int(f.attrs.get("n_committed", 0))
        names = list(fields) if fields is not None else [*_SCALARS, *_STATES]
        out: dict[str, Any] = {**_META_DEFAULT, **{k: _s(v) for k, v in f.attrs.items() if k not in ("n_committed",)}}
        out["n_committed"] = n
        out["coarsen"] = int(out["coarsen"])
        for name in names:
            if name not in f:
                raise ValueError(f"{path}: path results file lacks dataset {name!r}")
            a = f[name][:n]
            if f[name].dtype.kind == "O":
                a = np.array([_s(v) for v in a], dtype=object)
            out[name] = a
    return out
