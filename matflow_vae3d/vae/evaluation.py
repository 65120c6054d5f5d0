"""Reconstruction error next to its trivial baselines.

The paper's metric 1 − |q·q̂| flatters: fundamental-zone quaternions cluster near
w = 1, so a constant identity orientation scores 0.148 on 16³ hP VEs. Every
reconstruction figure is therefore reported beside

* ``identity``: the constant identity orientation in every voxel, and
* ``mean image``: the voxel-wise mean normalised Euler image of a training set
  (what a VAE that learnt nothing reconstructs; the old shipped model did), or, without
  one, of the evaluated set's *other* VEs (leave-one-out, so that the baseline never
  contains the VE it is scored on; omitted for sets of fewer than :data:`LOO_MIN_VES`),

with the symmetry-aware disorientation (mean angle, fractions within 5° and 15°).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .encode import loader, misorientation, open_dataset, summarise_errors

#: fewest VEs of a set whose leave-one-out mean image is a baseline (below: omitted)
LOO_MIN_VES = 3


def mean_euler_image(data, max_ves: int | None = 2000) -> torch.Tensor:
    """Voxel-wise mean normalised Euler image (3, nx, ny, nz) of the first ``max_ves``
    VEs of a dataset (all with None; the 'training-mean image' baseline)."""
    ds = open_dataset(data)
    n = len(ds) if max_ves is None else min(len(ds), int(max_ves))
    total: torch.Tensor | None = None
    count = 0
    for batch in loader(data, 64, indices=list(range(n))):
        x = batch.to_tensor("cpu").double()
        total = x.sum(0) if total is None else total + x.sum(0)
        count += x.shape[0]
    if total is None:
        raise ValueError(f"VE dataset {data} holds no VEs")
    return (total / count).float()


@torch.inference_mode()
def baseline_errors(
    data, lattice: str, mean_image: torch.Tensor | None = None, max_ves: int | None = None, leave_one_out=False
) -> dict[str, dict]:
    """Errors of the constant predictors on a VE dataset, as :func:`evaluate_dataset`
    reports them: {'identity': summary, 'mean image': summary}. The mean image is
    ``mean_image`` (e.g. a training set's) or, with ``leave_one_out``, for each VE the
    mean of the set's other VEs (omitted below :data:`LOO_MIN_VES` VEs)."""
    ds = open_dataset(data)
    n = len(ds) if max_ves is None else min(len(ds), int(max_ves))
    preds: dict[str, torch.Tensor | None] = {"identity": None}
    total = None
    if mean_image is not None:
        preds["mean image"] = mean_image
    elif leave_one_out and n >= LOO_MIN_VES:
        total = mean_euler_image(data, max_ves=n).double() * n
        preds["mean image"] = total
    vals: dict[str, dict[str, list]] = {k: {} for k in preds}
    ids: list[str] = []
    for batch in loader(data, 64, indices=list(range(n))):
        q = batch.quaternion_image("cpu")
        ids.extend(str(v) for v in batch.ve_ids)
        for name, img in preds.items():
            if img is None:
                p = torch.zeros_like(q)
                p[:, 0] = 1.0
                err = misorientation(q, p, lattice, "quaternion")
            else:
                e = batch.to_tensor("cpu")
                if total is not None:  # leave-one-out: the mean of the other VEs
                    ref = ((total - e.double()) / (n - 1)).float()
                else:
                    ref = img.expand_as(e)
                err = misorientation(e, ref, lattice, "euler")
            for k, v in err.items():
                vals[name].setdefault(k, []).append(v.numpy())
    return {name: summarise_errors(v, ids) for name, v in vals.items()}


def table(results: dict, baselines: dict | None = None) -> str:
    """Markdown table: one row per (dataset, predictor); ``results`` maps a dataset
    path to :func:`evaluate_dataset`'s summary, ``baselines`` a path to
    :func:`baseline_errors`' dict."""
    rows = [
        "| dataset | predictor | VEs | disorientation / deg | within 5° | within 15° | 1-\\|q·q̂\\| |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name, pred, r):
        rows.append(
            f"| {name} | {pred} | {r['n']} | {r['deg_mean']:.2f} ± {r['deg_std']:.2f} "
            f"| {100 * r['within5_mean']:.1f} % | {100 * r['within15_mean']:.1f} % "
            f"| {r['quat_mean']:.4f} |"
        )

    for path, r in results.items():
        name = Path(path).name
        row(name, "VAE", r)
        for pred, b in (baselines or {}).get(path, {}).items():
            row(name, pred, b)
    return "\n".join(rows)


def plain_summary(r: dict) -> dict:
    """JSON-ready copy of a summary (arrays -> lists, examples dropped)."""
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items() if k != "examples"}
