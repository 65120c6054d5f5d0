"""Load paths as network inputs, and the training table of the load-path surrogate.

A load path (:class:`~matflow_vae3d.cp.loadcase.LoadCase`) becomes one row of
:data:`N_STEP_INPUTS` numbers per increment (:func:`encode_loadcase`), built only
from what the user prescribes, so that a path can be predicted without running CP:

=========== ======= ===============================================================
columns     units   meaning
=========== ======= ===============================================================
0-8         1e-3    increment of each prescribed deformation component ``F_ij``
                    over the increment (0 where the stress is prescribed), row-major
9-17        --      1 where the stress component ``P_ij`` is prescribed, else 0
18-26       100 MPa prescribed ``P_ij`` (0 where the deformation is prescribed)
27          s       duration of the increment
=========== ======= ===============================================================

The targets of increment k are the state at its end: the Cauchy stress in Voigt order
:data:`VOIGT` (6, Pa) and ``F - I`` (9), so the surrogate also predicts the free
deformation components (the lateral contraction of a uniaxial test, ...).

:func:`build_path_table` joins a path results file
(:mod:`matflow_vae3d.cp.path_results`) with per-VE features (a fingerprint-format
file: VAE fingerprints or orientation statistics; or none) and assigns each row to
train/val/test by its VE id (:func:`~matflow_vae3d.surrogate.table.split_by_id`), so
held-out rows are VEs the model never saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from ..cp.loadcase import LoadCase
from .table import Fingerprints, split_by_id

N_STEP_INPUTS = 28
#: fixed input scales (module table)
DF_SCALE = 1e-3
P_SCALE = 1e8
#: Voigt order of the predicted Cauchy stress components
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
N_SIGMA = len(VOIGT)
N_TARGETS = N_SIGMA + 9


def encode_loadcase(lc: LoadCase) -> np.ndarray:
    """(n_increments, N_STEP_INPUTS) float32 network input of a load path (module doc).

    Steps given as ``F`` (a target at the step's end) are spread evenly over their
    increments from the component's value at the step's start, which must be known:
    prescribed since the start of the path (ValueError otherwise).
    """
    known = np.eye(3)  # current value of every component whose history is prescribed
    is_known = np.ones((3, 3), dtype=bool)
    rows = []
    for k, s in enumerate(lc.steps):
        mask = s.stress_mask
        prescribed = ~mask
        if s.deformation_kind == "F":
            if not is_known[prescribed].all():
                bad = np.argwhere(prescribed & ~is_known).tolist()
                raise ValueError(
                    f"load step {k}: F is prescribed at {bad} after a step that left it free; "
                    "its start value is not known before the solve: give dot_F there instead"
                )
            dF = np.where(prescribed, (np.nan_to_num(s.deformation) - known) / s.N, 0.0)
        else:
            dF = np.where(prescribed, np.nan_to_num(s.deformation) * s.t / s.N, 0.0)
        P = np.where(mask, np.nan_to_num(s.stress), 0.0)
        row = np.concatenate([dF.ravel() / DF_SCALE, mask.ravel().astype(np.float64), P.ravel() / P_SCALE, [s.t / s.N]])
        rows += [row] * s.N
        known = np.where(prescribed, known + dF * s.N, known)
        is_known &= prescribed
    return np.asarray(rows, dtype=np.float32)


def voigt(sigma: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6) in :data:`VOIGT` order."""
    return np.stack([sigma[..., i, j] for i, j in VOIGT], axis=-1)


def unvoigt(s: np.ndarray) -> np.ndarray:
    """(..., 6) in :data:`VOIGT` order -> symmetric (..., 3, 3)."""
    out = np.zeros(s.shape[:-1] + (3, 3), dtype=s.dtype)
    for c, (i, j) in enumerate(VOIGT):
        out[..., i, j] = s[..., c]
        out[..., j, i] = s[..., c]
    return out


def path_kind(path_id: str) -> str:
    """The kind in a random path's id (``p<seed>-<i>-<kind>``), else 'user'."""
    from ..cp.loadpaths import PATH_KINDS

    tail = path_id.rsplit("-", 1)[-1]
    return tail if tail in PATH_KINDS else "user"


@dataclasses.dataclass
class PathTable:
    """Rows of (VE, path) pairs ready for the sequence model.

    ve_id, path_id : (n,) str; X : (n, n_features) float32 per-VE features (n_features
    may be 0); U : (n, T, N_STEP_INPUTS) float32 inputs, 0 past a row's end; Y : (n, T,
    N_TARGETS) float64 targets (sigma Pa in Voigt order, then F - I), 0 past the end;
    mask : (n, T) bool, real increments; t : (n, T + 1) s, state times (NaN past the
    end); split : (n,) 'train' | 'val' | 'test'; features : 'fingerprint',
    'orientation' or 'none'; model_sha256 : of the features' source; excluded :
    {reason: count} of rows left out.
    """

    ve_id: np.ndarray
    path_id: np.ndarray
    loadcase: np.ndarray
    X: np.ndarray
    U: np.ndarray
    Y: np.ndarray
    mask: np.ndarray
    t: np.ndarray
    split: np.ndarray
    features: str
    model_sha256: str
    lattice: str
    material: str
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    excluded: dict[str, int] = dataclasses.field(default_factory=dict)
    inputs: str = ""
    input_kind: str = ""

    def __len__(self) -> int:
        return len(self.ve_id)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def summary(self) -> str:
        n = {s: len(self.rows(s)) for s in ("train", "val", "test")}
        ves = {s: len(set(self.ve_id[self.rows(s)])) for s in n}
        ex = ", ".join(f"{v} {k}" for k, v in self.excluded.items()) or "none"
        return (
            f"{len(self)} (VE, path) rows of {len(set(self.ve_id))} VEs, up to {self.U.shape[1]} increments; "
            f"train/val/test rows {n['train']}/{n['val']}/{n['test']} (VEs {ves['train']}/{ves['val']}/"
            f"{ves['test']}); features: {self.features} ({self.X.shape[1]}); excluded: {ex}"
        )


def build_path_table(
    results: str | Path | Sequence[str | Path],
    features: Fingerprints | None,
    feature_kind: str = "fingerprint",
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> PathTable:
    """Join path results file(s) with per-VE ``features`` (None: no microstructure
    input, ``feature_kind`` 'none'). Failed rows and rows whose VE has no features are
    left out and counted; results files must share material and lattice."""
    from ..cp.path_results import read_path_results

    if isinstance(results, (str, Path)):
        results = [results]
    if feature_kind not in ("fingerprint", "orientation", "none"):
        raise ValueError(f"feature kind must be fingerprint, orientation or none, got {feature_kind!r}")
    if (features is None) != (feature_kind == "none"):
        raise ValueError("give features exactly when the feature kind is not 'none'")
    parts = [read_path_results(p) for p in results]
    if not parts:
        raise ValueError("no path results file given")
    for p, d in zip(results[1:], parts[1:]):
        for key in ("material", "lattice"):
            if d.get(key) != parts[0].get(key):
                raise ValueError(f"{p}: {key} differs from {results[0]}'s")
    lattice = str(parts[0].get("lattice", ""))
    if features is not None and features.lattice and lattice and features.lattice != lattice:
        raise ValueError(f"features are for lattice {features.lattice}, the CP results for {lattice}")
    row_of = {} if features is None else {v: i for i, v in enumerate(features.ve_id)}
    excluded: dict[str, int] = {}
    keep: list[tuple[dict, int]] = []
    seen: set[tuple[str, str]] = set()
    for d in parts:
        for r in range(int(d["n_committed"])):
            pair = (str(d["ve_id"][r]), str(d["path_id"][r]))
            if d["status"][r] != "converged":
                excluded["failed"] = excluded.get("failed", 0) + 1
            elif features is not None and pair[0] not in row_of:
                excluded["no features"] = excluded.get("no features", 0) + 1
            elif pair in seen:
                raise ValueError(f"(VE {pair[0]}, path {pair[1]}) appears twice in the path results")
            else:
                seen.add(pair)
                keep.append((d, r))
    if not keep:
        raise ValueError(f"no usable rows (excluded: {excluded or 'none'})")
    enc = [encode_loadcase(LoadCase.from_damask(yaml.safe_load(str(d["loadcase"][r])))) for d, r in keep]
    T = max(len(e) for e in enc)
    n = len(keep)
    U = np.zeros((n, T, N_STEP_INPUTS), dtype=np.float32)
    Y = np.zeros((n, T, N_TARGETS))
    mask = np.zeros((n, T), dtype=bool)
    t = np.full((n, T + 1), np.nan)
    for k, ((d, r), e) in enumerate(zip(keep, enc)):
        m = len(e)
        if int(d["n_states"][r]) != m + 1:
            raise ValueError(f"row {d['ve_id'][r]}/{d['path_id'][r]}: {d['n_states'][r]} states for {m} increments")
        U[k, :m] = e
        Y[k, :m, :N_SIGMA] = voigt(d["sigma"][r, 1 : m + 1])
        Y[k, :m, N_SIGMA:] = (d["F"][r, 1 : m + 1] - np.eye(3)).reshape(m, 9)
        mask[k, :m] = True
        t[k, : m + 1] = d["t"][r, : m + 1]
    if not np.isfinite(Y[mask]).all():
        raise ValueError("non-finite stress or deformation in a converged row")
    ve_id = np.array([str(d["ve_id"][r]) for d, r in keep], dtype=object)
    X = (
        np.zeros((n, 0), dtype=np.float32)
        if features is None
        else features.mu[[row_of[v] for v in ve_id]].astype(np.float32)
    )
    return PathTable(
        ve_id=ve_id,
        path_id=np.array([str(d["path_id"][r]) for d, r in keep], dtype=object),
        loadcase=np.array([str(d["loadcase"][r]) for d, r in keep], dtype=object),
        X=X,
        U=U,
        Y=Y,
        mask=mask,
        t=t,
        split=split_by_id(ve_id, val_fraction, test_fraction, seed),
        features=feature_kind,
        model_sha256="" if features is None else features.model_sha256,
        lattice=lattice,
        material=str(parts[0].get("material", "")),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        excluded=excluded,
        inputs="" if features is None else features.inputs,
        input_kind="" if features is None else features.input_kind,
    )


def read_features(paths: str | Path | Sequence[str | Path], inputs: str = "auto") -> tuple[Fingerprints, str]:
    """Per-VE features from fingerprint-format file(s) (concatenated, one source) and
    their kind: 'orientation' for orientation statistics (:mod:`.baselines`), else
    'fingerprint' (a VAE's, read as ``inputs``: see
    :func:`~matflow_vae3d.surrogate.table.read_fingerprints`)."""
    from ..vae.fingerprints import read_fingerprints as read_file
    from .table import read_fingerprints

    first = paths if isinstance(paths, (str, Path)) else paths[0]
    if str(read_file(first).get("features", "")).startswith("orientation-statistics"):
        return read_fingerprints(paths, "summary"), "orientation"
    return read_fingerprints(paths, inputs), "fingerprint"
