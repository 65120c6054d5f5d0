"""Questions to a MatFlow results store of the plugin's tasks, answered from
:func:`~matflow_vae3d.matflow.export.export_workflow`'s joined view (or a written
export): which VEs are most like a given one, which have the highest (or lowest)
stress, and what failed and why.

Similarity uses the roll-invariant **summary** of the fingerprint, standardised per
feature over the workflow's VEs (Euclidean distance): a periodic VE rolled by a few
voxels is the same microstructure, and the summary is nearly invariant to such rolls
(docs/vae.md), while ``mu`` (the spatial latent) moves with the roll (a VE and its
rolled copy are as far apart in ``mu`` as two different VEs). Stresses are in MPa in
every answer (the export files store Pa, as the CP results do).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

#: stress components a quantity may name
_COMPONENTS = {"xx": (0, 0), "yy": (1, 1), "zz": (2, 2), "xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}


def similar(data: dict[str, Any], ve_id: str, k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` fingerprinted VEs nearest to ``ve_id`` by the standardised summary:
    [{'ve_id', 'distance'}], nearest first (the VE itself excluded). ValueError when
    ``ve_id`` is unknown or has no fingerprint."""
    ids = [str(v) for v in data["ve_id"]]
    if ve_id not in ids:
        raise ValueError(f"no VE {ve_id!r} in this workflow ({len(ids)} VEs, e.g. {', '.join(ids[:3])})")
    has = np.asarray(data["has_fingerprint"], bool)
    i = ids.index(ve_id)
    if not has[i]:
        raise ValueError(f"VE {ve_id!r} has no fingerprint: {data['reason'][i] or 'not fingerprinted'}")
    s = np.asarray(data["summary"], np.float64)[has]
    sd = s.std(0)
    z = (s - s.mean(0)) / np.where(sd > 0, sd, 1.0)
    rows = np.flatnonzero(has)
    d = np.linalg.norm(z - z[list(rows).index(i)], axis=1)
    order = [j for j in np.argsort(d, kind="stable") if rows[j] != i][: int(k)]
    return [{"ve_id": ids[rows[j]], "distance": float(d[j])} for j in order]


def parse_quantity(q: str) -> tuple[tuple[int, int], float | None]:
    """'sigma_xx' (last state) or 'sigma_xx@0.005' (the state nearest that strain
    along the loading) -> ((i, j), strain or None). ValueError naming the forms."""
    m = re.fullmatch(r"\s*sigma_?([xyz]{2})\s*(?:@\s*([0-9.eE+-]+))?\s*", str(q))
    if not m or m.group(1) not in _COMPONENTS and m.group(1)[::-1] not in _COMPONENTS:
        raise ValueError(f"unknown quantity {q!r}: use sigma_xx (last state) or sigma_xx@0.005 (at that strain)")
    comp = m.group(1) if m.group(1) in _COMPONENTS else m.group(1)[::-1]
    return _COMPONENTS[comp], (float(m.group(2)) if m.group(2) else None)


def top(data: dict[str, Any], quantity: str = "sigma_xx", k: int = 5, ascending: bool = False) -> list[dict]:
    """The ``k`` converged VEs with the highest (``ascending``: lowest) simulated
    ``quantity`` (:func:`parse_quantity`): [{'ve_id', 'value_MPa', 'strain'}];
    'predicted' (or 'predicted@STATE') ranks the predict_stress tasks' curves instead,
    with each VE's out-of-population score and what answered it."""
    if str(quantity).startswith("predicted"):
        return _top_predicted(data, quantity, k, ascending)
    (a, b), strain = parse_quantity(quantity)
    sigma = np.asarray(data["sigma"], np.float64)
    if sigma.size == 0:
        raise ValueError("this workflow has no CP results to rank")
    ok = np.asarray(data["status"]) == "converged"
    if not ok.any():
        raise ValueError("no VE of this workflow has a converged CP run")
    F = np.asarray(data["F"], np.float64)
    # the strain of each state: the largest |F - I| component of the mean deformation
    eps = np.abs(np.nan_to_num(F - np.eye(3))).reshape(*F.shape[:2], 9).max(axis=2)  # (n, S); unsolved: 0
    first = np.flatnonzero(ok)[0]
    state = len(data["t"]) - 1 if strain is None else int(np.nanargmin(np.abs(eps[first] - strain)))
    vals = sigma[:, state, a, b] / 1e6
    rows = np.flatnonzero(ok & np.isfinite(vals))
    order = rows[np.argsort(vals[rows] * (1 if ascending else -1), kind="stable")][: int(k)]
    return [
        {"ve_id": str(data["ve_id"][i]), "value_MPa": float(vals[i]), "strain": float(eps[i, state])} for i in order
    ]


def _top_predicted(data: dict[str, Any], quantity: str, k: int, ascending: bool) -> list[dict]:
    pred = np.asarray(data.get("predicted_sigma_MPa", np.zeros((0, 0))), np.float64)
    if pred.size == 0 or np.isnan(pred).all():
        raise ValueError("this workflow has no predictions (add a predict_stress task)")
    m = re.fullmatch(r"predicted(?:@(-?\d+))?", str(quantity).strip())
    if not m:
        raise ValueError(f"unknown quantity {quantity!r}: use predicted (last state) or predicted@STATE")
    state = int(m.group(1)) if m.group(1) else pred.shape[1] - 1
    vals = pred[:, state]
    rows = np.flatnonzero(np.isfinite(vals))
    order = rows[np.argsort(vals[rows] * (1 if ascending else -1), kind="stable")][: int(k)]
    ood, by = data.get("ood_score"), data.get("answered_by")
    return [
        {
            "ve_id": str(data["ve_id"][i]),
            "predicted_MPa": float(vals[i]),
            "ood_score": float(ood[i]) if ood is not None else float("nan"),
            "answered_by": str(by[i]) if by is not None else "",
        }
        for i in order
    ]


def failed(data: dict[str, Any], elements: dict[str, list[dict]] | None = None) -> list[dict[str, Any]]:
    """Every failed task run (task, element, reason) and every VE that failed or has a
    failure reason: [{'kind', 'task', 'element', 've_id', 'reason'}]."""
    out: list[dict[str, Any]] = []
    for kind, recs in (elements or {}).items():
        for r in recs:
            if r["status"] == "error":
                out.append(
                    {
                        "kind": f"{kind} run",
                        "task": r["task"],
                        "element": int(r["element"]),
                        "ve_id": "",
                        "reason": r["error"],
                    }
                )
    for v, st, why, shard in zip(data["ve_id"], data["status"], data["reason"], data["shard"]):
        if st == "failed" or why:
            out.append({"kind": "VE", "task": "", "element": int(shard), "ve_id": str(v), "reason": str(why)})
    return out
