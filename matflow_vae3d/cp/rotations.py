"""Rotated copies of CP results: exact training data from the cube's rotations.

The CP model is frame-indifferent and the spectral grid is invariant under the cube's
24 proper rotations, so a VE rotated by ``R`` (:func:`~matflow_vae3d.microstructure.
symmetry.rotate_ve`) under the load path rotated by ``R`` (:func:`rotate_loadcase`)
answers with ``F' = R F R^T``, ``P' = R P R^T``, ``sigma' = R sigma R^T``
(:func:`rotate_record`) without a new solve (``tests/test_cp_rotations.py`` checks that
against the solver). :func:`write_rotated_dataset` turns a VE dataset and its CP results
(path results, or uniaxial results as single-path rows) into a self-contained
augmented pair: a VE dataset of the originals and their rotated copies, and a path
results file of every (VE, path) row and its rotated copies.

Rotated rows carry the path id ``r<k>.<path_id>`` (the path's kind stays readable) and
the VE id ``<ve_id>@r<k>``; splits group copies with their original
(:func:`~matflow_vae3d.microstructure.symmetry.base_id`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..microstructure.symmetry import cube_rotations, rotate_tensors, rotate_ve, rotated_id
from .loadcase import LoadCase
from .results import SimulationRecord


def rotate_loadcase(lc: LoadCase, R) -> LoadCase:
    """The load path in the frame rotated by ``R`` (a cube rotation): every step's
    prescribed deformation (rate or target) and stress rotated as tensors; which
    components are prescribed moves with them."""
    steps = [  # replace() re-runs LoadStep's checks on the rotated step
        dataclasses.replace(s, deformation=rotate_tensors(s.deformation, R), stress=rotate_tensors(s.stress, R))
        for s in lc.steps
    ]
    return dataclasses.replace(lc, steps=steps)


def rotate_record(rec: SimulationRecord, R, ve_id: str | None = None) -> SimulationRecord:
    """``rec``'s states in the frame rotated by ``R``: F, P and sigma as ``R a R^T``
    (NaN states stay NaN); the VE id becomes ``ve_id`` when given."""
    return dataclasses.replace(
        rec,
        F=rotate_tensors(rec.F, R),
        P=rotate_tensors(rec.P, R),
        sigma=rotate_tensors(rec.sigma, R),
        ve_id=rec.ve_id if ve_id is None else ve_id,
    )


def rotated_path_id(path_id: str, k: int) -> str:
    """Path id of rotation ``k`` of path ``path_id`` (the id itself for k = 0)."""
    return str(path_id) if int(k) == 0 else f"r{int(k):02d}.{path_id}"


def base_path_id(path_id: str) -> str:
    """The original path's id of a rotated copy's path id (the id itself otherwise)."""
    import re

    return re.sub(r"^r\d{2}\.", "", str(path_id))


def _check_ks(rotations: Iterable[int]) -> list[int]:
    ks = sorted({int(k) for k in rotations})
    if not ks or ks[0] < 0 or ks[-1] > 23:
        raise ValueError(f"rotations must be indices 0..23 of the cube's rotations (0 = as is), got {ks}")
    return ks


def _rows(cp_file: Path, path_id: str | None):
    """(ve_id, path_id, LoadCase, SimulationRecord) of the converged rows of a path
    results file or (as one path ``path_id``) of a uniaxial CP results file."""
    import yaml

    from ..fileio import open_hdf5
    from .path_results import FORMAT as PATH_FORMAT
    from .path_results import read_path_results
    from .results import _attr_str, read_results

    with open_hdf5(cp_file, "CP results file") as f:
        fmt = _attr_str(f.attrs.get("format", ""))
    if fmt == PATH_FORMAT:
        d = read_path_results(cp_file)
        for r in range(int(d["n_committed"])):
            if d["status"][r] != "converged":
                continue
            lc = LoadCase.from_damask(yaml.safe_load(str(d["loadcase"][r])))
            S = int(d["n_states"][r])
            rec = SimulationRecord.from_states(
                lc,
                converged=True,
                reason="",
                F=d["F"][r, :S],
                P=d["P"][r, :S],
                sigma=d["sigma"][r, :S],
                n_converged=S - 1,
                wall_s=float(d["wall_s"][r]),
                ve_id=str(d["ve_id"][r]),
                solver=str(d.get("solver", "builtin")),
            )
            yield str(d["ve_id"][r]), str(d["path_id"][r]), lc, rec, d
        return
    d = read_results(cp_file)
    if not path_id:
        raise ValueError(f"{cp_file} is a uniaxial CP results file: give the path id its rows get")
    lc = LoadCase.from_damask(yaml.safe_load(d["loadcase"]))
    for ve_id, rec in _uniaxial_records(d, lc):
        yield ve_id, path_id, lc, rec, d


def _uniaxial_records(d: dict, lc: LoadCase):
    """(ve_id, SimulationRecord) of the converged rows of a read uniaxial CP results
    file ``d`` (:func:`~matflow_vae3d.cp.results.read_results`) with load case ``lc``."""
    for r in np.flatnonzero(d["status"] == "converged"):
        ve_id = str(d["ve_id"][r])
        rec = SimulationRecord.from_states(
            lc,
            converged=True,
            reason="",
            F=d["F"][r],
            P=d["P"][r],
            sigma=d["sigma"][r],
            n_converged=lc.n_increments,
            wall_s=float(d["wall_s"][r]),
            ve_id=ve_id,
            solver=str(d.get("solver", "builtin")),
        )
        yield ve_id, rec


def _copy_id(ve_id: str, k: int) -> str:
    """VE id of rotation k (the id itself for k = 0, the original)."""
    return ve_id if k == 0 else rotated_id(ve_id, k)


def _write_ve_copies(src, ve_ids: Iterable[str], ks: Sequence[int], ves, out_ves: Path, progress: bool) -> int:
    """Append to ``out_ves`` every rotation ``ks`` of the VEs ``ve_ids`` of the open
    dataset ``src`` (the file ``ves``) that it lacks; return how many were written.
    A VE id missing from ``src`` is an error, before anything is written."""
    from ..datasets import open_dataset, write_ves

    index = {v: i for i, v in enumerate(src.ve_ids)}
    ve_ids = list(dict.fromkeys(ve_ids))
    missing = [v for v in ve_ids if v not in index]
    if missing:
        raise ValueError(f"{len(missing)} VE(s) are not in {ves}, e.g. {missing[0]!r}")
    have: set[str] = set()
    if out_ves.exists():
        with open_dataset(out_ves) as o:
            have = set(o.ve_ids)
    new = []
    for ve_id in ve_ids:
        for k in ks:
            if _copy_id(ve_id, k) not in have:
                ve = src[index[ve_id]]
                new.append(ve if k == 0 else rotate_ve(ve, k))
                have.add(_copy_id(ve_id, k))
    return write_ves(out_ves, new, append=True, progress=progress, total=len(new)) if new else 0


def write_rotated_dataset(
    ves: str | Path,
    cp_files: Sequence[tuple[str | Path, Sequence[int]]],
    out_ves: str | Path,
    out_cp: str | Path,
    *,
    uniaxial_path_id: str | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Write the augmented pair (module doc); return counts of what was written.

    ves : the VE dataset the CP rows were run on.
    cp_files : (CP results file, rotation indices) pairs; 0 copies a row as is, 1..23
        adds the rotated copy (:func:`~matflow_vae3d.microstructure.symmetry.cube_rotations`).
        Path results files and uniaxial CP results files (whose rows become one path,
        ``uniaxial_path_id``) may be mixed; they must share material and lattice.
    out_ves, out_cp : created (appended to when they exist: VEs already there are kept,
        (VE, path) rows already there are skipped, so a killed run resumes).

    Failed CP rows are left out; a row whose VE is not in ``ves`` is an error.
    """
    from ..datasets import open_dataset
    from .path_results import PathResultsWriter
    from .simulate import loadcase_yaml

    Rs = cube_rotations()
    out_ves, out_cp = Path(out_ves), Path(out_cp)
    plan = [(Path(p), _check_ks(ks)) for p, ks in cp_files]
    counts = {"rows": 0, "ves": 0, "rows_already_there": 0}
    meta: dict[str, str] | None = None
    with open_dataset(ves) as src:
        for cp_file, ks in plan:
            rows = list(_rows(cp_file, uniaxial_path_id))
            if not rows:
                continue
            m = {k: str(rows[0][4].get(k, "")) for k in ("material", "solver", "lattice", "coarsen_rule")}
            m["coarsen"] = str(rows[0][4].get("coarsen", 1))
            if meta is not None and m != meta:
                raise ValueError(f"{cp_file}: material, solver, lattice or coarsening differs from {plan[0][0]}'s")
            meta = m
            # every VE a row names first, so that no committed row names a VE the VE file lacks
            try:
                counts["ves"] += _write_ve_copies(src, (r[0] for r in rows), ks, ves, out_ves, progress)
            except ValueError as exc:
                raise ValueError(f"{cp_file}: {exc}") from None
            with PathResultsWriter(
                out_cp,
                material=m["material"],
                solver=m["solver"],
                lattice=m["lattice"],
                coarsen=int(m["coarsen"]),
                coarsen_rule=m["coarsen_rule"],
            ) as writer:
                done = writer.done()
                for ve_id, pid, lc, rec, _ in rows:
                    for k in ks:
                        vid, new_pid = _copy_id(ve_id, k), rotated_path_id(pid, k)
                        if (vid, new_pid) in done:
                            counts["rows_already_there"] += 1
                            continue
                        R = Rs[k]
                        writer.append(rotate_record(rec, R, vid), new_pid, loadcase_yaml(rotate_loadcase(lc, R)))
                        done.add((vid, new_pid))
                        counts["rows"] += 1
    return counts


def _same_load(a: LoadCase, b: LoadCase) -> bool:
    if len(a.steps) != len(b.steps):
        return False
    return all(
        np.array_equal(s.deformation, r.deformation, equal_nan=True)
        and np.array_equal(s.stress, r.stress, equal_nan=True)
        and (s.deformation_kind, s.t, s.N) == (r.deformation_kind, r.t, r.N)
        for s, r in zip(a.steps, b.steps)
    )


def invariant_rotations(lc: LoadCase) -> list[int]:
    """Indices of the cube rotations that map ``lc`` onto itself (always 0; for the
    paper's tension along x the 8 that keep the x axis)."""
    return [k for k, R in enumerate(cube_rotations()) if _same_load(rotate_loadcase(lc, R), lc)]


def write_rotated_results(
    ves: str | Path,
    results: str | Path,
    rotations: Sequence[int] | str,
    out_ves: str | Path,
    out_results: str | Path,
    *,
    progress: bool = False,
) -> dict[str, int]:
    """Rotated copies of a uniaxial CP results file as a uniaxial CP results file:
    only rotations that leave its load case unchanged (``rotations='invariant'`` takes
    all of them), so every copy answers the same load with ``R sigma R^T`` (for tension
    along x, the same sigma_xx curve on a different-looking VE). Outputs as in
    :func:`write_rotated_dataset` (self-contained, resumable); returns counts."""
    import yaml

    from ..datasets import open_dataset
    from .results import ResultsWriter, read_results

    d = read_results(results)
    lc = LoadCase.from_damask(yaml.safe_load(d["loadcase"]))
    keep = invariant_rotations(lc)
    ks = keep if rotations == "invariant" else _check_ks(rotations)  # type: ignore[arg-type]
    bad = [k for k in ks if k not in keep]
    if bad:
        raise ValueError(
            f"rotation(s) {bad} change the load case of {results}; a uniaxial results file holds one load case "
            f"(those that keep it: {keep}; write path results for the others)"
        )
    Rs = cube_rotations()
    records = list(_uniaxial_records(d, lc))
    counts = {"rows": 0, "ves": 0, "rows_already_there": 0}
    with open_dataset(ves) as src:
        try:
            counts["ves"] += _write_ve_copies(src, (v for v, _ in records), ks, ves, Path(out_ves), progress)
        except ValueError as exc:
            raise ValueError(f"{results}: {exc}") from None
    meta = {k: d[k] for k in ("material", "loadcase", "solver", "lattice")}
    with ResultsWriter(out_results, t=d["t"], **meta) as w:
        done = w.done_ids()
        for ve_id, rec in records:
            for k in ks:
                vid = _copy_id(ve_id, k)
                if vid in done:
                    counts["rows_already_there"] += 1
                    continue
                w.append(rotate_record(rec, Rs[k], vid))
                done.add(vid)
                counts["rows"] += 1
    return counts
