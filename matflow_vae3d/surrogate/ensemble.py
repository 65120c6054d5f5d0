"""A trained surrogate: ensemble network + target scaling + provenance, with
prediction in MPa, spread calibration and a ``weights_only``-loadable checkpoint.

Predictive distribution of an ensemble of M members at one VE and increment:
mean = average of the members' predictions (MPa); spread = their sample standard
deviation (ddof=1, MPa; 0 for M = 1). The spread is calibrated by one scalar factor
``calibration_scale`` fitted on validation VEs (:func:`fit_calibration_scale`), so
that ``mean +- 2 * scale * spread`` holds 95.45 % of held-out values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matflow_vae3d.fileio import atomic_output

from ..vae.fingerprints import check_same_input_kind, check_same_vae, recorded_input_kind
from .mlp import EnsembleMLP
from .table import Fingerprints, MinMaxScaling

CHECKPOINT_FORMAT = "matflow-vae3d/surrogate"
CHECKPOINT_VERSION = 1

#: two-sided Gaussian coverage of +-2 sigma
COVERAGE_2SIGMA = math.erf(2 / math.sqrt(2))


def coverage(y_true, mean, std, k: float = 2.0) -> float:
    """Fraction of entries with |y_true - mean| <= k * std; arrays of equal shape
    (any units, the same for all three). Entries with std == 0 and y_true == mean
    count as inside."""
    y_true, mean, std = (np.asarray(a, dtype=np.float64) for a in (y_true, mean, std))
    if not (y_true.shape == mean.shape == std.shape):
        raise ValueError(f"shapes differ: {y_true.shape}, {mean.shape}, {std.shape}")
    if y_true.size == 0:
        raise ValueError("coverage of an empty set")
    return float(np.mean(np.abs(y_true - mean) <= k * std))


def fit_calibration_scale(y_true, mean, std, k: float = 2.0, target: float = COVERAGE_2SIGMA) -> float:
    """Scalar s such that a fraction ``target`` of |y_true - mean| <= k * s * std.

    s = quantile(|z|, target) / k with z = (y_true - mean) / std over entries with
    std > 0 (arrays of equal shape, any common unit). Fitted on validation data,
    applied unchanged to test data.
    """
    y_true, mean, std = (np.asarray(a, dtype=np.float64) for a in (y_true, mean, std))
    ok = std > 0
    if not ok.any():
        raise ValueError("cannot calibrate: every predicted spread is zero (ensemble of 1?)")
    z = np.abs(y_true[ok] - mean[ok]) / std[ok]
    return float(np.quantile(z, target) / k)


def _to_plain(v):
    """numpy scalars/arrays -> python types (for a weights_only checkpoint)."""
    if isinstance(v, dict):
        return {str(k): _to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _to_plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


def load_checkpoint(path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """A checkpoint dict of format ``fmt`` written by ``torch.save``, read with
    ``weights_only=True``: FileNotFoundError for a missing file, ValueError naming the
    file for an unreadable or foreign one or one newer than ``version``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such {what}: {path}")
    from ..fileio import file_kind

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, foreign formats
        hint = file_kind(path)
        if hint:
            raise ValueError(f"{path} is not a {what}: it is {hint}") from None
        # torch's message ends in advice to load with weights_only=False: unsafe, not given
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable {what} ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        hint = file_kind(path, ckpt)
        if hint:
            raise ValueError(f"{path} is not a {what}: it is {hint}")
        got = ckpt.get("format") if isinstance(ckpt, dict) else None
        raise ValueError(f"{path}: not a {fmt!r} checkpoint (format {got!r})")
    if int(ckpt.get("format_version", 0)) > version:
        raise ValueError(
            f"{path}: checkpoint format_version {ckpt['format_version']} is newer than this code ({version})"
        )
    return ckpt


def standardize(X, input_scaling: dict[str, Any] | None):
    """Network input of fingerprints X (n, latent_dim): (X - mean) / std with the
    training rows' per-feature ``input_scaling`` {'mean', 'std'}, or X itself
    when None (the paper's raw mu). numpy in, numpy out; a tensor in, a tensor out."""
    if not input_scaling:
        return X
    if torch.is_tensor(X):
        m = torch.as_tensor(input_scaling["mean"], dtype=X.dtype, device=X.device)
        s = torch.as_tensor(input_scaling["std"], dtype=X.dtype, device=X.device)
        return (X - m) / s
    mean, std = np.asarray(input_scaling["mean"]), np.asarray(input_scaling["std"])
    return ((np.asarray(X, dtype=np.float64) - mean) / std).astype(np.float32)


class Surrogate:
    """Trained fingerprint -> stress-curve model.

    net : :class:`EnsembleMLP` over scaled outputs; scaling : :class:`MinMaxScaling`
    (MPa); meta : plain dict with at least ``latent_dim``, ``model_sha256`` (VAE of the
    training fingerprints), ``component``, ``t`` (n_states,) s, ``strain`` (n_states,),
    ``outputs`` ('non-trivial': the network predicts states 1..n and state 0 is the
    constant ``initial_value`` MPa; 'all': every state), ``calibration_scale`` (float
    or None), ``input_scaling`` (per-feature {'mean', 'std'} applied before the
    network, or None: raw inputs), ``train_ids``/``val_ids``/``test_ids``, ``config``, ``history``.
    """

    def __init__(self, net: EnsembleMLP, scaling: MinMaxScaling, meta: dict[str, Any]):
        self.net = net.eval()
        self.scaling = scaling
        self.meta = meta

    # ------------------------------------------------------------------ properties
    @property
    def latent_dim(self) -> int:
        return int(self.meta["latent_dim"])

    @property
    def model_sha256(self) -> str:
        return str(self.meta["model_sha256"])

    @property
    def inputs(self) -> str:
        """The fingerprint input the surrogate was trained on (summary, decoded, both)."""
        return str(self.meta.get("inputs", "summary"))

    @property
    def input_kind(self) -> str:
        """What the input is made of beyond the VAE (e.g. the decoded statistics' kind)."""
        return recorded_input_kind(self.meta)

    @property
    def n_members(self) -> int:
        return self.net.n_members

    @property
    def n_states(self) -> int:
        return len(self.meta["t"])

    @property
    def trained_for(self) -> dict[str, Any]:
        """What the surrogate answers for: material (name, SHA-256 of its phase YAML),
        lattice, load case, VE population (grids, VE-id prefixes), CP coarsening. A
        surrogate saved before 2026-12-07 records only the lattice and load case."""
        tf = dict(self.meta.get("trained_for") or {})
        tf.setdefault("lattice", self.meta.get("lattice", ""))
        tf.setdefault("loadcase", self.meta.get("loadcase", ""))
        return tf

    def trained_for_text(self) -> str:
        """One line: 'Mg (phase sha256 1a2b...), hP, load: ..., VEs 16x16x16 (train-s301 x 1200)'."""
        import yaml

        tf = self.trained_for
        mat = tf.get("material_name") or "material not recorded"
        if tf.get("material_sha256"):
            mat += f" (phase sha256 {tf['material_sha256'][:12]})"
        load = ""
        try:
            steps = yaml.safe_load(tf.get("loadcase") or "") or {}
            step = (steps.get("loadstep") or [{}])[0]
            bc = step.get("boundary_conditions", {}).get("mechanical", {})
            disc = step.get("discretization", {})
            load = f"dot_F {bc.get('dot_F')}, t {disc.get('t')} s in {disc.get('N')} increments".replace("'x'", "x")
        except (AttributeError, TypeError, ValueError, IndexError, yaml.YAMLError):
            load = "load case not recorded"
        pop = tf.get("population") or {}
        grids = ", ".join(pop.get("grids") or []) or "grid not recorded"
        pre = ", ".join(f"{k} x {v}" for k, v in list((pop.get("ve_id_prefixes") or {}).items())[:4])
        k = int(tf.get("cp_coarsen", 1) or 1)
        return (
            f"{mat}, {tf.get('lattice') or '?'}, {load}; VEs {grids}"
            + (f" ({pre})" if pre else "")
            + (f"; CP solved on the grid / {k}" if k > 1 else "")
        )

    def check_lattice(self, lattice: str, what: str) -> None:
        """Refuse VEs of another crystal structure than the surrogate was trained on,
        naming the way to a surrogate for them (ValueError, one line)."""
        from ..crystal import canonical_lattice

        mine = self.trained_for.get("lattice") or ""
        if mine and canonical_lattice(lattice) != canonical_lattice(mine):
            name = self.trained_for.get("material_name") or "its material"
            raise ValueError(
                f"this surrogate answers for {name} ({mine}) but {what} are {canonical_lattice(lattice)!r}: "
                f"train one for your material (vae3d generate --lattice {canonical_lattice(lattice)} ..., "
                "vae3d simulate --material YOUR_PHASE.yaml, vae3d fingerprint, vae3d train-surrogate; "
                "docs/damask_users.md)"
            )

    @property
    def calibration_scale(self) -> float | None:
        s = self.meta.get("calibration_scale")
        return None if s is None else float(s)

    # ------------------------------------------------------------------ checks
    def check_fingerprints(self, fp: Fingerprints) -> None:
        """Refuse fingerprints of another input kind, dimension or VAE (ValueError)."""
        if fp.inputs != self.inputs:
            raise ValueError(
                f"the surrogate was trained on the fingerprints' {self.inputs!r} input, "
                f"{fp.source or 'these'} were read as {fp.inputs!r}"
            )
        if fp.latent_dim != self.latent_dim:
            raise ValueError(
                f"the surrogate was trained on {self.latent_dim}-dimensional fingerprints, "
                f"{fp.source or 'these fingerprints'} are {fp.latent_dim}-dimensional"
            )
        check_same_vae(
            self.model_sha256, fp.model_sha256, "the surrogate's training fingerprints", fp.source or "these"
        )
        check_same_input_kind(
            self.input_kind, fp.input_kind, "the surrogate's training fingerprints", fp.source or "these"
        )

    # ------------------------------------------------------------------ prediction
    @torch.inference_mode()
    def predict_members(
        self, X: np.ndarray | torch.Tensor, batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Every member's curve: X (n, latent_dim) -> (M, n, n_states) MPa."""
        X = torch.as_tensor(np.asarray(X, dtype=np.float32) if not torch.is_tensor(X) else X, dtype=torch.float32)
        if X.ndim != 2 or X.shape[1] != self.latent_dim:
            raise ValueError(f"expected fingerprints of shape (n, {self.latent_dim}), got {tuple(X.shape)}")
        if not torch.isfinite(X.sum()):  # one cheap pass; NaN/inf make the sum non-finite
            bad = int((~torch.isfinite(X).all(dim=1)).sum())
            raise ValueError(f"fingerprints contain NaN/inf ({bad} row(s)) or values too large")
        X = standardize(X, self.meta.get("input_scaling"))
        n = X.shape[0]
        bs = n if not batch_size else int(batch_size)
        chunks = range(0, max(n, 1), max(bs, 1))
        if progress and len(chunks) > 1:
            from tqdm import tqdm

            chunks = tqdm(chunks, desc="predict", unit="batch")
        if n <= bs:
            s = self.net(X)
        else:
            s = torch.cat([self.net(X[i : i + bs]) for i in chunks], dim=1)
        s = s.double().numpy()  # (M, n, n_out) scaled
        y = self.scaling.inverse(s)
        if self.meta.get("outputs", "non-trivial") == "non-trivial":
            y0 = np.full(y.shape[:2] + (1,), float(self.meta.get("initial_value", 0.0)))
            y = np.concatenate([y0, y], axis=-1)
        return y

    def predict(self, X, batch_size: int | None = None, progress: bool = False, calibrated: bool = True):
        """Predictive mean and spread: X (n, latent_dim) -> (mean, std), each
        (n, n_states) MPa. std is the members' sample standard deviation times
        ``calibration_scale`` when ``calibrated`` and a scale was fitted; zeros for a
        single model."""
        y = self.predict_members(X, batch_size=batch_size, progress=progress)
        mean = y.mean(axis=0)
        std = y.std(axis=0, ddof=1) if y.shape[0] > 1 else np.zeros_like(mean)
        if calibrated and self.calibration_scale is not None:
            std = std * self.calibration_scale
        return mean, std

    def ood(self, X) -> np.ndarray:
        """(n,) out-of-population scores of fingerprint inputs X (n, latent_dim)
        (:mod:`matflow_vae3d.surrogate.ood`); NaN for a surrogate saved without its
        training inputs."""
        from .ood import ood_score

        X = np.asarray(X, dtype=np.float32)
        rec = self.meta.get("ood")
        if not rec:
            return np.full(len(X), np.nan)
        return ood_score(rec, standardize(X, self.meta.get("input_scaling")))

    @property
    def ood_threshold(self) -> float:
        from .ood import OOD_THRESHOLD

        return float((self.meta.get("ood") or {}).get("threshold", OOD_THRESHOLD))

    # ------------------------------------------------------------------ I/O
    def to_checkpoint(self) -> dict[str, Any]:
        net = self.net
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "net": {
                "latent_dim": net.latent_dim,
                "hidden": net.hidden,
                "n_out": net.n_out,
                "n_members": net.n_members,
                "negative_slope": net.negative_slope,
            },
            "scaling": self.scaling.to_dict(),
            "latent_dim": self.latent_dim,
            "model_sha256": self.model_sha256,
            "meta": _to_plain(self.meta),
        }

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the checkpoint atomically (temporary file + rename). Refuses to replace
        an existing file unless ``overwrite``."""
        path = Path(path)
        with atomic_output(path, overwrite) as tmp:
            torch.save(self.to_checkpoint(), tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Surrogate:
        """Load a checkpoint written by :meth:`save` (``torch.load(weights_only=True)``)."""
        ckpt = load_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "surrogate checkpoint")
        net = EnsembleMLP(**ckpt["net"])
        net.load_state_dict(ckpt["state_dict"])
        return cls(net, MinMaxScaling.from_dict(ckpt["scaling"]), ckpt["meta"])


PREDICTIONS_FORMAT = "matflow-vae3d/surrogate-predictions"


def read_predictions(path) -> dict[str, Any]:
    """Read a predictions file (:func:`write_predictions`): its datasets (``ve_id`` and
    ``answered_by`` as str lists) and root attributes. ValueError naming a foreign file."""
    from ..fileio import open_hdf5

    with open_hdf5(path, "predictions file") as f:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != PREDICTIONS_FORMAT:
            raise ValueError(f"{path} is not a predictions file (format {fmt!r})")
        out: dict[str, Any] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for k in f:
            d = f[k]
            out[k] = list(d.asstr()[()]) if d.dtype.kind == "O" else d[()]
    return out


def write_predictions(
    path,
    ve_id,
    mean,
    std,
    std_raw,
    surrogate: Surrogate,
    model_path: str = "",
    overwrite: bool = False,
    ood=None,
    answered_by=None,
) -> Path:
    """Write predicted curves to HDF5 (``format = matflow-vae3d/surrogate-predictions``):
    ve_id (n,) str; sigma (n, n_states) MPa, the ensemble mean; sigma_std (n, n_states)
    MPa, calibrated spread; sigma_std_raw (n, n_states) MPa, raw member spread (both 0
    for a single model); t (n_states,) s; strain (n_states,). Atomic; refuses to replace
    an existing file unless ``overwrite``."""
    import h5py

    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = PREDICTIONS_FORMAT
            f.attrs["format_version"] = 1
            f.create_dataset("ve_id", data=np.asarray(list(ve_id), dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("sigma", data=np.asarray(mean, dtype=np.float64))
            f.create_dataset("sigma_std", data=np.asarray(std, dtype=np.float64))
            f.create_dataset("sigma_std_raw", data=np.asarray(std_raw, dtype=np.float64))
            f.create_dataset("t", data=np.asarray(surrogate.meta["t"], dtype=np.float64))
            f.create_dataset("strain", data=np.asarray(surrogate.meta["strain"], dtype=np.float64))
            f.attrs["units"] = "MPa"
            f.attrs["component"] = surrogate.meta.get("component", "xx")
            f.attrs["model"] = str(model_path)
            f.attrs["model_sha256"] = surrogate.model_sha256
            f.attrs["n_members"] = surrogate.n_members
            f.attrs["calibration_scale"] = (
                np.nan if surrogate.calibration_scale is None else surrogate.calibration_scale
            )
            if ood is not None:
                f.create_dataset("ood_score", data=np.asarray(ood, dtype=np.float64))
                f.attrs["ood_threshold"] = surrogate.ood_threshold
            if answered_by is not None:
                f.create_dataset(
                    "answered_by", data=np.asarray(list(answered_by), dtype=object), dtype=h5py.string_dtype("utf-8")
                )
            f.attrs["trained_for"] = surrogate.trained_for_text()
            tf = surrogate.trained_for
            for k in ("material_name", "material_sha256", "lattice", "loadcase"):
                f.attrs[f"trained_for_{k}"] = str(tf.get(k, ""))
    return path
