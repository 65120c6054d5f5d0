"""A real DAMASK_grid against the embedded solver on the same VEs (issue 13).

Each VE runs through ``simulate_ve`` twice, with ``solver='damask'`` (DAMASK_grid, one
MPI process, OMP_NUM_THREADS=1) and ``solver='builtin'`` (one torch thread), on the
paper's load case (uniaxial tension along x to 1 % in 20 increments). Printed per VE:
sigma_xx at 1 %, the RMS of the sigma_xx difference over the 20 increments (MPa and
relative to the DAMASK value at 1 %), and the wall times side by side. With
``--reference`` the DAMASK_grid 3.0.2 results in tests/data/damask_ref are rerun first,
so that the build itself is checked against the version the solver was validated on.

    python benchmarks/damask_vs_embedded.py --ves mg_ves.h5 --material Mg --n 3 [--reference]
        [--damask-grid PATH] [--keep-jobs DIR] [--json out.json]

Side by side in separate processes (issue 31): ``--case SET:INDEX:MATERIAL`` (repeatable)
runs each VE on DAMASK_grid, on the embedded solver of ``--before-src`` (a checkout of
an earlier commit, e.g. ``git worktree add /tmp/before <commit>``; optional) and on this
checkout's, alternating, each in a fresh process with one thread; printed per run: CPU
seconds (process and children), wall, Newton iterations (the embedded solver's; DAMASK's
from its .sta file are not read here), peak resident memory, sigma_xx at the end and its
RMS difference to DAMASK over the 20 increments, and the CPU ratio DAMASK / embedded.
``--solvers after`` runs only this checkout (e.g. a 64^3 VE that DAMASK would take hours on).

    python benchmarks/damask_vs_embedded.py --case mg16.h5:0:Mg --case cu16.h5:0:Cu \
        [--before-src /tmp/before] [--solvers damask,before,after] [--json side.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# --src SRC (the side-by-side's worker processes): import the solver of that checkout
_SRC = sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else str(ROOT)
sys.path.insert(0, _SRC)

from matflow_vae3d.cp.loadcase import LoadCase  # noqa: E402
from matflow_vae3d.cp.simulate import simulate_damask_inputs, simulate_ve  # noqa: E402

REF = ROOT / "tests" / "data" / "damask_ref"


def compare(a, b) -> dict:
    """sigma_xx RMS difference of two records (MPa; relative to a's value at the end)."""
    sa, sb = a.sigma[1:, 0, 0] / 1e6, b.sigma[1:, 0, 0] / 1e6
    rms = float(np.sqrt(np.mean((sa - sb) ** 2)))
    return {"rms_mpa": rms, "rel_pct": 100 * rms / abs(sa[-1]), "end_a": float(sa[-1]), "end_b": float(sb[-1])}


def reference_cases(exe, keep: Path | None) -> list[dict]:
    rows = []
    for name in ("mg16_rand_g20_s0", "mg16_sx_c_par_x"):
        d = np.load(REF / f"{name}.npz")
        files = [REF / f"{name}.{k}" for k in ("grid.vti", "material.yaml", "load.yaml")]
        t0 = time.perf_counter()
        rec = simulate_damask_inputs(
            *files, solver="damask", damask_executable=exe, job_dir=(keep / name) if keep else None
        )
        wall = time.perf_counter() - t0
        ref = np.asarray(d["sigma_xx_MPa"] if "sigma_xx_MPa" in d else d["sigma"][:, 0, 0] / 1e6)
        s = rec.sigma[:, 0, 0] / 1e6
        rms = float(np.sqrt(np.mean((s[1:] - ref[1:]) ** 2))) if rec.converged else float("nan")
        rows.append(
            {
                "case": name,
                "status": rec.status,
                "rms_mpa_vs_3.0.2": rms,
                "rel_pct": 100 * rms / abs(ref[-1]),
                "sigma_xx_end": float(s[-1]),
                "ref_end": float(ref[-1]),
                "wall_s": wall,
            }
        )
        print(rows[-1], flush=True)
    return rows


def _one(solver: str, path: str, index: int, material: str, exe) -> None:
    """One run in this (fresh) process; prints a JSON line with its measurements."""
    import resource

    import torch

    torch.set_num_threads(1)
    import matflow_vae3d
    from matflow_vae3d.datasets import VEDataset

    print("solver from", Path(matflow_vae3d.__file__).parent, file=sys.stderr)
    ve = VEDataset(path)[index]
    t0, c0 = time.perf_counter(), time.process_time()
    rec = simulate_ve(ve, material, LoadCase.uniaxial(), solver=solver, damask_executable=exe)
    wall = time.perf_counter() - t0
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(
        "RESULT "
        + json.dumps(
            {
                "ve_id": ve.ve_id,
                "grid": list(np.shape(ve.grain_map)),
                "status": rec.status,
                "cpu_s": time.process_time() - c0 + ch.ru_utime + ch.ru_stime,
                "wall_s": wall,
                "newton": int(np.sum(rec.iterations)) if solver == "builtin" and rec.iterations is not None else None,
                "peak_gb": max(me.ru_maxrss, ch.ru_maxrss) / 1e6,
                "sigma_xx_mpa": (rec.sigma[:, 0, 0] / 1e6).tolist(),
            }
        ),
        flush=True,
    )


def side_by_side(cases, solvers, before_src, exe) -> list[dict]:
    """Each case on each solver, alternating, each run in a fresh process."""
    import subprocess

    rows = []
    print(
        "| VE | grid | solver | CPU s | wall s | Newton its | peak GB | σ_xx(1 %) MPa | RMS Δ to DAMASK MPa "
        "| DAMASK CPU / this |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for spec in cases:
        path, index, material = spec.rsplit(":", 2)
        runs = {}
        for which in solvers:
            env = dict(os.environ, OMP_NUM_THREADS="1")
            src = ROOT if which != "before" else Path(before_src)
            solver = "damask" if which == "damask" else "builtin"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--one",
                solver,
                path,
                index,
                material,
                "--src",
                str(src),
            ]
            if exe:
                cmd += ["--damask-grid", exe]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=src)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                print(f"| {spec} | | {which} | failed: {out.stderr.strip().splitlines()[-1:]} |", flush=True)
                continue
            r = json.loads(line[0][7:]) | {"case": spec, "solver": which, "material": material}
            runs[which] = r
            d = runs.get("damask")
            rms = ratio = ""
            if d and which != "damask" and d["status"] == "converged" and r["status"] == "converged":
                sa, sb = np.asarray(d["sigma_xx_mpa"][1:]), np.asarray(r["sigma_xx_mpa"][1:])
                r["rms_vs_damask_mpa"] = float(np.sqrt(np.mean((sa - sb) ** 2)))
                r["cpu_ratio"] = d["cpu_s"] / r["cpu_s"]
                rms, ratio = f"{r['rms_vs_damask_mpa']:.4f}", f"{r['cpu_ratio']:.1f}x"
            its = "" if r["newton"] is None else r["newton"]
            print(
                f"| {r['ve_id']} ({material}) | {'x'.join(map(str, r['grid']))} | {which} | {r['cpu_s']:.1f} | "
                f"{r['wall_s']:.1f} | {its} | {r['peak_gb']:.2f} | {r['sigma_xx_mpa'][-1]:.3f} | {rms} | {ratio} |",
                flush=True,
            )
            rows.append(r)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ves", type=Path, help="VE dataset (HDF5)")
    ap.add_argument("--material", default="Mg")
    ap.add_argument("--n", type=int, default=2, help="first N VEs of the dataset")
    ap.add_argument("--damask-grid", default=None, help="DAMASK_grid executable (default: on PATH)")
    ap.add_argument("--keep-jobs", type=Path, default=None)
    ap.add_argument("--reference", action="store_true", help="first rerun the DAMASK 3.0.2 reference jobs")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--case", action="append", default=[], help="SET:INDEX:MATERIAL, side by side (repeatable)")
    ap.add_argument("--solvers", default="damask,before,after", help="of damask, before, after")
    ap.add_argument("--before-src", default=None, help="checkout of the 'before' embedded solver")
    ap.add_argument("--one", nargs=4, metavar=("SOLVER", "SET", "INDEX", "MATERIAL"), help=argparse.SUPPRESS)
    ap.add_argument("--src", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        _one(a.one[0], a.one[1], int(a.one[2]), a.one[3], a.damask_grid)
        return
    if a.case:
        solvers = [s for s in a.solvers.split(",") if s != "before" or a.before_src]
        rows = side_by_side(a.case, solvers, a.before_src, a.damask_grid)
        if a.json:
            a.json.write_text(json.dumps({"load": "uniaxial x, 1 %, 20 increments", "runs": rows}, indent=1))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    out: dict = {"load": "uniaxial x, 1 %, 20 increments", "material": a.material, "ves": []}
    if a.reference:
        out["reference"] = reference_cases(a.damask_grid, a.keep_jobs)
    if a.ves:
        from matflow_vae3d.datasets import VEDataset

        ds = VEDataset(str(a.ves))
        load = LoadCase.uniaxial()
        print("| VE | σ_xx(1 %) DAMASK / embedded (MPa) | RMS Δσ_xx (MPa) | rel. | wall DAMASK / embedded (s) |")
        print("|---|---|---|---|---|")
        for i in range(min(a.n, len(ds))):
            ve = ds[i]
            job = (a.keep_jobs / str(ve.ve_id)) if a.keep_jobs else None
            t0 = time.perf_counter()
            d = simulate_ve(ve, a.material, load, solver="damask", damask_executable=a.damask_grid, job_dir=job)
            wd = time.perf_counter() - t0
            t0 = time.perf_counter()
            b = simulate_ve(ve, a.material, load, solver="builtin")
            wb = time.perf_counter() - t0
            row = {
                "ve_id": ve.ve_id,
                "damask": d.status,
                "builtin": b.status,
                "wall_damask_s": wd,
                "wall_builtin_s": wb,
            }
            if d.converged and b.converged:
                row |= compare(d, b)
                print(
                    f"| {ve.ve_id} | {row['end_a']:.2f} / {row['end_b']:.2f} | {row['rms_mpa']:.3f} | "
                    f"{row['rel_pct']:.2f} % | {wd:.0f} / {wb:.0f} |",
                    flush=True,
                )
            else:
                print(f"| {ve.ve_id} | DAMASK {d.status} ({d.reason[:80]}), embedded {b.status} | | | |", flush=True)
            out["ves"].append(row)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
