"""Run DAMASK_grid (the reference solver) on a VE and read its volume averages.

A job directory holds ``grid.vti`` (damask.GeomGrid), ``material.yaml``
(damask.ConfigMaterial), ``load.yaml`` (damask.LoadcaseGrid) and, after the run,
``job.hdf5``, ``job.sta`` and ``job.log`` (DAMASK's stdout and stderr). A run that
does not converge is reported as failed with DAMASK's reason; its job directory,
partial output included, is kept.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matflow_vae3d.cp.loadcase import LoadCase
from matflow_vae3d.cp.results import SimulationRecord

JOBNAME = "job"
GEOM_FILE = "grid.vti"
MATERIAL_FILE = "material.yaml"
LOAD_FILE = "load.yaml"
NUMERICS_FILE = "numerics.yaml"


# ---------------------------------------------------------------------- executable
def find_damask_grid(executable: str | os.PathLike | None = None) -> str:
    """Path of the DAMASK_grid executable.

    Looked up in this order: the ``executable`` argument, the environment variable
    ``DAMASK_GRID``, ``DAMASK_grid`` on PATH. Raises FileNotFoundError saying how to
    configure it.
    """
    for cand, origin in ((executable, "argument"), (os.environ.get("DAMASK_GRID"), "DAMASK_GRID")):
        if cand:
            found = shutil.which(str(cand))
            if found is None:
                raise FileNotFoundError(
                    f"DAMASK_grid executable {str(cand)!r} (from {origin}) not found or not executable"
                )
            return found
    found = shutil.which("DAMASK_grid")
    if found is None:
        raise FileNotFoundError(
            "DAMASK_grid not found: put it on PATH, set DAMASK_GRID=/path/to/DAMASK_grid, "
            "or use the builtin solver (--solver builtin)"
        )
    return found


def damask_command(executable: str, n_proc: int = 1, mpiexec: str | Sequence[str] = "mpirun") -> list[str]:
    """The argument list that runs DAMASK_grid in a job directory (relative file names)."""
    cmd = [executable, "--geom", GEOM_FILE, "--load", LOAD_FILE, "--material", MATERIAL_FILE, "--jobname", JOBNAME]
    if int(n_proc) > 1:
        launcher = shlex.split(mpiexec) if isinstance(mpiexec, str) else list(mpiexec)
        cmd = launcher + ["-np", str(int(n_proc))] + cmd
    return cmd


# -------------------------------------------------------------------------- inputs
def write_inputs(
    job_dir,
    grain_map: np.ndarray,
    quaternions: np.ndarray,
    phase: Mapping[str, Any],
    load: LoadCase,
    *,
    phase_name: str = "phase",
    size=(1.0, 1.0, 1.0),
    numerics: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write grid.vti, material.yaml and load.yaml (and numerics.yaml if given).

    grain_map : (nx, ny, nz) int, 0-based grain index per cell, [ix, iy, iz].
    quaternions : (G, 4) (w, x, y, z), DAMASK convention.
    phase : DAMASK phase entry (``F`` and ``P`` are added to its mechanical output
        when missing: the averages are computed from them); size : (3,) m.
    Returns the paths by role ('geom', 'material', 'load', 'numerics').
    """
    import damask

    from matflow_vae3d.cp.materials import material_config
    from matflow_vae3d.microstructure.io import geom_grid

    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    geom = geom_grid(grain_map, size)  # checks the grain map
    gm = np.asarray(grain_map)
    q = np.asarray(quaternions, dtype=np.float64)
    if gm.min() < 0 or gm.max() >= len(q):
        raise ValueError(f"grain_map indices span [{gm.min()}, {gm.max()}] but {len(q)} orientations are given")
    ph: dict[str, Any] = copy.deepcopy(dict(phase))
    outputs = ph.setdefault("mechanical", {}).setdefault("output", [])
    ph["mechanical"]["output"] = list(outputs) + [o for o in ("F", "P") if o not in outputs]
    paths = {"geom": job_dir / GEOM_FILE, "material": job_dir / MATERIAL_FILE, "load": job_dir / LOAD_FILE}
    geom.save(paths["geom"])
    material_config(q, ph, phase_name).save(paths["material"])
    damask.LoadcaseGrid(load.to_damask()).save(paths["load"])
    if numerics:
        paths["numerics"] = job_dir / NUMERICS_FILE
        damask.YAML(dict(numerics)).save(paths["numerics"])
    return paths


# ------------------------------------------------------------------------- running
@dataclasses.dataclass
class DamaskRun:
    """Outcome of one DAMASK_grid call."""

    returncode: int | None
    wall_s: float
    log: Path
    command: list[str]
    timed_out: bool = False


def run_damask(
    job_dir, *, executable=None, n_proc: int = 1, mpiexec="mpirun", timeout: float | None = None, numerics: bool = False
) -> DamaskRun:
    """Run DAMASK_grid in ``job_dir`` (inputs written by :func:`write_inputs`).

    Output goes to ``job_dir/job.log``. Raises FileNotFoundError when DAMASK_grid
    (or, for n_proc > 1, the MPI launcher) cannot be found.
    """
    job_dir = Path(job_dir)
    exe = find_damask_grid(executable)
    cmd = damask_command(exe, n_proc, mpiexec)
    if numerics:
        cmd += ["--numerics", NUMERICS_FILE]
    if int(n_proc) > 1 and shutil.which(cmd[0]) is None:
        raise FileNotFoundError(f"MPI launcher {cmd[0]!r} not found (needed for n_proc={n_proc})")
    log = job_dir / f"{JOBNAME}.log"
    t0 = time.perf_counter()
    timed_out = False
    with open(log, "wb") as fh:
        fh.write(("$ " + shlex.join(cmd) + "\n").encode())
        fh.flush()
        # own process group, so that a timeout ends the launcher and all its ranks
        proc = subprocess.Popen(cmd, cwd=job_dir, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException as exc:  # timeout or Ctrl-C: stop the job we started
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            rc, timed_out = None, True
    return DamaskRun(rc, time.perf_counter() - t0, log, cmd, timed_out)


def tail(path, n: int = 15) -> str:
    """The last n lines of a text file ('' if it does not exist)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n:])


_BOX_TITLE = re.compile(r"^\s*[│|]\s*error\s+(\d+)\s*[│|]\s*$")


def damask_error(log_text: str) -> str:
    """DAMASK's own message from its last error box in a log ('' if there is none), e.g.
    'DAMASK error 950: max number of cutbacks exceeded, terminating'."""
    found = ""
    lines = log_text.splitlines()
    for k, line in enumerate(lines):
        m = _BOX_TITLE.match(line)
        if not m:
            continue
        msg = []
        for body in lines[k + 1 :]:
            b = body.strip()
            if b.startswith(("└", "+-", "\\")) or not b:
                break
            if b.startswith(("├", "|-")):
                continue
            text = b.strip("│|").strip()
            if text:
                msg.append(text)
        found = f"DAMASK error {m.group(1)}" + (f": {' '.join(msg)}" if msg else "")
    return found


# ------------------------------------------------------------------------- outputs
def read_sta(path) -> dict[str, np.ndarray]:
    """Parse a DAMASK status file (.sta): one row per converged (sub)increment.

    Returns arrays ``increment`` (int), ``time`` (s), ``cutback_level`` (int),
    ``converged`` (bool), ``iterations`` (int) and, when present,
    ``stag_iterations`` (int). Empty arrays for a missing or empty file.
    """
    names = ("increment", "time", "cutback_level", "converged", "iterations", "stag_iterations")
    cols: dict[str, list] = {k: [] for k in names}
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < 5:
            continue
        cols["increment"].append(int(parts[0]))
        cols["time"].append(float(parts[1]))
        cols["cutback_level"].append(int(parts[2]))
        cols["converged"].append(parts[3].upper().startswith("T"))
        cols["iterations"].append(int(parts[4]))
        if len(parts) > 5:
            cols["stag_iterations"].append(int(parts[5]))
    out = {
        k: np.asarray(v, dtype=(bool if k == "converged" else float if k == "time" else int)) for k, v in cols.items()
    }
    if len(out["stag_iterations"]) != len(out["increment"]):
        del out["stag_iterations"]
    return out


def iterations_per_increment(sta: Mapping[str, np.ndarray], n_increments: int) -> np.ndarray:
    """(n_increments,) int: solver iterations per increment, sub-steps summed (0 if absent)."""
    it = np.zeros(n_increments, dtype=int)
    for inc, n in zip(sta["increment"], sta["iterations"]):
        if 1 <= inc <= n_increments:
            it[inc - 1] += n
    return it


def volume_averages(F: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain (unweighted) cell means of F, P and the Cauchy stress.

    F, P : (..., N_cells, 3, 3), P in Pa.
    Returns F_avg, P_avg, sigma_avg, each (..., 3, 3); sigma = P F^T / det F per
    cell, then the mean (as DAMASK's add_stress_Cauchy followed by a mean).
    """
    F = np.asarray(F, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    if F.shape != P.shape or F.shape[-2:] != (3, 3) or F.ndim < 3:
        raise ValueError(f"F and P must both have shape (..., N, 3, 3), got {F.shape} and {P.shape}")
    sigma = np.einsum("...ik,...jk->...ij", P, F) / np.linalg.det(F)[..., None, None]
    return F.mean(axis=-3), P.mean(axis=-3), sigma.mean(axis=-3)


def read_result(hdf5_path, n_increments: int | None = None) -> dict[str, np.ndarray]:
    """Per-increment volume averages from a DAMASK result file (damask.Result).

    Returns ``increment`` (n_frames,) int, ``t`` (n_frames,) s and ``F``, ``P``
    (Pa), ``sigma`` (Pa), each (n_frames, 3, 3). With ``n_increments``, the arrays
    are placed on the full state grid (n_increments + 1 rows, NaN for increments
    DAMASK did not write).
    """
    import damask

    r = damask.Result(hdf5_path)
    incs, ts, Fs, Ps, Ss = [], [], [], [], []
    for inc_name, t in zip(r.increments, r.times):
        d = r.view(increments=inc_name).place(["F", "P"], flatten=False)
        if not d:
            continue
        fields = d[inc_name]["phase"]["mechanical"]
        F = np.ma.filled(np.ma.asarray(fields["F"]), np.nan)
        P = np.ma.filled(np.ma.asarray(fields["P"]), np.nan)
        Fa, Pa, Sa = volume_averages(F, P)
        incs.append(int(inc_name.split("_")[-1]))
        ts.append(float(t))
        Fs.append(Fa)
        Ps.append(Pa)
        Ss.append(Sa)
    out = {
        "increment": np.asarray(incs, dtype=int),
        "t": np.asarray(ts),
        "F": np.asarray(Fs).reshape(-1, 3, 3),
        "P": np.asarray(Ps).reshape(-1, 3, 3),
        "sigma": np.asarray(Ss).reshape(-1, 3, 3),
    }
    if n_increments is not None:
        full = {k: np.full((n_increments + 1, 3, 3), np.nan) for k in ("F", "P", "sigma")}
        for i, inc in enumerate(out["increment"]):
            if inc <= n_increments:
                for k in full:
                    full[k][inc] = out[k][i]
        out.update(full)
    return out


# ------------------------------------------------------------------------ one job
def run_job(
    job_dir,
    load: LoadCase,
    *,
    executable=None,
    n_proc: int = 1,
    mpiexec="mpirun",
    timeout: float | None = None,
    numerics: bool = False,
    ve_id: str | None = None,
):
    """Run DAMASK_grid on the inputs in ``job_dir`` and return a SimulationRecord.

    Converged means: exit code 0, every increment in the .sta with Converged = T,
    and every increment's averages in the HDF5 (with f_out = 1). Otherwise the
    record is 'failed', its reason names the exit code, the increments reached and
    the last lines of DAMASK's log, and NaN fills the states not reached.
    """

    job_dir = Path(job_dir).resolve()
    n_inc = load.n_increments
    run = run_damask(job_dir, executable=executable, n_proc=n_proc, mpiexec=mpiexec, timeout=timeout, numerics=numerics)
    sta = read_sta(job_dir / f"{JOBNAME}.sta")
    iterations = iterations_per_increment(sta, n_inc)
    hdf5 = job_dir / f"{JOBNAME}.hdf5"
    data, read_error = None, ""
    if hdf5.is_file():
        try:
            data = read_result(hdf5, n_inc)
        except Exception as exc:  # partial or corrupt output of a crashed run
            read_error = f"result file unreadable ({type(exc).__name__}: {exc})"
    # increments reached: converged increments in a row from the start
    done = set(int(i) for i, c in zip(sta["increment"], sta["converged"]) if c)
    reached = 0
    while reached + 1 in done:
        reached += 1
    nan = np.full((n_inc + 1, 3, 3), np.nan)
    F, P, sigma = (nan.copy(), nan.copy(), nan.copy()) if data is None else (data["F"], data["P"], data["sigma"])
    # states beyond the last converged increment are not trusted
    for a in (F, P, sigma):
        a[reached + 1 :] = np.nan
    problems = []
    if run.timed_out:
        problems.append(f"DAMASK_grid timed out after {timeout} s")
    elif run.returncode != 0:
        own = damask_error(Path(run.log).read_text(errors="replace")) if Path(run.log).is_file() else ""
        problems.append(f"DAMASK_grid exited with code {run.returncode}" + (f" ({own})" if own else ""))
    if reached < n_inc:
        problems.append(f"{reached}/{n_inc} increments converged (job.sta)")
    if read_error:
        problems.append(read_error)
    elif data is None:
        problems.append("no result file job.hdf5")
    elif all(s.f_out == 1 for s in load.steps) and np.isnan(F[: reached + 1]).any():
        problems.append("result file lacks converged increments")
    converged = not problems
    reason = ""
    if not converged:
        reason = "; ".join(problems) + f"; job kept in {job_dir}"
        last = tail(run.log, 8)
        if last:
            reason += "\n--- last lines of job.log ---\n" + last
    return SimulationRecord(
        ve_id=ve_id,
        solver="damask",
        status="converged" if converged else "failed",
        converged=converged,
        reason=reason,
        t=load.times(),
        F=F,
        P=P,
        sigma=sigma,
        n_converged=reached,
        iterations=iterations,
        wall_s=run.wall_s,
    )


def simulate_damask(
    grain_map,
    quaternions,
    phase,
    load: LoadCase,
    job_dir,
    *,
    phase_name="phase",
    size=(1.0, 1.0, 1.0),
    executable=None,
    n_proc: int = 1,
    mpiexec="mpirun",
    timeout: float | None = None,
    numerics: Mapping[str, Any] | None = None,
    ve_id: str | None = None,
):
    """Write the inputs of one VE into ``job_dir``, run DAMASK_grid, return the record."""
    write_inputs(job_dir, grain_map, quaternions, phase, load, phase_name=phase_name, size=size, numerics=numerics)
    return run_job(
        job_dir,
        load,
        executable=executable,
        n_proc=n_proc,
        mpiexec=mpiexec,
        timeout=timeout,
        numerics=bool(numerics),
        ve_id=ve_id,
    )


__all__ = [
    "find_damask_grid",
    "damask_command",
    "write_inputs",
    "run_damask",
    "DamaskRun",
    "read_sta",
    "iterations_per_increment",
    "volume_averages",
    "read_result",
    "run_job",
    "simulate_damask",
    "tail",
]
