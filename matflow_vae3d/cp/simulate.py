"""Crystal-plasticity simulations of VEs: one VE, a VE dataset, or a DAMASK grid job.

Two solvers give the same per-increment record (:class:`SimulationRecord`):
``builtin`` (the embedded torch spectral solver, :func:`matflow_vae3d.cp.spectral.solve`,
batched over VEs) and ``damask`` (DAMASK_grid, one job per VE, see
:mod:`matflow_vae3d.cp.damask_driver`).

Coarse CP (``coarsen=K``): every VE is coarsened by the factor K
(:func:`matflow_vae3d.microstructure.resample.coarsen_ve`, majority vote per K³ block by
default) before it is solved; the record says at which grid it was solved and what the
coarsening lost. K = 1 (the default) is the VE's own grid, exactly as before.

Per-VE problems (a VE without usable orientations, a VE whose lattice differs
from the material's, a solver error, divergence) become ``failed`` records with a
reason; a batch goes on. Settings that concern every VE (unknown material,
invalid phase, DAMASK_grid missing) are refused before anything is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from matflow_vae3d.cp.loadcase import LoadCase
from matflow_vae3d.cp.materials import (
    HOMOGENIZATION,
    check_builtin_supported,
    check_lattice,
    check_quaternions,
    load_phase,
    phase_yaml,
    validate_phase,
)
from matflow_vae3d.cp.results import SimulationRecord  # the record lives with its file format

SOLVERS = ("builtin", "damask")


# ----------------------------------------------------------------------- arguments
def as_loadcase(load) -> LoadCase:
    """None -> LoadCase.uniaxial() (tension along x to F_xx = 1.01 in 20 increments);
    a LoadCase; or a DAMASK load case as a dict or a path to load.yaml."""
    if load is None:
        return LoadCase.uniaxial()
    if isinstance(load, LoadCase):
        return load
    if isinstance(load, (str, Path)) and not Path(load).is_file():
        raise FileNotFoundError(f"load case file not found: {load}")
    return LoadCase.from_damask(load)


def _torch_dtype(dtype):
    if dtype is None or not isinstance(dtype, str):
        return dtype
    import torch

    try:
        return {"float64": torch.float64, "float32": torch.float32, "double": torch.float64, "float": torch.float32}[
            dtype
        ]
    except KeyError:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}") from None


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: use one of {', '.join(SOLVERS)}")


def _safe_name(ve_id) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(ve_id)) or "ve"


def _prepare(ve, phase: Mapping[str, Any], what: str) -> None:
    """The one per-VE check before a solver (ValueError naming the problem): unit
    quaternions (zero rows are grains without an orientation) and the phase's lattice.
    Shapes, finiteness and grain-map bounds are the VolumeElement's own checks; the
    solvers trust what passed here."""
    check_quaternions(ve.quaternions, what)
    check_lattice(phase, ve.lattice, what)
    if np.asarray(ve.grain_map).size == 0:
        raise ValueError(f"{what}: has no cells")


# ----------------------------------------------------------------- builtin solver
def _solve_builtin(
    ves: Sequence, phase, load: LoadCase, *, device="cpu", dtype=None, progress=False, **numerics
) -> list[SimulationRecord]:
    """Solve VEs of one grid shape in one batch; a batch-level error falls back to
    one VE at a time so that one bad VE does not fail the others."""
    from matflow_vae3d.cp.spectral import solve

    kw = dict(device=device, progress=progress, **numerics)
    if dtype is not None:
        kw["dtype"] = _torch_dtype(dtype)
    maps = np.stack([np.asarray(ve.grain_map) for ve in ves])
    quats = [np.asarray(ve.quaternions, dtype=np.float64) for ve in ves]  # checked by _prepare
    t0 = time.perf_counter()
    try:
        results = solve(maps, quats, phase, load, **kw)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        if len(ves) > 1:
            out = []
            for ve in ves:
                out += _solve_builtin([ve], phase, load, device=device, dtype=dtype, progress=progress, **numerics)
            return out
        return [
            SimulationRecord.failed(
                f"builtin solver error: {type(exc).__name__}: {exc}",
                load,
                ve_id=ves[0].ve_id,
                wall_s=time.perf_counter() - t0,
            )
        ]
    if len(results) != len(ves):
        raise RuntimeError(f"solver returned {len(results)} results for {len(ves)} VEs")
    for rec, ve in zip(results, ves):  # the solver reports the batch's time; store each VE's share
        rec.ve_id = ve.ve_id
        rec.wall_s /= len(ves)
    return results


# ------------------------------------------------------------------ DAMASK solver
def _solve_damask(
    ve,
    phase,
    phase_name,
    load,
    *,
    job_dir=None,
    keep_job=True,
    executable=None,
    n_proc=1,
    mpiexec="mpirun",
    timeout=None,
    numerics=None,
) -> SimulationRecord:
    from matflow_vae3d.cp import damask_driver

    tmp = job_dir is None
    job = Path(tempfile.mkdtemp(prefix=f"vae3d-damask-{_safe_name(ve.ve_id)}-")) if tmp else Path(job_dir)
    rec = damask_driver.simulate_damask(
        ve.grain_map,
        ve.quaternions,
        phase,
        load,
        job,
        phase_name=phase_name,
        size=ve.size,
        executable=executable,
        n_proc=n_proc,
        mpiexec=mpiexec,
        timeout=timeout,
        numerics=numerics,
        ve_id=ve.ve_id,
    )
    if rec.converged and (tmp or not keep_job):
        shutil.rmtree(job, ignore_errors=True)
    return rec


# ------------------------------------------------------------------------ coarsening
#: ``coarsen="auto"`` (docs/cp_solver.md "Coarse CP"): the largest factor of
#: :data:`AUTO_FACTORS` that divides every edge and leaves at least
#: :data:`AUTO_MIN_EDGE` voxels per edge and :data:`AUTO_MIN_VOXELS_PER_GRAIN` voxels
#: across the mean grain (equivalent-sphere diameter / K) of the VEs' smallest-grained
#: one; 1 when none does.
AUTO_FACTORS = (8, 4, 2)
AUTO_MIN_EDGE = 16
AUTO_MIN_VOXELS_PER_GRAIN = 2.5


def mean_esd_voxels(cells: int, n_grains) -> np.ndarray:
    """Equivalent-sphere diameter (voxels) of the mean grain of VEs of ``cells`` voxels
    with ``n_grains`` grains each."""
    return (6.0 * float(cells) / (np.pi * np.maximum(np.asarray(n_grains, dtype=np.float64), 1.0))) ** (1.0 / 3.0)


def auto_coarsen(grid, esd_voxels: float) -> int:
    """The factor ``coarsen='auto'`` picks for VEs of ``grid`` whose (smallest) mean
    grain is ``esd_voxels`` across (see :data:`AUTO_FACTORS`)."""
    for k in AUTO_FACTORS:
        if all(int(n) % k == 0 and int(n) // k >= AUTO_MIN_EDGE for n in grid):
            if float(esd_voxels) / k >= AUTO_MIN_VOXELS_PER_GRAIN:
                return k
    return 1


def resolve_coarsen(coarsen, grid, n_grains) -> int:
    """``coarsen`` as an int: 'auto' -> :func:`auto_coarsen` for VEs of ``grid`` with
    ``n_grains`` grains each (the smallest-grained decides); an int is returned as is."""
    if str(coarsen).strip().lower() != "auto":
        return coarsen
    cells = int(np.prod([int(n) for n in grid]))
    return auto_coarsen(grid, float(np.min(mean_esd_voxels(cells, n_grains))))


def check_coarsen(coarsen, rule: str = "majority") -> int:
    """The coarsening factor as an int >= 1 and a known rule; ValueError otherwise."""
    from matflow_vae3d.microstructure.resample import COARSEN_RULES

    try:
        k = int(coarsen)
    except (TypeError, ValueError):
        raise ValueError(f"the coarsening factor must be a positive integer, got {coarsen!r}") from None
    if k < 1 or k != float(coarsen):
        raise ValueError(f"the coarsening factor must be a positive integer, got {coarsen!r}")
    if rule not in COARSEN_RULES:
        raise ValueError(f"unknown coarsening rule {rule!r}: use {' or '.join(COARSEN_RULES)}")
    return k


def _dataset_coarsen(coarsen, ves, lattice):
    """``coarsen`` of a dataset (``lattice`` not None: a VEDataset) or a list of VEs,
    'auto' resolved from their grid and grain counts."""
    if str(coarsen).strip().lower() != "auto":
        return coarsen
    if lattice is not None:
        return resolve_coarsen("auto", ves.grid, ves.n_grains)
    grids = {tuple(np.shape(ve.grain_map)) for ve in ves}
    if len(grids) != 1:
        raise ValueError("coarsen='auto' needs VEs of one grid; give a factor")
    return resolve_coarsen("auto", grids.pop(), [ve.n_grains for ve in ves])


def check_divides(coarsen: int, grid, data_path) -> None:
    """Refuse (ValueError, one line) a factor that does not divide a dataset's grid
    (:func:`~matflow_vae3d.microstructure.resample.check_factor`), naming the dataset."""
    from matflow_vae3d.microstructure.resample import check_factor

    try:
        check_factor(coarsen, grid)
    except ValueError as exc:
        raise ValueError(f"{exc} of {Path(data_path).name}: use a divisor of every edge") from None


def coarsened(ve, coarsen: int, rule: str, what: str):
    """(VE to solve, its ResampleReport) of ``ve`` coarsened by ``coarsen``; ValueError
    naming the VE when the factor does not divide its grid."""
    from matflow_vae3d.microstructure.resample import coarsen_ve

    try:
        return coarsen_ve(ve, coarsen, rule)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def annotate(rec: SimulationRecord, report, coarsen: int) -> SimulationRecord:
    """Record in ``rec`` the grid solved and what coarsening lost."""
    rec.coarsen = int(coarsen)
    if report is not None:
        rec.grid_run = tuple(report.grid_after)
        rec.vanished_grains = int(report.vanished_grains)
        rec.vanished_volume_fraction = float(report.vanished_volume_fraction)
    return rec


# ------------------------------------------------------------------------- one VE
def simulate_ve(
    ve,
    material="Mg",
    load=None,
    solver: str = "builtin",
    *,
    device="cpu",
    dtype=None,
    progress: bool = False,
    job_dir=None,
    keep_job: bool = True,
    damask_executable=None,
    n_proc: int = 1,
    mpiexec="mpirun",
    timeout: float | None = None,
    damask_numerics: Mapping[str, Any] | None = None,
    coarsen: int = 1,
    coarsen_rule: str = "majority",
    **numerics,
) -> SimulationRecord:
    """Simulate one VE and return its per-increment record.

    ve : VolumeElement (grain_map (nx, ny, nz), quaternions (G, 4), lattice)
    material : preset name ('Mg', 'Cu'), YAML path or phase dict
    load : LoadCase, DAMASK load dict/path, or None for uniaxial tension along x
    solver : 'builtin' (torch; ``device``, ``dtype``, ``**numerics`` go to
        ``spectral.solve``) or 'damask' (DAMASK_grid in ``job_dir``, a temporary
        directory when None; kept when the run fails; ``n_proc`` MPI processes).
    coarsen : solve the VE coarsened by this factor (1: its own grid; 'auto':
        :func:`auto_coarsen`), by
        ``coarsen_rule`` ('majority' or 'nearest'); the record's ``grid_run`` and
        ``vanished_*`` say what was solved.

    Never raises for a bad material, a VE without orientations, a lattice mismatch
    or divergence: the record is 'failed' with the reason.
    """
    _check_solver(solver)
    load = as_loadcase(load)
    ve_id = getattr(ve, "ve_id", None)
    what = f"VE {ve_id!r}" if ve_id is not None else "VE"
    try:
        k = check_coarsen(resolve_coarsen(coarsen, ve.grain_map.shape, [ve.n_grains]), coarsen_rule)
        phase_name, phase = load_phase(material)
        if solver == "builtin":
            check_builtin_supported(phase)
        _prepare(ve, phase, what)
        ve, report = coarsened(ve, k, coarsen_rule, what)
    except (ValueError, FileNotFoundError) as exc:
        return SimulationRecord.failed(f"refused: {exc}", load, ve_id=ve_id, solver=solver)
    if solver == "builtin":
        rec = _solve_builtin([ve], phase, load, device=device, dtype=dtype, progress=progress, **numerics)[0]
        return annotate(rec, report, k)
    try:
        rec = _solve_damask(
            ve,
            phase,
            phase_name,
            load,
            job_dir=job_dir,
            keep_job=keep_job,
            executable=damask_executable,
            n_proc=n_proc,
            mpiexec=mpiexec,
            timeout=timeout,
            numerics=damask_numerics,
        )
        return annotate(rec, report, k)
    except FileNotFoundError as exc:
        return SimulationRecord.failed(str(exc), load, ve_id=ve_id, solver=solver)


# ------------------------------------------------------------------------ dataset
def _open_ves(data):
    """(sequence-like of VEs, ids, lattice or None, closer) for a path or a sequence."""
    if isinstance(data, (str, Path)):
        from matflow_vae3d.datasets import VEDataset

        if not Path(data).is_file():
            raise FileNotFoundError(f"VE dataset not found: {data}")
        ds = VEDataset(data)
        return ds, ds.ve_ids, ds.lattice, ds.close
    ves = list(data)
    ids = [ve.ve_id if ve.ve_id is not None else f"ve-{i:06d}" for i, ve in enumerate(ves)]
    for ve, i in zip(ves, ids):
        if ve.ve_id is None:
            ve.ve_id = i
    return ves, ids, None, lambda: None


def _prepare_chunk(
    ves, ids, chunk, phase, load: LoadCase, solver: str, coarsen: int = 1, rule: str = "majority", reports=None
) -> tuple[list, dict[int, SimulationRecord]]:
    """Read and check the VEs of rows ``chunk``: ([(row, VE) ready to solve, coarsened
    by ``coarsen``], {row: 'failed' record} for VEs that cannot be read or do not fit the
    phase or the factor). ``reports``: a dict that gets {ve id: ResampleReport}."""
    ready, records = [], {}
    for i in chunk:
        try:
            ve = ves[i]
            if ve.ve_id is None:
                ve.ve_id = ids[i]
            _prepare(ve, phase, f"VE {ids[i]!r}")
            ve, report = coarsened(ve, coarsen, rule, f"VE {ids[i]!r}")
            if reports is not None:
                reports[ids[i]] = report
            ready.append((i, ve))
        except Exception as exc:  # unreadable or invalid VE: record, go on
            records[i] = SimulationRecord.failed(f"refused: {exc}", load, ve_id=ids[i], solver=solver)
    return ready, records


#: most cells the builtin solver takes in one call (8 VEs of 16^3); larger VEs go one at a
#: time. Peak memory of a call: about 0.27 GB (Python, torch) + 4-8 kB per cell (Mg 64^3:
#: 1.4 GB; docs/cp_solver.md "Side by side with DAMASK_grid, memory, progress").
MAX_BATCH_VOXELS = 8 * 16**3


def _increment_reporter(opts: Mapping[str, Any], before: int, n: int):
    """The builtin solver's ``progress`` for a call on ``n`` VEs of a chunk after ``before``
    others: the VEs' worth of work done in the chunk, to ``opts['progress']`` (a callable,
    in this process) or ``opts['progress_queue']`` (from a worker process, keyed by its pid)."""
    report, queue = opts.get("progress"), opts.get("progress_queue")
    if queue is not None:
        pid = os.getpid()
        return lambda inc, total: queue.put((pid, before + n * inc / total))
    if callable(report):
        return lambda inc, total: report(before + n * inc / total)
    return bool(report)


def _solve_chunk(ready: Sequence, opts: Mapping[str, Any]) -> dict[int, SimulationRecord]:
    """Solve prepared ``(index, VE)`` pairs: the builtin solver batches VEs of one
    grid shape; DAMASK runs one job per VE. Returns {index: record}."""
    records: dict[int, SimulationRecord] = {}
    if opts["solver"] == "builtin":
        groups: dict[tuple, list] = {}
        for i, ve in ready:
            groups.setdefault(tuple(np.shape(ve.grain_map)), []).append((i, ve))
        for shape, group in groups.items():
            # at most MAX_BATCH_VOXELS cells per solver call: memory grows with the batch
            # (about 4-8 kB per cell), so 64^3 VEs are solved one at a time
            per = max(1, MAX_BATCH_VOXELS // int(np.prod(shape)))
            for s in range(0, len(group), per):
                part = group[s : s + per]
                recs = _solve_builtin(
                    [ve for _, ve in part],
                    opts["phase"],
                    opts["load"],
                    device=opts["device"],
                    dtype=opts["dtype"],
                    progress=_increment_reporter(opts, len(records), len(part)),
                    **opts["numerics"],
                )
                for (i, _), rec in zip(part, recs):
                    rec.grid_run = shape
                    records[i] = rec
        return records
    keep_jobs = opts["keep_jobs"]
    for i, ve in ready:
        job = None if keep_jobs is None else Path(keep_jobs) / _safe_name(ve.ve_id)
        if job is not None and job.exists() and any(job.iterdir()):
            job = Path(tempfile.mkdtemp(prefix=_safe_name(ve.ve_id) + "-", dir=Path(keep_jobs)))
        records[i] = _solve_damask(
            ve,
            opts["phase"],
            opts["phase_name"],
            opts["load"],
            job_dir=job,
            keep_job=True,
            executable=opts["damask_executable"],
            n_proc=opts["n_proc"],
            mpiexec=opts["mpiexec"],
            timeout=opts["timeout"],
            numerics=opts["damask_numerics"],
        )
        records[i].grid_run = tuple(np.shape(ve.grain_map))
    return records


def _solve_chunk_in_worker(ready: Sequence, opts: Mapping[str, Any]) -> tuple[int, dict[int, SimulationRecord]]:
    return os.getpid(), _solve_chunk(ready, opts)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_pool(chunks, prepared, opts, workers: int, threads: int, ids, commit, partial=None) -> None:
    """Solve ``chunks`` in ``workers`` processes, at most 2 x workers in flight,
    committing records in chunk order (a file does not depend on ``workers``).
    ``partial(key, VEs)``: credits the work done inside the chunks in flight (the workers
    report each increment through a queue, read here by a thread)."""
    import multiprocessing
    import threading

    ctx = multiprocessing.get_context("spawn")  # torch is not fork-safe once used
    if partial is None:
        _pool_loop(chunks, prepared, opts, workers, threads, ids, commit, None, ctx)
        return
    manager = ctx.Manager()
    queue = manager.Queue()
    opts = {**opts, "progress": False, "progress_queue": queue}

    def read() -> None:
        while (msg := queue.get()) is not None:
            partial(*msg)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _pool_loop(chunks, prepared, opts, workers, threads, ids, commit, partial, ctx)
    finally:
        queue.put(None)
        reader.join(5)
        manager.shutdown()


def _pool_loop(chunks, prepared, opts, workers, threads, ids, commit, partial, ctx) -> None:
    """:func:`_run_pool`'s pool: submit, and commit in chunk order as results come."""
    import collections
    from concurrent.futures import ProcessPoolExecutor

    pending: collections.deque = collections.deque()

    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)
    ) as pool:

        def drain(keep: int) -> None:
            while len(pending) > keep:
                chunk, records, fut = pending.popleft()
                pid, recs = fut.result()
                records.update(recs)
                if partial is not None:
                    partial(pid, 0.0)  # its rows are committed now
                for i in chunk:
                    rec = records[i]
                    rec.ve_id = ids[i]
                    commit(rec)

        try:
            for chunk in chunks:
                ready, records = prepared(chunk)
                pending.append((chunk, records, pool.submit(_solve_chunk_in_worker, ready, opts)))
                drain(2 * workers)
            drain(0)
        except BaseException:
            for _, _, fut in pending:
                fut.cancel()
            raise


def loadcase_yaml(load: LoadCase) -> str:
    """The load case as DAMASK load.yaml text (stored in results files)."""
    return yaml.safe_dump(load.to_damask(), sort_keys=False, default_flow_style=None)


def simulate_dataset(
    data_path,
    out_path,
    material="Mg",
    solver: str = "builtin",
    load=None,
    batch_size: int = 8,
    device="cpu",
    limit: int | None = None,
    progress: bool | str = True,
    *,
    dtype=None,
    keep_jobs=None,
    damask_executable=None,
    n_proc: int = 1,
    mpiexec="mpirun",
    timeout: float | None = None,
    damask_numerics: Mapping[str, Any] | None = None,
    workers: int = 1,
    worker_threads: int = 1,
    coarsen: int = 1,
    coarsen_rule: str = "majority",
    source: str | None = None,
    **numerics,
) -> dict[str, Any]:
    """Simulate the VEs of a dataset and append one row per VE to a CP results file.

    data_path : VE dataset file (``vae3d generate``), or a sequence of VolumeElements
    out_path : CP results file; an existing one is resumed (VE ids already in it
        are skipped) when its material, load case, solver and lattice agree
    batch_size : VEs per chunk, solved together by the builtin solver up to
        :data:`MAX_BATCH_VOXELS` cells per call (DAMASK: one job per VE)
    limit : only the first ``limit`` VEs of the dataset are considered
    keep_jobs : folder for DAMASK job directories (``<keep_jobs>/<ve_id>``), kept
        after the run; by default temporary ones, deleted unless the run failed
    workers : solver processes running chunks (``batch_size`` VEs, or one DAMASK
        job) side by side; each uses ``worker_threads`` torch threads. Rows are
        written by this process in dataset order whatever ``workers`` is, so a
        results file does not depend on it.
    coarsen, coarsen_rule : solve every VE coarsened by this factor (1: its own grid;
        see :func:`simulate_ve`), or 'auto' (:func:`auto_coarsen` for the dataset's grid
        and smallest grains); recorded in the file, which resumes only at the same
        factor. A factor that does not divide a dataset's grid is refused up front.
    source : the file's ``source`` attribute (default: ``data_path``), e.g. the user's
        .vti files a temporary dataset was made from.

    Returns a summary dict: out, n_considered, n_skipped (already in the file),
    n_run, n_converged, n_failed, wall_s, failed (list of (ve_id, reason)).
    Raises ValueError/FileNotFoundError, before anything is written, for an
    unusable material, an unsupported feature, a dataset lattice that differs from
    the material's, or a missing DAMASK_grid.
    """
    from matflow_vae3d.cp.results import ResultsWriter

    load = as_loadcase(load)
    phase_name, phase = _check_settings(
        solver, material, batch_size, limit, workers, worker_threads, dtype, damask_executable
    )
    ves, ids, lattice, close = _open_ves(data_path)
    try:
        k = check_coarsen(_dataset_coarsen(coarsen, ves, lattice), coarsen_rule)
    except BaseException:
        close()
        raise
    t_start = time.perf_counter()
    tally = _Tally(str(out_path))
    reports: dict[str, Any] = {}
    try:
        if lattice is not None:
            check_lattice(phase, lattice, "dataset")
            check_divides(k, ves.grid, data_path)
        n = len(ids) if limit is None else min(len(ids), int(limit))
        writer = ResultsWriter(
            out_path,
            t=load.times(),
            material=phase_yaml(phase),
            loadcase=loadcase_yaml(load),
            solver=solver,
            lattice=phase["lattice"],
            coarsen=k,
            coarsen_rule=coarsen_rule,
            extra_attrs={
                "phase_name": phase_name,
                "source": source or (str(data_path) if isinstance(data_path, (str, Path)) else ""),
            },
        )
        with writer:
            todo = pending_rows(ids, n, writer.done_ids())
            tally.summary.update(n_considered=n, n_skipped=n - len(todo))
            opts = dict(
                solver=solver,
                phase=phase,
                phase_name=phase_name,
                load=load,
                device=device,
                dtype=dtype,
                progress=False,  # the VE bar moves with every increment (run_chunks' partial)
                keep_jobs=keep_jobs,
                damask_executable=damask_executable,
                n_proc=n_proc,
                mpiexec=mpiexec,
                timeout=timeout,
                damask_numerics=damask_numerics,
                numerics=numerics,
            )
            step = int(batch_size) if solver == "builtin" else 1
            chunks = [todo[s : s + step] for s in range(0, len(todo), step)]
            with tally.progress(len(todo), f"simulate ({solver})", progress) as done:

                def commit(rec) -> None:
                    annotate(rec, reports.pop(rec.ve_id, None), k)
                    writer.append(rec)
                    done(rec)

                run_chunks(
                    chunks,
                    lambda chunk: _prepare_chunk(ves, ids, chunk, phase, load, solver, k, coarsen_rule, reports),
                    opts,
                    int(workers),
                    int(worker_threads),
                    ids,
                    commit,
                    partial=done.partial if progress else None,
                )
    finally:
        close()
    tally.summary["wall_s"] = time.perf_counter() - t_start
    tally.summary["coarsen"] = k
    return tally.summary


def _check_settings(solver, material, batch_size, limit, workers, worker_threads, dtype, damask_executable):
    """Settings that concern every VE, refused before anything is written; returns
    (phase_name, phase) of the material."""
    _check_solver(solver)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if int(workers) < 1 or int(worker_threads) < 1:
        raise ValueError(f"workers and worker_threads must be >= 1, got {workers} and {worker_threads}")
    phase_name, phase = load_phase(material)
    if solver == "builtin":
        check_builtin_supported(phase)
        _torch_dtype(dtype)
    else:
        from matflow_vae3d.cp.damask_driver import find_damask_grid

        find_damask_grid(damask_executable)
    return phase_name, phase


def pending_rows(ids: Sequence[str], n: int, done) -> list[int]:
    """Rows among the first ``n`` whose id is neither in ``done`` (a results file's ids)
    nor a repeat of an earlier row's id, in dataset order."""
    todo, seen = [], set(done)
    for i in range(n):
        if ids[i] not in seen:
            seen.add(ids[i])
            todo.append(i)
    return todo


#: seconds between the progress lines of ``progress='log'`` (no terminal: MatFlow tasks)
LOG_EVERY_S = 60.0


class _Tally:
    """The summary of a campaign: counts and failures of the records committed.
    ``considered``: the name of the count of rows considered (n_considered, n_pairs)."""

    def __init__(self, out: str, considered: str = "n_considered") -> None:
        self.summary: dict[str, Any] = {
            "out": out,
            considered: 0,
            "n_skipped": 0,
            "n_run": 0,
            "n_converged": 0,
            "n_failed": 0,
            "wall_s": 0.0,
            "failed": [],
        }

    @contextlib.contextmanager
    def progress(self, total: int, desc: str, show: bool | str, unit: str = "VE"):
        """Yields ``done(record, *tag)``: count a written record (a failure as
        (ve_id, *tag, first line of its reason)) and move a progress bar."""
        from tqdm.auto import tqdm

        log = show == "log"  # a line every LOG_EVERY_S seconds (logs of batch jobs, MatFlow)
        bar = tqdm(total=total, unit=unit, desc=desc, disable=not show or log)
        s = self.summary
        flight: dict[Any, float] = {}  # rows' worth of work done in chunks not yet committed
        t0 = last = time.perf_counter()

        def show_n() -> None:
            nonlocal last
            # never backwards: a chunk's credit is dropped just before its rows commit
            bar.n = max(bar.n, min(s["n_run"] + sum(flight.values()), total))
            bar.refresh()
            now = time.perf_counter()
            if log and total and (now - last >= LOG_EVERY_S or s["n_run"] == total):
                last = now
                eta = (now - t0) * (total - bar.n) / bar.n if bar.n > 0 else float("nan")
                print(
                    f"{desc}: {bar.n:.1f}/{total} {unit}s ({100 * bar.n / total:.0f} %), "
                    f"{now - t0:.0f} s, ETA {eta:.0f} s, {s['n_failed']} failed",
                    file=sys.stderr,
                    flush=True,
                )

        def partial(key, rows: float) -> None:
            flight[key] = float(rows)
            show_n()

        def done(rec, *tag) -> None:
            s["n_run"] += 1
            if rec.converged:
                s["n_converged"] += 1
            else:
                s["n_failed"] += 1
                s["failed"].append((rec.ve_id, *tag, rec.reason.split("\n")[0]))
            bar.set_postfix(converged=s["n_converged"], failed=s["n_failed"], refresh=False)
            show_n()

        done.partial = partial  # type: ignore[attr-defined]
        try:
            yield done
        finally:
            bar.close()


def run_chunks(
    chunks, prepared, opts: Mapping[str, Any], workers: int, threads: int, ids, commit, partial=None
) -> None:
    """Solve the chunks of rows (in this process, or ``workers`` processes of
    ``threads`` torch threads) and ``commit`` each row's record in dataset order.
    ``partial(key, rows)`` (optional, e.g. :meth:`_Tally.progress`'s): the rows' worth of
    work done so far in a chunk in flight, reported after every CP increment."""
    if workers > 1:
        _run_pool(chunks, prepared, opts, workers, threads, ids, commit, partial)
        return
    if partial is not None:
        opts = {**opts, "progress": lambda rows: partial("main", rows)}
    for chunk in chunks:
        ready, records = prepared(chunk)
        records.update(_solve_chunk(ready, opts))
        if partial is not None:
            partial("main", 0.0)
        for i in chunk:
            rec = records[i]
            rec.ve_id = ids[i]
            commit(rec)


# ------------------------------------------------------------------ DAMASK inputs
def read_damask_inputs(vti, material_yaml, load_yaml, *, solver: str = "builtin") -> dict[str, Any]:
    """Read and check a DAMASK grid job for the embedded solver.

    Supported: geometry without initial conditions; a material.yaml with one phase
    (Hooke + phenopowerlaw for the builtin solver), homogenizations of type
    ``pass`` with one constituent, one constituent per material with ``O`` and
    v = 1; a load case with dot_F/F and P conditions (:meth:`LoadCase.from_damask`).
    Anything else is refused by name (ValueError).

    Returns a dict: grain_map (nx, ny, nz) int32 (material index per cell),
    quaternions (n_materials, 4), phase_name, phase, load (LoadCase), size (3,) m.
    """
    import damask

    from matflow_vae3d.microstructure.io import read_material_yaml

    for p in (vti, material_yaml, load_yaml):
        if not Path(p).is_file():
            raise FileNotFoundError(f"DAMASK input not found: {p}")
    try:
        geom = damask.GeomGrid.load(vti)
    except Exception as exc:
        raise ValueError(f"{vti}: not a DAMASK geometry (.vti) file ({exc})") from exc
    if geom.initial_conditions:
        raise ValueError(f"{vti}: initial conditions {sorted(geom.initial_conditions)} are not supported")
    mf = read_material_yaml(material_yaml)  # the material.yaml layout rules (one owner)
    if len(mf.phases) != 1:
        raise ValueError(
            f"{material_yaml}: several phases ({', '.join(map(str, mf.phases))}) are not supported; "
            "the embedded solver handles single-phase polycrystals"
        )
    mf.check_full_field()
    phase_name, phase = next(iter(mf.phases.items()))
    phase = validate_phase(phase)
    if solver == "builtin":
        check_builtin_supported(phase, str(material_yaml))
    q = check_quaternions(mf.quaternions, f"{material_yaml}")
    gm = np.asarray(geom.material)
    if gm.min() < 0 or gm.max() >= len(q):
        raise ValueError(
            f"{vti}: material indices span [{gm.min()}, {gm.max()}] but {material_yaml} defines {len(q)} materials"
        )
    load = as_loadcase(load_yaml)
    return {
        "grain_map": gm.astype(np.int32),
        "quaternions": q,
        "phase_name": str(phase_name),
        "phase": phase,
        "load": load,
        "size": np.asarray(geom.size, dtype=np.float64),
    }


def simulate_damask_inputs(
    vti,
    material_yaml,
    load_yaml,
    solver: str = "builtin",
    out=None,
    *,
    device="cpu",
    dtype=None,
    progress: bool = False,
    job_dir=None,
    damask_executable=None,
    n_proc: int = 1,
    mpiexec="mpirun",
    timeout: float | None = None,
    **numerics,
) -> SimulationRecord:
    """Run a DAMASK grid job (geometry .vti, material.yaml, load.yaml) and return its record.

    solver 'builtin' runs it on the embedded solver, without DAMASK (unsupported
    input features are refused by name, see :func:`read_damask_inputs`); 'damask'
    runs DAMASK_grid on copies of the same files in ``job_dir``. With ``out``, the
    record is also written as one row (ve_id = the .vti file's stem) of a CP
    results file: per-increment volume averages ``sigma``, ``F``, ``P`` (1, n_inc +
    1, 3, 3) and ``t`` (n_inc + 1,).
    """
    from matflow_vae3d.cp.results import ResultsWriter

    _check_solver(solver)
    job = read_damask_inputs(vti, material_yaml, load_yaml, solver=solver)
    load, phase = job["load"], job["phase"]
    ve_id = Path(vti).name.removesuffix(".vti")
    writer = None
    if out is not None:
        writer = ResultsWriter(
            out,
            t=load.times(),
            material=phase_yaml(phase),
            loadcase=loadcase_yaml(load),
            solver=solver,
            lattice=phase["lattice"],
            extra_attrs={"phase_name": job["phase_name"], "source": str(vti)},
        )
        if ve_id in writer.done_ids():
            writer.close()
            raise ValueError(f"{out} already holds a result for {ve_id!r}; choose another --out")
    try:
        if solver == "builtin":
            from matflow_vae3d.microstructure.volume_element import VolumeElement

            ve = VolumeElement(job["grain_map"], job["quaternions"], phase["lattice"], size=job["size"], ve_id=ve_id)
            rec = _solve_builtin([ve], phase, load, device=device, dtype=dtype, progress=progress, **numerics)[0]
        else:
            from matflow_vae3d.cp import damask_driver

            d = Path(job_dir) if job_dir is not None else Path(tempfile.mkdtemp(prefix="vae3d-damask-"))
            d.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(vti, d / damask_driver.GEOM_FILE)
            shutil.copyfile(material_yaml, d / damask_driver.MATERIAL_FILE)
            shutil.copyfile(load_yaml, d / damask_driver.LOAD_FILE)
            rec = damask_driver.run_job(
                d, load, executable=damask_executable, n_proc=n_proc, mpiexec=mpiexec, timeout=timeout, ve_id=ve_id
            )
        rec.ve_id = ve_id
        if writer is not None:
            writer.append(rec)
    finally:
        if writer is not None:
            writer.close()
    return rec


__all__ = [
    "SimulationRecord",
    "SOLVERS",
    "as_loadcase",
    "simulate_ve",
    "simulate_dataset",
    "read_damask_inputs",
    "simulate_damask_inputs",
    "loadcase_yaml",
    "HOMOGENIZATION",
]
