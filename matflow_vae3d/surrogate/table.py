"""The surrogate's training table: fingerprints joined with CP stresses by VE id.

One call, :func:`build_table`, reads what the other parts wrote (fingerprint files,
``matflow-vae3d/fingerprints``; CP result files, ``matflow-vae3d/cp-results``, through
the CP package's own reader :func:`matflow_vae3d.cp.results.read_results`; see
``docs/formats.md``), joins them by ``ve_id``, excludes failed or incomplete CP runs
and counts them with their reasons, and assigns each VE to ``train``/``val``/``test``
by a seeded hash of its id (stable when rows are added). Min-max scaling of the
targets lives in :class:`MinMaxScaling` and is stored with the model, so that
predictions come back in MPa.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: stress component name -> (i, j) index into the (3, 3) Cauchy stress.
COMPONENTS = {
    "xx": (0, 0),
    "yy": (1, 1),
    "zz": (2, 2),
    "xy": (0, 1),
    "yz": (1, 2),
    "xz": (0, 2),
    "zx": (0, 2),
    "yx": (0, 1),
    "zy": (1, 2),
}

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- readers
# CP result files are read by matflow_vae3d.cp.results.read_results and fingerprint
# files by matflow_vae3d.vae.fingerprints.read_fingerprints (one reader per format).
def _as_str_array(a) -> np.ndarray:
    """(n,) object array of python str from an h5py string dataset / sequence."""
    out = []
    for v in np.asarray(a).ravel().tolist():
        out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return np.asarray(out, dtype=object)


def _attr_str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v.item()
    return str(v)


def _check_unique(ids: np.ndarray, what: str, sources: Sequence[str] | None = None):
    """Refuse VE ids that occur more than once; with ``sources`` (the file of each id),
    name the two files of the first repeated id."""
    counts = collections.Counter(ids.tolist())
    dup = [k for k, c in counts.items() if c > 1]
    if not dup:
        return
    if sources is not None:
        where = [src for vid, src in zip(ids.tolist(), sources) if vid == dup[0]]
        raise ValueError(
            f"{what}: VE id {dup[0]!r} occurs more than once, in {where[0]} and {where[1]}; "
            "ids must be unique over all files"
        )
    raise ValueError(f"{what}: {len(dup)} VE id(s) occur more than once, e.g. {dup[:3]}; ids must be unique")


@dataclasses.dataclass
class Fingerprints:
    """Fingerprints of VEs.

    ve_id : (n,) str; mu : (n, latent_dim) float32; model_sha256 : hash of the VAE
    checkpoint (or of the feature definition for baseline features).
    """

    ve_id: np.ndarray
    mu: np.ndarray
    model_sha256: str
    latent_dim: int
    lattice: str = ""
    source: str = ""
    inputs: str = "summary"
    #: what the input is made of beyond the VAE (:func:`~matflow_vae3d.vae.fingerprints.input_kind`)
    input_kind: str = ""
    #: the VE grids of the files ('16x16x16', ...)
    grids: tuple = ()

    def __post_init__(self):
        self.ve_id = _as_str_array(self.ve_id)
        self.mu = np.asarray(self.mu, dtype=np.float32)
        if self.mu.ndim != 2 or self.mu.shape[0] != len(self.ve_id):
            raise ValueError(
                f"fingerprints: mu must have shape (n_ve={len(self.ve_id)}, latent_dim), got {self.mu.shape}"
            )
        if int(self.latent_dim) != self.mu.shape[1]:
            raise ValueError(
                f"fingerprints: attribute latent_dim={self.latent_dim} but mu has {self.mu.shape[1]} columns"
            )
        self.latent_dim = int(self.latent_dim)
        if not np.all(np.isfinite(self.mu)):
            bad = self.ve_id[~np.isfinite(self.mu).all(axis=1)]
            raise ValueError(f"fingerprints: {len(bad)} row(s) contain NaN/inf, e.g. {list(bad[:3])}")
        _check_unique(self.ve_id, "fingerprints")


def read_fingerprints(paths: str | Path | Sequence[str | Path], inputs: str = "summary") -> Fingerprints:
    """Read one or several fingerprint files (:mod:`matflow_vae3d.vae.fingerprints`,
    the format's one reader) and concatenate them. The surrogate's input is each
    file's ``inputs`` (:func:`~matflow_vae3d.vae.fingerprints.fingerprint_inputs`):
    the roll-invariant ``summary`` (for a dense VAE: mu itself), the ``decoded``
    orientation statistics of the reconstruction, or both. All files must come from
    the same VAE (``model_sha256``) and have the same width; ids must be unique over
    all files. ``inputs='auto'``: 'decoded' when every file has decoded statistics,
    else 'summary' (files of older versions, orientation-statistics files)."""
    from ..vae.fingerprints import check_same_input_kind, check_same_vae, fingerprint_inputs, input_kind
    from ..vae.fingerprints import read_fingerprints as read_file

    if isinstance(paths, (str, Path)):
        paths = [paths]
    docs = [(p, read_file(p)) for p in paths]
    if inputs == "auto":
        inputs = "decoded" if docs and all("decoded_stats" in d for _, d in docs) else "summary"
    parts = []
    for p, d in docs:
        x = fingerprint_inputs(d, inputs, p)
        parts.append(
            Fingerprints(
                ve_id=d["ve_id"],
                mu=x,
                model_sha256=_attr_str(d.get("model_sha256", "")),
                latent_dim=int(x.shape[-1]) if x.ndim == 2 else -1,
                lattice=_attr_str(d.get("lattice", "")),
                source=str(p),
                inputs=inputs,
                input_kind=input_kind(d, inputs),
                grids=("x".join(str(int(g)) for g in np.ravel(d["grid"])),) if "grid" in d else (),
            )
        )
    if not parts:
        raise ValueError("no fingerprint file given")
    first = parts[0]
    for other in parts[1:]:
        check_same_vae(first.model_sha256, other.model_sha256, f"the fingerprints of {first.source}", other.source)
        check_same_input_kind(first.input_kind, other.input_kind, f"the fingerprints of {first.source}", other.source)
        if other.latent_dim != first.latent_dim:
            raise ValueError(
                f"fingerprint files differ in latent_dim: {first.latent_dim} "
                f"({first.source}) vs {other.latent_dim} ({other.source})"
            )
    if len(parts) == 1:
        return first
    return Fingerprints(
        ve_id=np.concatenate([p.ve_id for p in parts]),
        mu=np.concatenate([p.mu for p in parts]),
        model_sha256=first.model_sha256,
        latent_dim=first.latent_dim,
        lattice=first.lattice,
        source=";".join(p.source for p in parts),
        inputs=inputs,
        input_kind=first.input_kind,
        grids=tuple(sorted({g for p in parts for g in p.grids})),
    )


@dataclasses.dataclass
class Stresses:
    """CP results (volume-averaged response of each VE).

    ve_id, status, reason : (n,) str; t : (n_states,) s; sigma : (n, n_states, 3, 3) Pa
    (NaN beyond the last converged increment); F : (n, n_states, 3, 3) or None;
    n_converged : (n,) int.
    """

    ve_id: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    t: np.ndarray
    sigma: np.ndarray
    F: np.ndarray | None = None
    n_converged: np.ndarray | None = None
    lattice: str = ""
    loadcase: str = ""
    source: str = ""
    #: the CP material: phase name and its DAMASK phase YAML
    material_name: str = ""
    material: str = ""
    #: the CP coarsening factor of the files (1: the VEs' own grids)
    coarsen: int = 1

    def __post_init__(self):
        self.ve_id = _as_str_array(self.ve_id)
        self.status = _as_str_array(self.status)
        self.reason = _as_str_array(self.reason)
        n = len(self.ve_id)
        self.t = np.asarray(self.t, dtype=np.float64).ravel()
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        if self.sigma.shape != (n, len(self.t), 3, 3):
            raise ValueError(
                f"CP results: sigma must have shape (n_ve={n}, n_states={len(self.t)}, 3, 3), got {self.sigma.shape}"
            )
        if len(self.status) != n or len(self.reason) != n:
            raise ValueError("CP results: ve_id, status and reason differ in length")
        unknown = sorted(set(self.status.tolist()) - {"converged", "failed"})
        if unknown:
            raise ValueError(f"CP results: unknown status value(s) {unknown}; expected 'converged'/'failed'")
        if self.F is not None:
            self.F = np.asarray(self.F, dtype=np.float64)
            if self.F.shape != self.sigma.shape:
                raise ValueError(f"CP results: F has shape {self.F.shape}, sigma {self.sigma.shape}")
        if self.n_converged is None:
            ok = np.isfinite(self.sigma).all(axis=(2, 3))
            self.n_converged = np.argmin(np.c_[ok, np.zeros(n, bool)], axis=1) - 1
        self.n_converged = np.asarray(self.n_converged, dtype=np.int64).ravel()
        _check_unique(self.ve_id, "CP results")

    @property
    def n_increments(self) -> int:
        """Increments of the load case (states minus the initial one)."""
        return len(self.t) - 1


def read_stresses(paths: str | Path | Sequence[str | Path]) -> Stresses:
    """Read one or several CP result files (format ``matflow-vae3d/cp-results``, with
    :func:`matflow_vae3d.cp.results.read_results`: committed rows only) and
    concatenate them. Files with different increment counts, times or load cases, and
    VE ids occurring more than once, are refused."""
    from matflow_vae3d.cp.results import read_results

    if isinstance(paths, (str, Path)):
        paths = [paths]
    parts = []
    for p in paths:
        r = read_results(p, fields=("ve_id", "status", "reason", "sigma", "F", "n_converged"))
        try:
            parts.append(
                Stresses(
                    ve_id=r["ve_id"],
                    status=r["status"],
                    reason=r["reason"],
                    t=r["t"],
                    sigma=r["sigma"],
                    F=r["F"],
                    n_converged=r["n_converged"],
                    lattice=r["lattice"],
                    loadcase=r["loadcase"],
                    source=str(p),
                    material_name=str(r.get("phase_name", "")),
                    material=str(r.get("material", "")),
                    coarsen=int(r.get("coarsen", 1)),
                )
            )
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from exc
    if not parts:
        raise ValueError("no CP result file given")
    first = parts[0]
    for other in parts[1:]:
        if len(other.t) != len(first.t):
            raise ValueError(
                f"CP result files differ in increment count: {first.n_increments} "
                f"({first.source}) vs {other.n_increments} ({other.source})"
            )
        if not np.allclose(other.t, first.t, rtol=1e-9, atol=0):
            raise ValueError(
                f"CP result files differ in the times of their increments ({first.source} vs {other.source})"
            )
        if first.loadcase and other.loadcase and other.loadcase != first.loadcase:
            raise ValueError(f"CP result files were run with different load cases ({first.source} vs {other.source})")
        if first.material and other.material and other.material != first.material:
            raise ValueError(f"CP result files were run with different materials ({first.source} vs {other.source})")
    if len(parts) == 1:
        return first
    _check_unique(
        np.concatenate([p.ve_id for p in parts]),
        "CP results",
        sources=[p.source for p in parts for _ in range(len(p.ve_id))],
    )
    hasF = all(p.F is not None for p in parts)
    return Stresses(
        ve_id=np.concatenate([p.ve_id for p in parts]),
        status=np.concatenate([p.status for p in parts]),
        reason=np.concatenate([p.reason for p in parts]),
        t=first.t,
        sigma=np.concatenate([p.sigma for p in parts]),
        F=np.concatenate([p.F for p in parts]) if hasF else None,
        n_converged=np.concatenate([p.n_converged for p in parts]),
        lattice=first.lattice,
        loadcase=first.loadcase,
        source=";".join(p.source for p in parts),
        material_name=first.material_name,
        material=first.material,
        coarsen=max(p.coarsen for p in parts),
    )


def _id_prefix(ve_id: str) -> str:
    """'train-s301' of 'train-s301-000012' (a generator preset and run seed), else the
    id without its trailing number."""
    import re

    m = re.match(r"(.+?)-\d+(?:@r\d+)?$", ve_id)
    return m.group(1) if m else ve_id


# ----------------------------------------------------------------------------- split
def split_by_id(
    ve_ids: Iterable[str], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> np.ndarray:
    """Deterministic train/val/test assignment by a seeded hash of each VE id.

    u = first 64 bits of sha256(f"{seed}:{ve_id}") / 2**64 in [0, 1): ``val`` if
    u < val_fraction, ``test`` if val_fraction <= u < val_fraction + test_fraction,
    else ``train``. A VE's split therefore depends only on its id and the seed, not on
    the other rows, so adding rows never moves existing ones. A rotated copy
    (``<ve_id>@r<k>``, :mod:`matflow_vae3d.microstructure.symmetry`) hashes its
    original's id, so it always shares its original's split. Returns (n,) str.
    """
    from ..microstructure.symmetry import base_id

    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"need 0 <= val_fraction, test_fraction and their sum < 1; got {val_fraction}, {test_fraction}"
        )
    out = []
    for vid in ve_ids:
        h = hashlib.sha256(f"{int(seed)}:{base_id(vid)}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2.0**64
        out.append("val" if u < val_fraction else "test" if u < val_fraction + test_fraction else "train")
    return np.asarray(out, dtype=object)


# ----------------------------------------------------------------------------- scaling
@dataclasses.dataclass
class MinMaxScaling:
    """Affine map of stresses (MPa) to the sigmoid's range: s = (y - lo) / (hi - lo).

    lo, hi : (n_out,) MPa. ``mode='global'`` (the paper's: one min/max over all
    values of the whole dataset) or ``'per_increment'``. ``margin`` widens [min, max] by
    that fraction of the range on each side, so that the sigmoid need not saturate to
    reproduce the extremes (0 = the paper).
    """

    lo: np.ndarray
    hi: np.ndarray
    mode: str = "global"
    margin: float = 0.0

    @classmethod
    def fit(cls, y: np.ndarray, mode: str = "global", margin: float = 0.0) -> MinMaxScaling:
        """Fit on y : (n, n_out) MPa (all rows of the table)."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[0] == 0:
            raise ValueError(f"need a non-empty (n, n_out) array to fit the scaling, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("cannot fit the scaling: targets contain NaN/inf")
        if mode == "global":
            lo = np.full(y.shape[1], y.min())
            hi = np.full(y.shape[1], y.max())
        elif mode == "per_increment":
            lo, hi = y.min(axis=0), y.max(axis=0)
        else:
            raise ValueError(f"unknown scaling mode {mode!r}: use 'global' or 'per_increment'")
        span = hi - lo
        # a constant column (e.g. a single VE) still needs a non-zero range
        span = np.where(span > 0, span, np.maximum(np.abs(hi), 1.0))
        lo = lo - margin * span
        hi = lo + (1 + 2 * margin) * span
        return cls(lo=lo, hi=hi, mode=mode, margin=float(margin))

    def __post_init__(self):
        self.lo = np.asarray(self.lo, dtype=np.float64).ravel()
        self.hi = np.asarray(self.hi, dtype=np.float64).ravel()
        if self.lo.shape != self.hi.shape or not np.all(self.hi > self.lo):
            raise ValueError("scaling needs hi > lo for every output")

    def transform(self, y):
        """MPa -> scaled units; y : (..., n_out)."""
        return (np.asarray(y, dtype=np.float64) - self.lo) / (self.hi - self.lo)

    def inverse(self, s):
        """Scaled units -> MPa; s : (..., n_out)."""
        return np.asarray(s, dtype=np.float64) * (self.hi - self.lo) + self.lo

    def to_dict(self) -> dict[str, Any]:
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist(), "mode": self.mode, "margin": self.margin}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxScaling:
        return cls(lo=d["lo"], hi=d["hi"], mode=d["mode"], margin=d["margin"])


# ----------------------------------------------------------------------------- table
@dataclasses.dataclass
class SurrogateTable:
    """Fingerprints and stress curves of the VEs that can be learned from.

    ve_id : (n,) str; X : (n, latent_dim) float32 fingerprints; Y : (n, n_states)
    float64, MPa, the chosen stress component at every state (the first is the
    initial, unloaded state); t : (n_states,) s; strain : (n_states,) nominal strain
    of the loading axis (mean F_ii - 1, NaN if F was not stored); split : (n,) str in
    train/val/test. ``excluded`` maps reason -> count, ``excluded_ids`` VE id ->
    reason, ``missing_stress`` are fingerprinted VEs without a CP result,
    ``missing_fingerprint`` CP results without a fingerprint; ``inputs`` which
    fingerprint input X holds (summary, decoded, summary+decoded).
    """

    ve_id: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    t: np.ndarray
    strain: np.ndarray
    split: np.ndarray
    component: str
    model_sha256: str
    latent_dim: int
    lattice: str = ""
    loadcase: str = ""
    excluded: dict[str, int] = dataclasses.field(default_factory=dict)
    excluded_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    missing_stress: list[str] = dataclasses.field(default_factory=list)
    missing_fingerprint: list[str] = dataclasses.field(default_factory=list)
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    inputs: str = "summary"
    input_kind: str = ""
    #: what the surrogate answers for (:meth:`provenance`)
    material_name: str = ""
    material: str = ""
    grids: tuple = ()
    coarsen: int = 1

    def __len__(self) -> int:
        return len(self.ve_id)

    @property
    def n_states(self) -> int:
        return self.Y.shape[1]

    def provenance(self) -> dict[str, Any]:
        """What a surrogate trained on this table answers for: the material (name, the
        SHA-256 of its DAMASK phase YAML), lattice, load case (YAML), the VE population
        (grids, VE-id prefixes with counts) and the CP coarsening factor."""
        from ..microstructure.symmetry import base_id

        # VEs, not rows: a rotated copy (<id>@r<k>) counts with its original
        prefixes = collections.Counter(_id_prefix(v) for v in {base_id(v) for v in self.ve_id.tolist()})
        return {
            "material_name": self.material_name,
            "material_sha256": hashlib.sha256(self.material.encode()).hexdigest() if self.material else "",
            "material_yaml": self.material,
            "lattice": self.lattice,
            "loadcase": self.loadcase,
            "population": {"grids": list(self.grids), "ve_id_prefixes": dict(prefixes.most_common(20))},
            "cp_coarsen": int(self.coarsen),
        }

    def rows(self, split: str) -> np.ndarray:
        """Indices (k,) of the rows in ``split`` ('train', 'val' or 'test')."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: use one of {SPLITS}")
        return np.flatnonzero(self.split == split)

    def summary(self) -> str:
        """Human-readable account of the join (counts and exclusion reasons)."""
        counts = {s: int((self.split == s).sum()) for s in SPLITS}
        lines = [
            f"{len(self)} VEs joined (train {counts['train']}, val {counts['val']}, "
            f"test {counts['test']}); target sigma_{self.component}, "
            f"{self.n_states} states; fingerprint input {self.inputs!r}, dim {self.latent_dim}",
        ]
        n_exc = sum(self.excluded.values())
        if n_exc:
            lines.append(f"{n_exc} CP result(s) excluded:")
            for reason, c in sorted(self.excluded.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {c:6d}  {reason}")
        if self.missing_fingerprint:
            lines.append(
                f"{len(self.missing_fingerprint)} CP result(s) without a fingerprint, "
                f"e.g. {self.missing_fingerprint[:3]}"
            )
        if self.missing_stress:
            lines.append(
                f"{len(self.missing_stress)} fingerprint(s) without a CP result, e.g. {self.missing_stress[:3]}"
            )
        return "\n".join(lines)


def build_table(
    fingerprints: Fingerprints | str | Path | Sequence[str | Path],
    stresses: Stresses | str | Path | Sequence[str | Path],
    component: str = "xx",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    inputs: str = "summary",
) -> SurrogateTable:
    """Join fingerprints and CP results by VE id into a :class:`SurrogateTable`.
    ``inputs``: which fingerprint input to read from files (:func:`read_fingerprints`).

    Excluded (and counted by reason): CP runs with status 'failed' (their recorded
    reason), runs marked converged but with fewer converged increments than the load
    case, and runs whose target contains NaN/inf. VEs present on only one side are
    listed in the table. Raises ValueError if the two sides share no id, if nothing is
    left after exclusions, or for an unknown component; the train/val/test split is
    :func:`split_by_id` with ``seed``.
    """
    if component not in COMPONENTS:
        raise ValueError(f"unknown stress component {component!r}: use one of {sorted(set(COMPONENTS))}")
    fp = fingerprints if isinstance(fingerprints, Fingerprints) else read_fingerprints(fingerprints, inputs)
    st = stresses if isinstance(stresses, Stresses) else read_stresses(stresses)
    if fp.lattice and st.lattice and fp.lattice != st.lattice:
        raise ValueError(f"fingerprints are of {fp.lattice!r} VEs but the CP results of {st.lattice!r} VEs")
    i, j = COMPONENTS[component]
    fp_index = {v: k for k, v in enumerate(fp.ve_id.tolist())}
    st_ids = set(st.ve_id.tolist())
    missing_stress = [v for v in fp.ve_id.tolist() if v not in st_ids]
    missing_fp = [v for v in st.ve_id.tolist() if v not in fp_index]
    if len(missing_fp) == len(st.ve_id):
        raise ValueError(
            f"fingerprints ({fp.source or 'in memory'}, {len(fp.ve_id)} VEs) and CP results "
            f"({st.source or 'in memory'}, {len(st.ve_id)} VEs) share no VE id, e.g. "
            f"{list(fp.ve_id[:2])} vs {list(st.ve_id[:2])}"
        )
    n_inc = st.n_increments
    excluded: collections.Counter = collections.Counter()
    excluded_ids: dict[str, str] = {}
    keep_st: list[int] = []
    keep_fp: list[int] = []
    for k, vid in enumerate(st.ve_id.tolist()):
        if vid not in fp_index:
            continue
        if st.status[k] == "failed":
            reason = f"failed: {st.reason[k] or 'no reason recorded'}"
        elif st.n_converged is not None and st.n_converged[k] < n_inc:
            reason = f"incomplete: {st.n_converged[k]} of {n_inc} increments converged"
        elif not np.all(np.isfinite(st.sigma[k, :, i, j])):
            reason = "NaN/inf in the stress target although status is 'converged'"
        else:
            keep_st.append(k)
            keep_fp.append(fp_index[vid])
            continue
        excluded[reason] += 1
        excluded_ids[vid] = reason
    if not keep_st:
        detail = "; ".join(f"{c} x {r}" for r, c in excluded.most_common())
        raise ValueError(f"no VE left to learn from after exclusions ({detail or 'nothing joined'})")
    rows_st, rows_fp = np.asarray(keep_st), np.asarray(keep_fp)
    ve_id = st.ve_id[rows_st]
    Y = st.sigma[rows_st, :, i, j] / 1e6
    if st.F is not None:
        strain = np.mean(st.F[rows_st, :, i, i], axis=0) - 1.0
    else:
        strain = np.full(len(st.t), np.nan)
    split = split_by_id(ve_id.tolist(), val_fraction, test_fraction, seed)
    return SurrogateTable(
        ve_id=ve_id,
        X=fp.mu[rows_fp],
        Y=Y,
        t=st.t.copy(),
        strain=strain,
        split=split,
        component=component,
        model_sha256=fp.model_sha256,
        latent_dim=fp.latent_dim,
        lattice=fp.lattice or st.lattice,
        loadcase=st.loadcase,
        excluded=dict(excluded),
        excluded_ids=excluded_ids,
        missing_stress=missing_stress,
        missing_fingerprint=missing_fp,
        seed=int(seed),
        val_fraction=float(val_fraction),
        test_fraction=float(test_fraction),
        inputs=fp.inputs,
        input_kind=fp.input_kind,
        material_name=st.material_name,
        material=st.material,
        grids=fp.grids,
        coarsen=st.coarsen,
    )
