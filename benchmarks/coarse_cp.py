"""Coarse CP against full CP: the accuracy table of ``--coarsen K`` (docs/cp_solver.md,
"Coarse CP").

For each set (material, grid, generator preset) the same VEs are solved by the embedded
solver on the paper's load case (uniaxial tension along x to 1 % in 20 increments) at
full resolution (K = 1) and coarsened by K (majority vote, and the plain centre-voxel
subsampling ``nearest`` for comparison). Each row of the table: curve MAE and
sigma_xx(1 %) error of the coarse run against the full run of the same VE, CPU
seconds per VE, peak memory of the solver process, grains and volume that vanished,
next to the set's VE-to-VE spread (the std of sigma_xx(1 %) over its VEs and the mean
curve MAE between two of its VEs: a coarse run whose error is not well below these
cannot tell one VE from another).

Every job (set, K, rule) is one `simulate_dataset` call in a child process (its peak RSS
and CPU time are its own) writing a CP results file under WORK; a rerun resumes and
skips finished jobs, so the benchmark can be stopped and continued.

Usage:
    python benchmarks/coarse_cp.py --work W                    # the default plan (~1.5 CPU-h)
    python benchmarks/coarse_cp.py --work W --only mg16        # one group of sets
    python benchmarks/coarse_cp.py --work W --table            # print the table from what is done
    python benchmarks/coarse_cp.py --work W --full-from mg32-train=ref32/mg32_cp.h5
        # reuse full-resolution rows of the same VEs (joined by VE id)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: set name -> (material, lattice, grid, preset, VEs, seed, [(K, rule), ...])
M = "majority"
N = "nearest"
K16 = [(2, M), (2, N), (4, M), (4, N)]
K32 = [(2, M), (2, N), (4, M), (4, N)]
SETS = {
    "mg16-train": ("Mg", "hP", 16, "train", 6, 401, K16),
    "mg16-small": ("Mg", "hP", 16, "small", 6, 402, K16),
    "mg16-large": ("Mg", "hP", 16, "large", 6, 403, K16),
    "mg16-elongated": ("Mg", "hP", 16, "elongated", 6, 404, K16),
    "mg16-cube": ("Mg", "hP", 16, "cube", 6, 405, K16),
    "mg16-goss": ("Mg", "hP", 16, "goss", 6, 406, K16),
    "mg16-brass": ("Mg", "hP", 16, "brass", 6, 407, K16),
    "mg16-copper": ("Mg", "hP", 16, "copper", 6, 408, K16),
    "cu16-train": ("Cu", "cF", 16, "train", 4, 411, K16),
    "cu16-small": ("Cu", "cF", 16, "small", 4, 412, K16),
    "cu16-cube": ("Cu", "cF", 16, "cube", 4, 415, K16),
    "cu16-goss": ("Cu", "cF", 16, "goss", 4, 416, K16),
    "mg32-train": ("Mg", "hP", 32, "train", 4, 303, K32),  # the 32³ reference set's seed
    "mg32-cube": ("Mg", "hP", 32, "cube", 4, 425, K32),
    "mg32-small": ("Mg", "hP", 32, "small", 2, 422, K32),
    "mg64-train": ("Mg", "hP", 64, "train", 1, 431, [(2, M), (4, M), (8, M)]),
    "tiny": ("Mg", "hP", 8, "small", 2, 1, [(2, M), (2, N)]),  # a smoke test of the script (--only tiny)
}
GROUPS = {
    "mg16": [s for s in SETS if s.startswith("mg16")],
    "cu16": [s for s in SETS if s.startswith("cu16")],
    "mg32": [s for s in SETS if s.startswith("mg32")],
    "mg64": [s for s in SETS if s.startswith("mg64")],
}
ORDER = GROUPS["mg16"] + GROUPS["cu16"] + GROUPS["mg32"] + GROUPS["mg64"]


def ves_path(work: Path, name: str) -> Path:
    return work / f"{name}_ves.h5"


def cp_path(work: Path, name: str, k: int, rule: str) -> Path:
    return work / (f"{name}_k1.h5" if k == 1 else f"{name}_k{k}_{rule}.h5")


def make_ves(work: Path, name: str) -> Path:
    """The set's VEs, made as `vae3d generate` makes them (same seed -> same VEs and ids)."""
    from matflow_vae3d.cli import cli

    _, lattice, grid, preset, n, seed, _ = SETS[name]
    p = ves_path(work, name)
    if not p.exists():
        args = ["generate", "--preset", preset, "--count", n, "--grid", grid, "--seed", seed, "--lattice", lattice]
        cli.main([str(x) for x in args] + ["--out", str(p), "--no-progress"], standalone_mode=False)
    return p


def job(work: Path, name: str, k: int, rule: str) -> dict:
    """Run one (set, K, rule) in this process and write its sidecar JSON."""
    import torch

    from matflow_vae3d.cp.simulate import simulate_dataset

    torch.set_num_threads(1)
    material = SETS[name][0]
    out = cp_path(work, name, k, rule)
    c0 = time.process_time()
    s = simulate_dataset(
        str(ves_path(work, name)),
        str(out),
        material=material,
        batch_size=1,
        progress=False,
        coarsen=k,
        coarsen_rule=rule,
    )
    cpu = time.process_time() - c0
    rec = {
        "set": name,
        "k": k,
        "rule": rule,
        "n_run": s["n_run"],
        "n_failed": s["n_failed"],
        "cpu_s": cpu,
        "wall_s": s["wall_s"],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    side = out.with_suffix(".json")
    if s["n_run"] == 0 and side.exists():  # nothing new: keep the measured figures
        return json.loads(side.read_text())
    side.write_text(json.dumps(rec))
    return rec


def run_plan(work: Path, names, full_from: dict) -> None:
    for name in names:
        make_ves(work, name)
        n = SETS[name][4]
        for k, rule in [(1, M)] + SETS[name][6]:
            out = cp_path(work, name, k, rule)
            if k == 1 and name in full_from:
                continue
            if out.with_suffix(".json").exists() and _rows(out) >= n:
                continue
            t0 = time.time()
            subprocess.run([sys.executable, __file__, "--work", str(work), "--job", name, str(k), rule], check=True)
            print(f"{name} K={k} {rule}: {time.time() - t0:.0f} s wall", flush=True)


def _rows(path: Path) -> int:
    from matflow_vae3d.cp.results import read_results

    if not path.exists():
        return 0
    return len(read_results(path, fields=("ve_id",))["ve_id"])


def _curves(path: Path, ids) -> tuple[np.ndarray, np.ndarray]:
    """(sigma_xx (n, states) MPa, ok (n,)) of the VEs ``ids`` in a results file."""
    from matflow_vae3d.cp.results import read_results

    r = read_results(path, fields=("ve_id", "status", "sigma", "vanished_grains", "vanished_volume_fraction"))
    where = {v: i for i, v in enumerate(r["ve_id"])}
    n_states = r["sigma"].shape[1]
    out, ok = np.full((len(ids), n_states), np.nan), np.zeros(len(ids), bool)
    van = np.zeros((len(ids), 2))
    for j, v in enumerate(ids):
        if v in where:
            i = where[v]
            ok[j] = r["status"][i] == "converged"
            out[j] = r["sigma"][i, :, 0, 0] / 1e6
            van[j] = r["vanished_grains"][i], r["vanished_volume_fraction"][i]
    return out, ok, van


def table(work: Path, names, full_from: dict) -> list[dict]:
    from matflow_vae3d.datasets import VEDataset

    rows = []
    for name in names:
        if not ves_path(work, name).exists():
            continue
        with VEDataset(str(ves_path(work, name))) as ds:
            ids = ds.ve_ids
            grains = np.mean([ds[i].n_grains for i in range(len(ds))])
        full_file = Path(full_from.get(name, cp_path(work, name, 1, M)))
        if not full_file.exists():
            continue
        full, ok_full, _ = _curves(full_file, ids)
        if ok_full.sum() < 1:
            continue
        f = full[ok_full]
        spread = float(f[:, -1].std(ddof=1)) if len(f) > 1 else float("nan")
        pair = [np.abs(f[a] - f[b]).mean() for a in range(len(f)) for b in range(a + 1, len(f))]
        side_full = cp_path(work, name, 1, M).with_suffix(".json")
        full_cpu = json.loads(side_full.read_text()) if side_full.exists() else None
        base = dict(
            set=name,
            grid=SETS[name][2],
            n=int(ok_full.sum()),
            grains=float(grains),
            spread_sxx=spread,
            pair_mae=float(np.mean(pair)) if pair else float("nan"),
            sxx_full=float(f[:, -1].mean()),
        )
        if full_cpu:
            rows.append(
                dict(
                    base,
                    k=1,
                    rule="-",
                    cpu_per_ve=full_cpu["cpu_s"] / max(full_cpu["n_run"], 1),
                    peak_gb=full_cpu["peak_rss_gb"],
                    mae=0.0,
                    err_sxx=0.0,
                    vanished=0.0,
                    vanished_vf=0.0,
                )
            )
        for k, rule in SETS[name][6]:
            p = cp_path(work, name, k, rule)
            side = p.with_suffix(".json")
            if not p.exists() or not side.exists():
                continue
            c, ok, van = _curves(p, ids)
            both = ok & ok_full
            if not both.any():
                continue
            meta = json.loads(side.read_text())
            rows.append(
                dict(
                    base,
                    k=k,
                    rule=rule,
                    mae=float(np.abs(c[both] - full[both]).mean()),
                    err_sxx=float(np.abs(c[both, -1] - full[both, -1]).mean()),
                    bias_sxx=float((c[both, -1] - full[both, -1]).mean()),
                    cpu_per_ve=meta["cpu_s"] / max(meta["n_run"], 1),
                    peak_gb=meta["peak_rss_gb"],
                    vanished=float(van[both, 0].mean() / grains),
                    vanished_vf=float(van[both, 1].mean()),
                    failed=int((~ok).sum()),
                )
            )
    return rows


def print_table(rows) -> None:
    print(
        "| set | VEs | grains | K | rule | curve MAE (MPa) | σxx(1 %) err (MPa) | bias | CPU s/VE | peak GB "
        "| grains vanished | vol. vanished | VE-to-VE σxx std | VE-to-VE curve MAE |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['n']} | {r['grains']:.0f} | {r['k']} | {r['rule']} | {r['mae']:.3f} | "
            f"{r['err_sxx']:.3f} | {r.get('bias_sxx', 0.0):+.3f} | {r['cpu_per_ve']:.1f} | {r['peak_gb']:.2f} | "
            f"{100 * r['vanished']:.1f} % | {100 * r['vanished_vf']:.2f} % | {r['spread_sxx']:.2f} | "
            f"{r['pair_mae']:.2f} |"
        )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--only", nargs="*", help="groups (mg16 cu16 mg32 mg64) or set names")
    ap.add_argument("--table", action="store_true", help="only print the table of what is done")
    ap.add_argument("--json", type=Path, help="also write the table rows here")
    ap.add_argument("--full-from", action="append", default=[], metavar="SET=FILE")
    ap.add_argument("--job", nargs=3, metavar=("SET", "K", "RULE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.job:
        job(a.work, a.job[0], int(a.job[1]), a.job[2])
        return
    full_from = dict(s.split("=", 1) for s in a.full_from)
    names = ORDER
    if a.only:
        names = [n for g in a.only for n in GROUPS.get(g, [g])]
        unknown = [n for n in names if n not in SETS]
        if unknown:
            ap.error(f"unknown sets {unknown}")
    if not a.table:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        run_plan(a.work, names, full_from)
    rows = table(a.work, names, full_from)
    print_table(rows)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
