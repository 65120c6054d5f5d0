"""Query a MatFlow workflow of the plugin's tasks and export one joined dataset.

:func:`export_workflow` returns, for every VE the workflow fingerprinted or simulated:
its id, fingerprint (the VAE's mu), CP stress curves, per-VE status and failure reason
(including VEs of shards whose task run failed as a whole), and the provenance (VAE
checkpoint hash, material, load case, solver). :func:`write_export` stores it as HDF5
(``format = "matflow-vae3d/workflow-export"``, layout in docs/matflow.md).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np

from matflow_vae3d.fileio import atomic_output

FORMAT = "matflow-vae3d/workflow-export"
FORMAT_VERSION = 2

#: schema objectives whose file outputs are collected.
FINGERPRINT_OBJECTIVE = "fingerprint_VE"
SIMULATE_OBJECTIVE = "simulate_uniaxial"
PREDICT_OBJECTIVE = "predict_stress"

#: status of VEs that were fingerprinted but never simulated.
NOT_SIMULATED = "not_simulated"


def _open_workflow(workflow):
    from .workflows import open_workflow

    return open_workflow(workflow)


def resolve_path(wk_path: str | Path, p: str | None) -> Path | None:
    """Absolute path of a file-valued parameter (relative ones are relative to the
    workflow folder)."""
    if p is None:
        return None
    path = Path(p)
    return path if path.is_absolute() else Path(wk_path) / path


#: file-valued outputs read into arrays by :func:`element_outputs` (each by its
#: format's one reader); other file outputs (VE_dataset, checkpoints, plots) come back
#: as absolute paths.
def _read_fingerprints(path):
    from ..vae.fingerprints import read_fingerprints

    return read_fingerprints(path)


def _read_cp_results(path):
    from ..cp.results import read_results

    return read_results(path)


FILE_READERS = {"fingerprints": _read_fingerprints, "CP_results": _read_cp_results}
FILE_OUTPUTS = {"VE_dataset", "VAE_checkpoint", "surrogate_checkpoint", "surrogate_dataset"}


def _output(el, name: str):
    """Output ``name`` of a MatFlow element, or None when it was not produced."""
    try:
        return el.get(f"outputs.{name}")
    except Exception:  # not produced  # noqa: BLE001
        return None


def element_outputs(workflow, task, element: int | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """Outputs of one element (or, with ``element=None``, of every element) of
    ``task`` (unique name such as 'fingerprint_VE', or index) as Python values:
    ``fingerprints`` -> the fingerprint file's dict (ve_id, mu, summary, attrs),
    ``CP_results`` -> the CP results dict (ve_id, status, reason, t, sigma, F, P,
    ...), other file outputs -> absolute :class:`~pathlib.Path`, anything else as
    MatFlow stores it. An output that was not produced (a failed run) is None.
    """
    wk = _open_workflow(workflow)
    tasks = {t.unique_name: t for t in wk.tasks}
    if isinstance(task, int):
        if not 0 <= task < len(wk.tasks):
            raise ValueError(f"workflow {wk.path} has {len(wk.tasks)} tasks, no task {task}")
        tk = wk.tasks[task]
    elif task in tasks:
        tk = tasks[task]
    else:
        raise ValueError(f"workflow {wk.path} has no task {task!r} (tasks: {', '.join(tasks)})")
    names = [o.typ for o in tk.template.schema.outputs]

    def one(el) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            val = _output(el, name)
            if val is not None and (name in FILE_READERS or name in FILE_OUTPUTS):
                path = resolve_path(wk.path, str(val))
                val = FILE_READERS[name](path) if name in FILE_READERS and path and path.exists() else path
            out[name] = val
        return out

    elements = list(tk.elements)
    if element is None:
        return [one(el) for el in elements]
    if not -len(elements) <= int(element) < len(elements):
        raise ValueError(f"task {tk.unique_name} has {len(elements)} elements, no element {element}")
    return one(elements[int(element)])


def output_files(workflow, objective: str, output: str) -> list[Path]:
    """Absolute paths of the file output ``output`` of every successful element of
    the tasks with schema ``objective`` (e.g. 'fingerprint_VE', 'fingerprints')."""
    wk = _open_workflow(workflow)
    paths = []
    for task in wk.tasks:
        if task.template.schema.objective.name != objective:
            continue
        for el in task.elements:
            val = _output(el, output)
            p = resolve_path(wk.path, None if val is None else str(val))
            if p is not None and p.exists():
                paths.append(p)
    return paths


def run_failure_message(wk_path: str | Path, run_id: int) -> str:
    """The failure recorded by the plugin's action wrapper for run ``run_id`` (first
    line of the exception), or a generic message if none was recorded."""
    from .actions import failure_record_path

    rec = failure_record_path(wk_path, run_id)
    if rec.is_file():
        try:
            return json.loads(rec.read_text())["error"]
        except (ValueError, KeyError):
            pass
    return "task run failed (no message recorded; see the workflow's std logs)"


def _element_status(el) -> tuple[str, int | None]:
    """(status name of the element's last action run, its run id)."""
    runs = el.action_runs
    if not runs:
        return "pending", None
    run = runs[-1]
    return run.status.name, run.id_


def workflow_elements(workflow) -> dict[str, list[dict]]:
    """Per element of the plugin's fingerprint / simulate tasks: task name, element
    index, run status and id, the output file (absolute, None unless the run
    succeeded), the VE dataset input (absolute, None for volume_element inputs) and,
    for failed runs, the failure message. Returns {'fingerprint': [...], 'simulate': [...]}."""
    wk = _open_workflow(workflow)
    out: dict[str, list[dict]] = {"fingerprint": [], "simulate": [], "predict": []}
    for task in wk.tasks:
        objective = task.template.schema.objective.name
        if objective == FINGERPRINT_OBJECTIVE:
            kind, param = "fingerprint", "fingerprints"
        elif objective == SIMULATE_OBJECTIVE:
            kind, param = "simulate", "CP_results"
        elif objective == PREDICT_OBJECTIVE:
            kind, param = "predict", "predictions"
        else:
            continue
        for el in task.elements:
            status, run_id = _element_status(el)
            rec = {
                "task": task.unique_name,
                "element": el.index,
                "status": status,
                "run_id": run_id,
                "file": None,
                "ve_dataset": None,
                "error": "",
            }
            try:
                rec["ve_dataset"] = resolve_path(wk.path, el.get("inputs.VE_dataset"))
            except Exception:
                rec["ve_dataset"] = None
            rec["ve_ids"] = None  # VE ids of a MatFlow volume_element input (failed runs)
            if status != "success" and rec["ve_dataset"] is None:
                try:
                    vol = el.get("inputs.volume_element")
                except Exception:
                    vol = None
                if isinstance(vol, dict):
                    from .actions import volume_element_id

                    rec["ve_ids"] = [volume_element_id(vol)]
            if status == "success":
                rec["file"] = resolve_path(wk.path, el.get(f"outputs.{param}"))
            elif status == "error" and run_id is not None:
                rec["error"] = run_failure_message(wk.path, run_id)
            out[kind].append(rec)
    return out


def _ve_ids_of(rec: dict) -> list[str]:
    """VE ids an element was given: its VE dataset's, or its volume_element's hash."""
    if rec.get("ve_ids"):
        return list(rec["ve_ids"])
    dataset = rec.get("ve_dataset")
    if dataset is None or not Path(dataset).is_file():
        return []
    from ..datasets import VEDataset

    with VEDataset(str(dataset)) as ds:
        return [str(v) for v in ds.ve_ids]


def export_workflow(workflow) -> dict[str, Any]:
    """Join a workflow's fingerprints and CP results by VE id.

    workflow : path of a MatFlow workflow (or a loaded ``Workflow``).

    Returns a dict: ``ve_id`` (n,) str; ``mu`` (n, latent) float32, NaN rows where a VE
    has no fingerprint (the spatial latent: it moves under a periodic roll, and its
    length depends on the grid: (n, 0) when the VEs have several grids); ``summary``
    (n, F) the roll-invariant summary (what similarity should use) and
    ``decoded_stats`` (n, D) the decoded orientation statistics (what the shipped
    surrogate reads; (n, 0) when some file lacks them); ``has_fingerprint`` (n,) bool; ``status`` (n,) str
    ('converged', 'failed' or 'not_simulated'); ``reason`` (n,) str; ``t`` (S,) s;
    ``sigma``, ``F``, ``P`` (n, S, 3, 3) (Pa for stresses; NaN where not simulated or
    beyond the last converged increment); ``n_converged`` (n,) int (-1 if not
    simulated); ``shard`` (n,) int: element index of the simulate task (-1 if none);
    ``provenance``: dict with ``model_sha256``, ``latent_dim``, ``material``,
    ``loadcase``, ``solver``, ``lattice``, ``workflow``, ``exported_utc``, versions.
    Raises ValueError if the workflow has no fingerprint or simulate task, or if
    fingerprints of different VAEs or CP results of different load cases are mixed.
    """
    from ..cp.results import read_results
    from ..vae.fingerprints import read_fingerprints

    wk = _open_workflow(workflow)
    elems = workflow_elements(wk)
    if not elems["fingerprint"] and not elems["simulate"] and not elems["predict"]:
        raise ValueError(
            f"workflow {wk.path} has no {FINGERPRINT_OBJECTIVE}, {SIMULATE_OBJECTIVE} or {PREDICT_OBJECTIVE} task"
        )
    order: dict[str, int] = {}

    def idx(v: str) -> int:
        if v not in order:
            order[v] = len(order)
        return order[v]

    # ---- CP results
    cp_rows: dict[str, dict] = {}
    t = None
    meta: dict[str, set[str]] = {"material": set(), "loadcase": set(), "solver": set(), "lattice": set()}
    failed_rows: dict[str, tuple[str, int]] = {}
    for rec in elems["simulate"]:
        if rec["file"] is not None:
            r = read_results(rec["file"])
            if t is None:
                t = r["t"]
            elif len(r["t"]) != len(t) or not np.allclose(r["t"], t):
                raise ValueError(f"CP results with different load-case times: {rec['file']}")
            for k in meta:
                if r.get(k):
                    meta[k].add(r[k])
            for i, v in enumerate(r["ve_id"]):
                idx(str(v))
                cp_rows[str(v)] = {k: r[k][i] for k in ("status", "reason", "sigma", "F", "P", "n_converged")}
                cp_rows[str(v)]["shard"] = rec["element"]
        elif rec["status"] == "error":
            why = f"CP shard failed ({rec['task']} element {rec['element']}): {rec['error']}"
            for v in _ve_ids_of(rec):
                idx(v)
                failed_rows[v] = (why, rec["element"])
    for k in ("loadcase",):
        if len(meta[k]) > 1:
            raise ValueError(f"workflow mixes CP results of {len(meta[k])} different {k}s")

    # ---- fingerprints (mu, the roll-invariant summary, the decoded statistics)
    fps: dict[str, tuple] = {}
    sha, widths, lattice_fp, kinds = set(), set(), set(), set()
    fp_failed: dict[str, str] = {}
    for rec in elems["fingerprint"]:
        if rec["file"] is None:
            why = f"fingerprint shard failed ({rec['task']} element {rec['element']}): {rec['error']}"
            for v in _ve_ids_of(rec):
                idx(v)
                if rec["status"] == "error":
                    fp_failed[v] = why
            continue
        f = read_fingerprints(rec["file"])
        sha.add(str(f.get("model_sha256", "")))
        lattice_fp.add(str(f.get("lattice", "")))
        widths.add(int(f["mu"].shape[1]))
        kinds.add(str(f.get("decoded_stats_kind", "")))
        dec = f.get("decoded_stats")
        for j, v in enumerate(f["ve_id"]):
            idx(str(v))
            fps[str(v)] = (f["mu"][j], f["summary"][j], None if dec is None else dec[j])
    if len(sha) > 1:
        raise ValueError(f"workflow mixes fingerprints of {len(sha)} different VAE checkpoints")
    # mu's length depends on the VE grid; the summary and decoded statistics do not
    latent = widths.pop() if len(widths) == 1 else 0
    mu_note = "" if len(widths) <= 0 or latent else "mu omitted: the workflow's VEs have several grids"

    # ---- predictions (MPa, with their out-of-population score and what answered)
    preds: dict[str, tuple] = {}
    from ..surrogate.ensemble import read_predictions

    for rec in elems["predict"]:
        if rec["file"] is None:
            continue
        pr = read_predictions(rec["file"])
        answered = pr.get("answered_by") or ["surrogate"] * len(pr["ve_id"])
        ood = pr.get("ood_score", np.full(len(pr["ve_id"]), np.nan))
        for j, v in enumerate(pr["ve_id"]):
            idx(str(v))
            preds[str(v)] = (pr["sigma"][j], pr["sigma_std"][j], float(ood[j]), str(answered[j]))

    n = len(order)
    S = len(t) if t is not None else 0
    ve_id = np.array(list(order), dtype=object)
    mu = np.full((n, latent or 0), np.nan, dtype=np.float32)
    first = next(iter(fps.values()), None)
    summary = np.full((n, 0 if first is None else len(first[1])), np.nan, dtype=np.float32)
    with_dec = first is not None and all(x[2] is not None for x in fps.values())
    decoded = np.full((n, len(first[2]) if (first is not None and with_dec) else 0), np.nan, dtype=np.float32)
    has_fp = np.zeros(n, bool)
    P_pred = len(next(iter(preds.values()))[0]) if preds else 0
    predicted = np.full((n, P_pred), np.nan)
    predicted_std = np.full((n, P_pred), np.nan)
    ood_score = np.full(n, np.nan)
    answered_by = np.full(n, "", dtype=object)
    status = np.full(n, NOT_SIMULATED, dtype=object)
    reason = np.full(n, "", dtype=object)
    sigma = np.full((n, S, 3, 3), np.nan)
    F = np.full((n, S, 3, 3), np.nan)
    P = np.full((n, S, 3, 3), np.nan)
    n_conv = np.full(n, -1, dtype=np.int64)
    shard = np.full(n, -1, dtype=np.int64)
    for v, i in order.items():
        if v in fps:
            m, sm, dec = fps[v]
            if latent:
                mu[i] = m
            summary[i] = sm
            if with_dec:
                decoded[i] = dec
            has_fp[i] = True
        elif v in fp_failed:
            reason[i] = fp_failed[v]
        if v in preds:
            predicted[i], predicted_std[i], ood_score[i], answered_by[i] = preds[v]
        if v in cp_rows:
            r = cp_rows[v]
            status[i], reason[i] = str(r["status"]), str(r["reason"])
            sigma[i], F[i], P[i] = r["sigma"], r["F"], r["P"]
            n_conv[i], shard[i] = int(r["n_converged"]), r["shard"]
        elif v in failed_rows:
            status[i] = "failed"
            reason[i], shard[i] = failed_rows[v]
            if v in fp_failed:
                reason[i] = f"{reason[i]}; {fp_failed[v]}"
    import matflow as mf

    from .. import __version__

    prov = {
        "model_sha256": ";".join(sorted(sha)),
        "latent_dim": int(latent or 0),
        "mu_note": mu_note,
        "decoded_stats_kind": ";".join(sorted(kinds - {""})),
        "material": ";".join(sorted(meta["material"])),
        "loadcase": ";".join(sorted(meta["loadcase"])),
        "solver": ";".join(sorted(meta["solver"])),
        "lattice": ";".join(sorted(meta["lattice"] | lattice_fp - {""})),
        "workflow": str(Path(str(wk.path)).resolve()),
        "exported_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "matflow_vae3d_version": __version__,
        "matflow_version": str(getattr(mf, "__version__", "")),
    }
    return {
        "ve_id": ve_id,
        "mu": mu,
        "summary": summary,
        "decoded_stats": decoded,
        "predicted_sigma_MPa": predicted,
        "predicted_sigma_std_MPa": predicted_std,
        "ood_score": ood_score,
        "answered_by": answered_by,
        "has_fingerprint": has_fp,
        "status": status,
        "reason": reason,
        "t": t if t is not None else np.zeros(0),
        "sigma": sigma,
        "F": F,
        "P": P,
        "n_converged": n_conv,
        "shard": shard,
        "provenance": prov,
    }


def write_export(data: dict[str, Any], out: str | Path, overwrite: bool = False) -> Path:
    """Write :func:`export_workflow`'s dict to HDF5 (temporary file, then rename).
    Refuses to replace an existing file unless ``overwrite``."""
    import h5py

    out = Path(out)
    s = h5py.string_dtype("utf-8")
    with atomic_output(out, overwrite, "pass overwrite=True (CLI: --force) to replace it") as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            for k in ("ve_id", "status", "reason", "answered_by"):
                f.create_dataset(k, data=np.asarray(data[k], dtype=object), dtype=s)
            for k in (
                "mu",
                "summary",
                "decoded_stats",
                "predicted_sigma_MPa",
                "predicted_sigma_std_MPa",
                "ood_score",
                "has_fingerprint",
                "t",
                "sigma",
                "F",
                "P",
                "n_converged",
                "shard",
            ):
                f.create_dataset(k, data=np.asarray(data[k]))
            for k, v in data["provenance"].items():
                f.attrs[k] = v
    return out


def read_export(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`write_export` back into the same dict."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"export file not found: {path}")
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
        if fmt != FORMAT:
            raise ValueError(f"{path} is not a workflow export (format {fmt!r})")
        out: dict[str, Any] = {}
        for k in f:
            v = f[k][()]
            if f[k].dtype.kind == "O":
                v = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v], dtype=object)
            out[k] = v
        out["provenance"] = {
            k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
            for k, v in f.attrs.items()
            if k not in ("format", "format_version")
        }
    return out
