"""VEs -> predicted stress-strain curves, fingerprinting on the way.

A surrogate knows the VAE whose fingerprints it was trained on (``model_sha256``,
the hash of that VAE's checkpoint file). :func:`find_vae` returns that VAE (a path
the user gives, or a shipped pretrained one with the same hash), and
:func:`predict_ves` encodes a VE dataset with it (the fingerprint file format's own
writer and reader, :mod:`matflow_vae3d.vae.fingerprints`) and predicts. VEs of
another crystal structure or grid than the VAE's are refused by the VAE's own check
(:func:`matflow_vae3d.vae.checkpoint.check_compatible`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import save_figure

#: shipped surrogates: name -> (file, VAE lattice). Mg 16³ on the paper's load case
#: (uniaxial tension along x to 1 % in 20 increments), trained on the fingerprints of
#: the shipped hP VAE (docs/surrogate.md, "The pretrained surrogate").
PRETRAINED_SURROGATES = {"Mg": "surrogate_Mg_grid16.pt"}


def pretrained_surrogate_path(material: str = "Mg") -> Path:
    """Path of the shipped surrogate for ``material`` (only 'Mg')."""
    from importlib.resources import files

    if material not in PRETRAINED_SURROGATES:
        raise ValueError(
            f"no pretrained surrogate is shipped for {material!r} "
            f"(only {', '.join(PRETRAINED_SURROGATES)}): train one with `vae3d train-surrogate`"
        )
    return Path(str(files("matflow_vae3d") / "data" / "pretrained" / PRETRAINED_SURROGATES[material]))


def find_vae(surrogate, vae=None) -> tuple[Any, dict]:
    """The VAE that made ``surrogate``'s training fingerprints: ``vae`` (a checkpoint
    path, checked against the surrogate's hash) or, when None, the shipped pretrained
    VAE with that hash. Returns (model, meta) as :func:`vae.checkpoint.load_model`.
    ValueError naming both hashes when they differ or no shipped VAE matches."""
    from ..vae import PRETRAINED_LATTICES, pretrained_path
    from ..vae.checkpoint import file_sha256, load_model

    want = surrogate.model_sha256
    if vae is not None:
        got = file_sha256(vae)
        if got != want:
            raise ValueError(
                f"the surrogate was trained on fingerprints of VAE {want[:16]}..., "
                f"but {vae} is VAE {got[:16]}...: give the VAE it was trained with"
            )
        return load_model(vae)
    for lat in PRETRAINED_LATTICES:
        p = Path(str(pretrained_path(lat)))
        if p.is_file() and file_sha256(p) == want:
            return load_model(p)
    raise ValueError(
        f"the surrogate was trained on fingerprints of VAE {want[:16]}..., which is not a "
        "shipped pretrained VAE: pass the VAE checkpoint it was trained with (--vae)"
    )


def predict_ves(
    surrogate,
    data,
    *,
    vae=None,
    fingerprints_out=None,
    batch_size: int = 32,
    device="cpu",
    progress: bool = False,
    label: str | None = None,
) -> dict[str, Any]:
    """Fingerprint the VE dataset ``data`` with the surrogate's VAE and predict.

    Returns {'ve_id' (n,), 'mean', 'std' (calibrated), 'std_raw' (n, n_states) MPa,
    'fingerprints' (path of the fingerprint file, or None when it was temporary),
    'fingerprint_s', 'predict_s' (wall seconds of each step)}.
    """
    from ..datasets import VEDataset
    from ..vae.encode import fingerprint_dataset
    from .table import read_fingerprints

    with VEDataset(str(data)) as ds:
        surrogate.check_lattice(ds.lattice, f"the VEs of {label or Path(data).name}")
    model, meta = find_vae(surrogate, vae)
    with tempfile.TemporaryDirectory(prefix="vae3d-predict-") as tmp:
        fp_path = Path(fingerprints_out) if fingerprints_out else Path(tmp) / "fingerprints.h5"
        t0 = time.perf_counter()
        fingerprint_dataset(
            model, meta, data, fp_path, batch_size=batch_size, device=device, progress=progress, label=label
        )
        t1 = time.perf_counter()
        fp = read_fingerprints(fp_path, surrogate.inputs)
        surrogate.check_fingerprints(fp)
        t2 = time.perf_counter()
        mean, std_raw = surrogate.predict(fp.mu, calibrated=False)
        ood = surrogate.ood(fp.mu)
        t3 = time.perf_counter()
    std = std_raw * (surrogate.calibration_scale or 1.0)
    return {
        "ve_id": fp.ve_id,
        "mean": mean,
        "std": std,
        "std_raw": std_raw,
        "ood": ood,
        "fingerprints": str(fingerprints_out) if fingerprints_out else None,
        "fingerprint_s": t1 - t0,
        "predict_s": t3 - t2,
    }


def fallback_cp(surrogate, data, ve_ids, coarsen="auto", progress: bool = False) -> dict[str, Any]:
    """Answer the VEs ``ve_ids`` of the VE dataset ``data`` by crystal plasticity instead
    of the surrogate: the embedded solver with the material and load case the surrogate
    was trained for (``trained_for``), each VE coarsened by ``coarsen`` (an int or
    'auto', docs/cp_solver.md "Coarse CP"). Returns {ve_id: (curve (n_states,) MPa of the
    surrogate's component, grid solved, status, reason)}. ValueError when the surrogate
    does not record its material or load case (saved before 2026-12-07)."""
    import yaml
    from tqdm.auto import tqdm

    from ..cp.loadcase import LoadCase
    from ..cp.simulate import simulate_ve
    from ..datasets import VEDataset
    from .table import COMPONENTS

    tf = surrogate.trained_for
    if not tf.get("material_yaml") or not tf.get("loadcase"):
        raise ValueError("this surrogate does not record its material and load case: no CP fallback possible")
    phase = yaml.safe_load(tf["material_yaml"])
    load = LoadCase.from_damask(yaml.safe_load(tf["loadcase"]))
    i, j = COMPONENTS[str(surrogate.meta.get("component", "xx"))]
    out: dict[str, Any] = {}
    with VEDataset(str(data)) as ds:
        for v in tqdm(list(ve_ids), desc="fallback CP", unit="VE", disable=not progress):
            rec = simulate_ve(ds[ds.index_of(v)], phase, load, coarsen=coarsen)
            out[v] = (rec.sigma[:, i, j] / 1e6, tuple(rec.grid_run or ()), rec.status, rec.reason)
    return out


def flag_and_fallback(surrogate, res: dict, ves_path, fallback: str = "none", coarsen="auto", progress=False):
    """Flag predictions whose out-of-population score (``res['ood']``) is above the
    surrogate's threshold; with ``fallback='cp'`` answer those VEs by CP
    (:func:`fallback_cp`, VEs of the dataset ``ves_path``), replacing their curves in
    ``res`` (``mean``; ``std``, ``std_raw`` 0). Returns (answered_by per VE: 'surrogate'
    or 'cp <grid>', message lines: a warning per flagged VE, failures, a count)."""
    ids, ood = list(res["ve_id"]), np.asarray(res["ood"], dtype=float)
    thr = surrogate.ood_threshold
    flagged = [v for v, s in zip(ids, ood) if np.isfinite(s) and s > thr]
    answered = ["surrogate"] * len(ids)
    notes = [
        f"warning: {v} is unlike the surrogate's training VEs (out-of-population score {s:.2f} > {thr}): "
        "its prediction may be far off"
        + ("" if fallback == "cp" else "; --fallback cp answers such VEs by crystal plasticity")
        for v, s in zip(ids, ood)
        if np.isfinite(s) and s > thr
    ]
    if len(ids) and np.isnan(ood).all():
        notes.append("note: this surrogate stores no training inputs: no out-of-population score")
    if fallback != "cp" or not flagged:
        return answered, notes
    got = fallback_cp(surrogate, ves_path, flagged, coarsen=coarsen, progress=progress)
    for k, v in enumerate(ids):
        if v in got:
            curve, grid, status, reason = got[v]
            if status != "converged":
                notes.append(f"warning: fallback CP of {v} failed ({reason}): kept the surrogate's answer")
                continue
            res["mean"][k], res["std"][k], res["std_raw"][k] = curve, 0.0, 0.0
            answered[k] = f"cp {'x'.join(map(str, grid))}"
    notes.append(f"{sum(a != 'surrogate' for a in answered)} of {len(ids)} VEs answered by CP (--fallback cp)")
    return answered, notes


def plot_predictions(ve_id, mean, std, strain, path, component: str = "xx", max_curves: int = 12) -> Path:
    """Predicted curves with their +-2 sigma bands (up to ``max_curves`` VEs; mean,
    std (n, n_states) MPa)."""
    from .evaluate import _plt, _xaxis

    plt = _plt()
    mean, std = np.asarray(mean), np.asarray(std)
    x, xlabel = _xaxis(strain, mean.shape[1])
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    n = min(len(mean), max_curves)
    for i in range(n):
        (line,) = ax.plot(x, mean[i], lw=1.2, label=str(ve_id[i]))
        if np.any(std[i] > 0):
            ax.fill_between(x, mean[i] - 2 * std[i], mean[i] + 2 * std[i], color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"predicted sigma_{component} (MPa)")
    title = "surrogate predictions, bands +-2 sigma"
    if len(mean) > n:
        title += f" (first {n} of {len(mean)} VEs)"
    ax.set_title(title, fontsize=9)
    if n <= 12:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)
