"""CP along load paths: VEs x paths through the embedded solver (or DAMASK_grid), one
row per (VE, path) in a path results file (:mod:`.path_results`), resumable.

Pairing: ``paths`` (a dict {id: LoadCase}, e.g. from :func:`.loadpaths.read_paths`)
runs every VE along every path; ``random_per_ve=K`` gives VE number v (its row in the
dataset) the random paths o + v*K .. o + v*K+K-1 of the stream ``path_seed``
(:func:`.loadpaths.random_path`; o = ``path_offset``, e.g. the first VE's index in a
sharded campaign), so a pair is the same pair whenever it is made. With ``path_pool=P``
the indices are taken modulo P: the VEs share a pool of P paths, so the effect of the
microstructure on one path is seen on several VEs (and VEs sharing a path are solved
in one batch).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .loadcase import LoadCase
from .loadpaths import random_path
from .materials import check_builtin_supported, check_lattice, load_phase, phase_yaml
from .path_results import PathResultsWriter
from .simulate import (
    _dataset_coarsen,
    _open_ves,
    _prepare_chunk,
    _Tally,
    check_coarsen,
    check_divides,
    loadcase_yaml,
    run_chunks,
)


def _pairs(
    n_ves: int,
    paths: Mapping[str, LoadCase] | None,
    random_per_ve: int | None,
    path_seed: int,
    random_kw,
    path_offset: int = 0,
    path_pool: int | None = None,
):
    """[(VE row, path id, LoadCase)] in run order (VE-major)."""
    if (paths is None) == (random_per_ve is None):
        raise ValueError("give exactly one of paths and random_per_ve")
    out = []
    if paths is not None:
        if not paths:
            raise ValueError("no load paths given")
        for v in range(n_ves):
            out += [(v, pid, lc) for pid, lc in paths.items()]
        return out
    k = int(random_per_ve or 0)
    if k < 1:
        raise ValueError(f"random_per_ve must be >= 1, got {random_per_ve}")
    if int(path_offset) < 0 or (path_pool is not None and int(path_pool) < k):
        raise ValueError(f"need path_offset >= 0 and path_pool >= random_per_ve ({k}), got {path_offset}, {path_pool}")
    made: dict[int, tuple[str, LoadCase]] = {}
    for v in range(n_ves):
        for j in range(k):
            i = int(path_offset) + v * k + j
            if path_pool is not None:
                i %= int(path_pool)
            if i not in made:
                made[i] = random_path(path_seed, i, **random_kw)
            out.append((v, *made[i]))
    return out


def simulate_paths(
    data_path,
    out_path,
    material="Mg",
    *,
    paths: Mapping[str, LoadCase] | None = None,
    random_per_ve: int | None = None,
    path_seed: int = 0,
    random_kw: Mapping[str, Any] | None = None,
    path_offset: int = 0,
    path_pool: int | None = None,
    solver: str = "builtin",
    limit: int | None = None,
    batch_size: int = 8,
    device="cpu",
    dtype=None,
    progress: bool | str = True,
    coarsen: int = 1,
    coarsen_rule: str = "majority",
    **numerics,
) -> dict[str, Any]:
    """Simulate VEs of a dataset along load paths; append one row per (VE, path) to
    ``out_path`` (an existing file is resumed: pairs already in it are skipped).
    ``coarsen``: solve every VE coarsened by this factor (see
    :func:`matflow_vae3d.cp.simulate.simulate_ve`), recorded in the file.

    The builtin solver batches up to ``batch_size`` VEs that share a path. Returns a
    summary {out, n_pairs, n_skipped, n_run, n_converged, n_failed, wall_s, failed}.
    Settings that concern every pair (material, lattice, pairing) are refused before
    anything is written; a pair that diverges is a 'failed' row with its reason.
    """
    if solver not in ("builtin", "damask"):
        raise ValueError(f"unknown solver {solver!r}: use builtin or damask")
    phase_name, phase = load_phase(material)
    if solver == "builtin":
        check_builtin_supported(phase)
    else:
        from .damask_driver import find_damask_grid

        find_damask_grid()
    ves, ids, lattice, close = _open_ves(data_path)
    try:
        k = check_coarsen(_dataset_coarsen(coarsen, ves, lattice), coarsen_rule)
    except BaseException:
        close()
        raise
    t0 = time.perf_counter()
    tally = _Tally(str(out_path), "n_pairs")
    summary = tally.summary
    try:
        if lattice is not None:
            check_lattice(phase, lattice, "dataset")
            check_divides(k, ves.grid, data_path)
        n = len(ids) if limit is None else min(len(ids), int(limit))
        pairs = _pairs(n, paths, random_per_ve, path_seed, dict(random_kw or {}), path_offset, path_pool)
        with PathResultsWriter(
            out_path,
            material=phase_yaml(phase),
            solver=solver,
            lattice=phase["lattice"],
            coarsen=k,
            coarsen_rule=coarsen_rule,
        ) as w:
            done = w.done()
            todo = [p for p in pairs if (ids[p[0]], p[1]) not in done]
            summary.update(n_pairs=len(pairs), n_skipped=len(pairs) - len(todo))
            # group by path, keeping VE-major order inside each group
            groups: dict[str, list] = {}
            for v, pid, lc in todo:
                groups.setdefault(pid, []).append((v, lc))
            with tally.progress(len(todo), f"paths ({solver})", progress, unit="pair") as count:
                for pid, members in groups.items():
                    lc = members[0][1]
                    text = loadcase_yaml(lc)
                    opts = dict(
                        solver=solver,
                        phase=phase,
                        phase_name=phase_name,
                        load=lc,
                        device=device,
                        dtype=dtype,
                        progress=False,
                        keep_jobs=None,
                        damask_executable=None,
                        n_proc=1,
                        mpiexec="mpirun",
                        timeout=None,
                        damask_numerics=None,
                        numerics=numerics,
                    )
                    step = int(batch_size) if solver == "builtin" else 1
                    vs = [v for v, _ in members]

                    def commit(rec, pid=pid, text=text):
                        w.append(rec, pid, text)
                        count(rec, pid)

                    run_chunks(
                        [vs[s : s + step] for s in range(0, len(vs), step)],
                        lambda chunk, lc=lc: _prepare_chunk(ves, ids, chunk, phase, lc, solver, k, coarsen_rule),
                        opts,
                        1,
                        1,
                        ids,
                        commit,
                        partial=count.partial if progress else None,
                    )
    finally:
        close()
    summary["wall_s"] = time.perf_counter() - t0
    return summary
