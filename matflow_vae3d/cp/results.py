"""The CP results file (``format = "matflow-vae3d/cp-results"``, see docs/formats.md).

One row per VE, appended as VEs finish: every dataset is resizable along its first
axis, the file is flushed after each row, and the root attribute ``n_committed`` is
updated last. Rows at or beyond ``n_committed`` (a row interrupted half-way) are
ignored by readers and overwritten by the next append, so a killed campaign resumes
where it stopped without losing or duplicating rows.

Resolution (version 2): the root attributes ``coarsen`` (the factor K every VE's grid
was divided by before solving, 1 = the VE's own grid) and ``coarsen_rule`` say how the
stresses were computed, and per row ``grid_run`` (3,) is the grid that was solved,
``vanished_grains`` and ``vanished_volume_fraction`` what the coarsening lost
(:mod:`matflow_vae3d.microstructure.resample`). Version-1 files read as K = 1 with
``grid_run`` 0 (not recorded) and nothing vanished, and resume as such.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..fileio import open_hdf5

if TYPE_CHECKING:
    from .loadcase import LoadCase


# -------------------------------------------------------------------------- record
# one row of the file: what both solvers return (simulate.py, damask_driver.py)
@dataclasses.dataclass
class SimulationRecord:
    """Per-increment volume averages of one simulation.

    Attributes
    ----------
    ve_id : str or None
    solver : 'builtin' or 'damask'
    status : 'converged' or 'failed'
    converged : bool
    reason : str, why it failed ('' when converged)
    t : (n_inc + 1,) s, time of each state (0 = initial state)
    F : (n_inc + 1, 3, 3) mean deformation gradient (NaN beyond n_converged)
    P : (n_inc + 1, 3, 3) Pa, mean first Piola-Kirchhoff stress
    sigma : (n_inc + 1, 3, 3) Pa, mean Cauchy stress (plain cell mean of P F^T / det F)
    n_converged : int, increments that converged
    iterations : solver iterations (per increment when the solver reports them)
    wall_s : float, s, solver wall time for this VE
    grid_run : (3,) int or None, the grid that was solved (the VE's own, or coarsened)
    coarsen : int, the coarsening factor K (1: the VE's own grid)
    vanished_grains : int, grains lost by the coarsening
    vanished_volume_fraction : float, their volume fraction in the original VE
    """

    ve_id: str | None
    solver: str
    status: str
    converged: bool
    reason: str
    t: np.ndarray
    F: np.ndarray
    P: np.ndarray
    sigma: np.ndarray
    n_converged: int
    iterations: Any = None
    wall_s: float = 0.0
    grid_run: Any = None
    coarsen: int = 1
    vanished_grains: int = 0
    vanished_volume_fraction: float = 0.0

    @property
    def sigma_xx_MPa(self) -> np.ndarray:
        """(n_inc + 1,) MPa: the tensile curve sigma_xx."""
        return self.sigma[:, 0, 0] / 1e6

    @classmethod
    def failed(
        cls, reason: str, load: LoadCase, *, ve_id=None, solver="builtin", wall_s: float = 0.0
    ) -> SimulationRecord:
        """A failure record with every state NaN (nothing was solved)."""
        n = load.n_increments + 1
        nan = np.full((n, 3, 3), np.nan)
        return cls(
            ve_id=ve_id,
            solver=solver,
            status="failed",
            converged=False,
            reason=reason,
            t=load.times(),
            F=nan.copy(),
            P=nan.copy(),
            sigma=nan.copy(),
            n_converged=0,
            iterations=None,
            wall_s=float(wall_s),
        )

    @classmethod
    def from_states(
        cls,
        load: LoadCase,
        *,
        converged: bool,
        reason: str,
        F,
        P,
        sigma,
        n_converged: int,
        iterations=None,
        wall_s: float = 0.0,
        ve_id=None,
        solver: str = "builtin",
    ) -> SimulationRecord:
        """A record from a solver's states: F, P, sigma (n_states, 3, 3) (numpy or torch,
        n_states <= n_inc + 1, padded with NaN), the states after ``n_converged`` set to
        NaN; 'converged' only when every increment converged with finite states."""
        n = load.n_increments + 1
        arrays = {}
        for name, value in (("F", F), ("P", P), ("sigma", sigma)):
            a = np.asarray(_numpy(value), dtype=np.float64).reshape(-1, 3, 3)[:n]
            full = np.full((n, 3, 3), np.nan)
            full[: len(a)] = a
            arrays[name] = full
        n_conv = int(min(int(_numpy(n_converged)), n - 1))
        for a in arrays.values():
            a[n_conv + 1 :] = np.nan
        ok = bool(converged) and n_conv == n - 1
        why = "" if ok else (str(reason or "") or f"{n_conv}/{n - 1} increments converged")
        if ok and not all(np.isfinite(a).all() for a in arrays.values()):
            ok, why = False, "solver reported convergence but the states contain NaN/inf"
        return cls(
            ve_id=ve_id,
            solver=solver,
            status="converged" if ok else "failed",
            converged=ok,
            reason=why,
            t=load.times(),
            n_converged=n_conv,
            iterations=_numpy(iterations),
            wall_s=float(wall_s or 0.0),
            F=arrays["F"],
            P=arrays["P"],
            sigma=arrays["sigma"],
        )


def _numpy(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return x


FORMAT = "matflow-vae3d/cp-results"
FORMAT_VERSION = 2

_STR = h5py.string_dtype("utf-8")
#: per-row datasets: name -> (trailing shape as a function of n_states, dtype)
_ROW_FIELDS = {
    "ve_id": (lambda n: (), _STR),
    "status": (lambda n: (), _STR),
    "reason": (lambda n: (), _STR),
    "sigma": (lambda n: (n, 3, 3), np.float64),
    "F": (lambda n: (n, 3, 3), np.float64),
    "P": (lambda n: (n, 3, 3), np.float64),
    "n_converged": (lambda n: (), np.int64),
    "wall_s": (lambda n: (), np.float64),
}
#: per-row datasets of version 2, with the value a version-1 file's rows read as
_RESOLUTION_FIELDS = {
    "grid_run": ((3,), np.int64, 0),
    "vanished_grains": ((), np.int64, 0),
    "vanished_volume_fraction": ((), np.float64, 0.0),
}
#: attributes that must agree when appending to an existing file.
_META = ("material", "loadcase", "solver", "lattice", "coarsen", "coarsen_rule")
#: what a version-1 file (no such attribute) holds
_META_DEFAULT = {"coarsen": "1", "coarsen_rule": ""}


def _check_format(f: h5py.File, path) -> None:
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        raise ValueError(f"{path} is not a CP results file (format attribute {fmt!r}, expected {FORMAT!r})")
    if int(f.attrs.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {f.attrs['format_version']} is newer than this reader ({FORMAT_VERSION})"
        )


def _attr_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class ResultsWriter:
    """Append :class:`SimulationRecord` rows to a CP results file.

    Parameters
    ----------
    path : file to create, or an existing CP results file to resume.
    t : (n_inc + 1,) s, time of each state (the load case's ``times()``).
    material, loadcase : YAML text of the phase and of the DAMASK load case.
    solver : 'builtin' or 'damask'.
    lattice : 'cF', 'cI' or 'hP'.
    coarsen, coarsen_rule : the coarsening factor every VE is solved at (1: its own
        grid) and its rule ('' for K = 1).
    extra_attrs : further root attributes (strings/numbers), written on creation.

    An existing file is reopened only when its format, ``t`` and the metadata
    agree; otherwise ValueError, and the file is left untouched.
    """

    def __init__(
        self,
        path,
        *,
        t,
        material: str,
        loadcase: str,
        solver: str,
        lattice: str,
        coarsen: int = 1,
        coarsen_rule: str = "",
        extra_attrs: dict[str, Any] | None = None,
    ):
        self.path = Path(path)
        t = np.asarray(t, dtype=np.float64)
        meta = {
            "material": material,
            "loadcase": loadcase,
            "solver": solver,
            "lattice": lattice,
            "coarsen": str(int(coarsen)),
            "coarsen_rule": str(coarsen_rule) if int(coarsen) > 1 else "",
        }
        if self.path.exists():
            if not h5py.is_hdf5(self.path):
                raise ValueError(f"{self.path} exists and is not an HDF5 file; refusing to overwrite it")
            with h5py.File(self.path, "r") as f:
                _check_format(f, self.path)
                for k, v in meta.items():
                    old = _attr_str(f.attrs.get(k, _META_DEFAULT.get(k, "")))
                    if old != v:
                        raise ValueError(
                            f"{self.path} was written with a different {k}; refusing to "
                            f"append (old {old[:200]!r}, new {v[:200]!r}); choose another --out"
                        )
                if f["t"].shape != t.shape or not np.allclose(f["t"][()], t):
                    raise ValueError(f"{self.path} holds results for different load-case times")
            self._f = h5py.File(self.path, "r+")
            self._upgrade()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".creating")
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = FORMAT_VERSION
                for k, v in meta.items():
                    f.attrs[k] = v
                for k, v in (extra_attrs or {}).items():
                    f.attrs[k] = v
                f.create_dataset("t", data=t)
                n = len(t)
                for name, (shape, dtype) in _ROW_FIELDS.items():
                    tail = shape(n)
                    f.create_dataset(name, shape=(0,) + tail, maxshape=(None,) + tail, dtype=dtype, chunks=(16,) + tail)
                for name, (tail, dtype, _) in _RESOLUTION_FIELDS.items():
                    f.create_dataset(name, shape=(0,) + tail, maxshape=(None,) + tail, dtype=dtype, chunks=(16,) + tail)
                f.attrs["n_committed"] = 0
            tmp.replace(self.path)  # the file appears complete or not at all
            self._f = h5py.File(self.path, "r+")
        self.n_states = len(t)

    def _upgrade(self) -> None:
        """A version-1 file being resumed gains the version-2 datasets, its rows filled
        with what they were (K = 1, grid not recorded, nothing vanished)."""
        f, n = self._f, int(self._f.attrs["n_committed"])
        if all(name in f for name in _RESOLUTION_FIELDS) and all(k in f.attrs for k in _META_DEFAULT):
            return
        for name, (tail, dtype, default) in _RESOLUTION_FIELDS.items():
            if name not in f:
                f.create_dataset(
                    name, data=np.full((n,) + tail, default, dtype), maxshape=(None,) + tail, chunks=(16,) + tail
                )
        for k, v in _META_DEFAULT.items():
            if k not in f.attrs:
                f.attrs[k] = v
        f.attrs["format_version"] = FORMAT_VERSION
        f.flush()

    # ------------------------------------------------------------------ state
    @property
    def n_committed(self) -> int:
        """Rows written completely."""
        return int(self._f.attrs["n_committed"])

    def done_ids(self) -> set[str]:
        """VE ids already in the file (committed rows only)."""
        n = self.n_committed
        return {_attr_str(v) for v in self._f["ve_id"][:n]}

    # ----------------------------------------------------------------- append
    def append(self, record) -> None:
        """Write one record as the next row, flush, then commit it.

        record : SimulationRecord (fields ve_id, status, reason, sigma, F, P,
            n_converged, wall_s; arrays (n_inc + 1, 3, 3)).
        """
        n = self.n_committed
        row = {
            "ve_id": str(record.ve_id),
            "status": str(record.status),
            "reason": str(record.reason or ""),
            "sigma": _states(record.sigma, self.n_states, "sigma"),
            "F": _states(record.F, self.n_states, "F"),
            "P": _states(record.P, self.n_states, "P"),
            "n_converged": int(record.n_converged),
            "wall_s": float(record.wall_s),
            "grid_run": np.asarray(record.grid_run if record.grid_run is not None else (0, 0, 0), np.int64),
            "vanished_grains": int(record.vanished_grains),
            "vanished_volume_fraction": float(record.vanished_volume_fraction),
        }
        if row["status"] not in ("converged", "failed"):
            raise ValueError(f"status must be 'converged' or 'failed', got {row['status']!r}")
        for name, value in row.items():
            d = self._f[name]
            if d.shape[0] < n + 1:
                d.resize(n + 1, axis=0)
            d[n] = value
        self._f.flush()
        self._f.attrs["n_committed"] = n + 1
        self._f.flush()

    def extend(self, records: Iterable) -> None:
        for r in records:
            self.append(r)

    def close(self) -> None:
        if self._f.id.valid:
            # drop a half-written row left by an interrupted append
            n = self.n_committed
            for name in (*_ROW_FIELDS, *_RESOLUTION_FIELDS):
                if self._f[name].shape[0] > n:
                    self._f[name].resize(n, axis=0)
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _states(a, n: int, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (n, 3, 3):
        raise ValueError(f"{name} must have shape ({n}, 3, 3), got {a.shape}")
    return a


def read_results(path, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """Read a CP results file (committed rows only).

    Returns a dict: ``ve_id``, ``status``, ``reason`` (n,) str arrays; ``t``
    (n_inc + 1,) s; ``sigma``, ``P`` (n, n_inc + 1, 3, 3) Pa; ``F`` (n, n_inc + 1,
    3, 3); ``n_converged`` (n,) int; ``wall_s`` (n,) s; ``grid_run`` (n, 3) int (0:
    not recorded), ``vanished_grains`` (n,) int, ``vanished_volume_fraction`` (n,);
    the root attributes ``material``, ``loadcase``, ``solver``, ``lattice``,
    ``coarsen_rule`` as strings and ``coarsen`` as an int.

    fields : the per-row datasets to read (default: all of them); the others are
        left out of the dict, but their presence and shape are still checked.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for
    anything else that is not a readable CP results file of this format (not HDF5,
    another ``format``, a newer ``format_version``, a dataset or ``n_committed``
    missing, or datasets of the wrong shape).
    """
    path = Path(path)
    known = [*_ROW_FIELDS, *_RESOLUTION_FIELDS]
    wanted = known if fields is None else list(fields)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown CP results field(s) {unknown}; choose from {known}")
    with open_hdf5(path, "CP results file") as f:
        _check_format(f, path)
        if "n_committed" not in f.attrs:
            raise ValueError(f"{path}: CP results file lacks the root attribute 'n_committed'")
        n = int(f.attrs["n_committed"])
        for name in ("t", *_ROW_FIELDS):
            if not isinstance(f.get(name), h5py.Dataset):
                raise ValueError(f"{path}: CP results file lacks dataset {name!r}")
        if f["t"].ndim != 1:
            raise ValueError(f"{path}: dataset 't' must be 1-D, got shape {f['t'].shape}")
        n_states = f["t"].shape[0]
        out: dict[str, Any] = {"t": f["t"][()]}
        for name, (shape, _) in _ROW_FIELDS.items():
            d = f[name]
            if d.ndim < 1 or d.shape[0] < n or d.shape[1:] != shape(n_states):
                raise ValueError(
                    f"{path}: dataset {name!r} has shape {d.shape}, expected at least "
                    f"n_committed={n} rows of shape {shape(n_states)}"
                )
            if name not in wanted:
                continue
            if h5py.check_string_dtype(d.dtype) is not None:
                out[name] = np.array(d.asstr()[:n], dtype=str)
            else:
                out[name] = d[:n]
        for name, (tail, dtype, default) in _RESOLUTION_FIELDS.items():
            if name not in wanted:
                continue
            if name in f:
                d = f[name]
                if d.shape[0] < n or d.shape[1:] != tail:
                    raise ValueError(f"{path}: dataset {name!r} has shape {d.shape}, expected {n} rows of {tail}")
                out[name] = d[:n]
            else:  # version 1
                out[name] = np.full((n,) + tail, default, dtype)
        for k in _META:
            out[k] = _attr_str(f.attrs.get(k, _META_DEFAULT.get(k, "")))
        out["coarsen"] = int(out["coarsen"])
        out["phase_name"] = _attr_str(f.attrs.get("phase_name", ""))
    return out


__all__ = ["FORMAT", "FORMAT_VERSION", "ResultsWriter", "read_results"]


def compact_copy(src, dst) -> Path:
    """Copy the committed rows of a CP results file to ``dst`` with gzip + shuffle
    compression (the same format: readers and resuming writers accept it). For
    shipping a reference set; ``dst`` is written atomically."""
    from ..fileio import atomic_output

    with open_hdf5(src, "CP results file") as f, atomic_output(dst) as tmp, h5py.File(tmp, "w") as g:
        _check_format(f, src)
        n = int(f.attrs["n_committed"])
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for name in f:
            d = f[name]
            if name == "t":
                g.create_dataset("t", data=d[()])
                continue
            tail = d.shape[1:]
            g.create_dataset(
                name,
                data=d[:n],
                maxshape=(None,) + tail,
                chunks=(min(max(n, 1), 256),) + tail,
                compression="gzip",
                compression_opts=6,
                shuffle=True,
            )
    return Path(dst)
