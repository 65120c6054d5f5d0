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
sys.path.insert(0, str(ROOT))

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ves", type=Path, help="VE dataset (HDF5)")
    ap.add_argument("--material", default="Mg")
    ap.add_argument("--n", type=int, default=2, help="first N VEs of the dataset")
    ap.add_argument("--damask-grid", default=None, help="DAMASK_grid executable (default: on PATH)")
    ap.add_argument("--keep-jobs", type=Path, default=None)
    ap.add_argument("--reference", action="store_true", help="first rerun the DAMASK 3.0.2 reference jobs")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
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
