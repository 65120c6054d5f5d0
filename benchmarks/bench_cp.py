"""Speed of the embedded spectral CP solver against DAMASK_grid 3.0.2.

Reference (DAMASK_grid 3.0.2, one core of a 2-core machine of this kind, uniaxial tension
to F_xx = 1.01 in 20 increments): 136 s for the 16^3 Mg VE of 20 grains
(tests/data/damask_ref/mg16_rand_g20_s0), 770 s for the same VE in copper, 1,288 s for the
32^3 Mg version (here: the 16^3 VE upsampled 2x per axis, same grains).

Usage:
    python benchmarks/bench_cp.py                       # single-VE table, 1 thread, CPU
    python benchmarks/bench_cp.py --batch 8 16 32 64    # + batched throughput at 16^3
    python benchmarks/bench_cp.py --device cuda --cases --batch 64 256 1024
Prints wall and CPU (process) time; on a shared machine CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matflow_vae3d.cp.loadcase import LoadCase  # noqa: E402
from matflow_vae3d.cp.materials import get_phase  # noqa: E402
from matflow_vae3d.cp.spectral import solve  # noqa: E402

REF = ROOT / "tests" / "data" / "damask_ref" / "mg16_rand_g20_s0.npz"
DAMASK_S = {"Mg 16^3": 136.0, "Cu 16^3": 770.0, "Mg 32^3": 1288.0}


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run_case(name, grain_map, quats, material, load, device, dtype):
    phase = get_phase(material)
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    res = solve(grain_map[None], [quats], phase, load, device=device, dtype=dtype)[0]
    _sync(device)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return dict(
        case=name,
        converged=res.converged,
        iterations=int(res.iterations.sum()),
        wall=wall,
        cpu=cpu,
        sigma_xx=res.sigma[-1, 0, 0] / 1e6,
    )


def validate(device="cpu"):
    """sigma_xx of the embedded solver against both DAMASK references (table + figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    ref_dir = ROOT / "tests" / "data" / "damask_ref"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    print("# agreement with DAMASK_grid 3.0.2 (sigma_xx, increments 1-20)")
    for ax, name in zip(axes, ["mg16_rand_g20_s0", "mg16_sx_c_par_x"]):
        d = np.load(ref_dir / f"{name}.npz")
        mat = yaml.safe_load((ref_dir / f"{name}.material.yaml").read_text())
        load = LoadCase.from_damask(ref_dir / f"{name}.load.yaml")
        c0 = time.process_time()
        r = solve(d["material_idx_xyz"][None], [d["quaternions"]], mat["phase"]["Mg"], load, device=device)[0]
        cpu = time.process_time() - c0
        ref, ours = d["sigma_xx_MPa"], r.sigma[:, 0, 0] / 1e6
        rel = (ours[1:] - ref[1:]) / ref[1:]
        lat = np.abs(r.sigma[1:, [1, 2], [1, 2]]).max(-1) / np.abs(r.sigma[1:, 0, 0])
        lat_damask = np.abs(d["sigma_avg"][1:, [1, 2], [1, 2]]).max(-1).max() / 1e6 / ref[1:].min()
        print(
            f"{name:18s} rms rel {np.sqrt(np.mean(rel**2)):.2e}  max rel {np.abs(rel).max():.2e}  "
            f"max |sigma_yy,zz|/sigma_xx {lat.max():.1e} (DAMASK {lat_damask:.1e})  "
            f"newton {r.iterations.sum()} (DAMASK {d['n_iterations'].sum()})  cpu {cpu:.1f} s"
        )
        strain = (d["F_avg"][:, 0, 0] - 1) * 100
        ax.plot(strain, ref, "ko", mfc="none", label="DAMASK_grid 3.0.2")
        ax.plot(strain, ours, "r-", label="embedded solver")
        ax.set_xlabel("F_xx - 1 (%)")
        ax.set_ylabel("mean sigma_xx (MPa)")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    out = ROOT / "docs" / "figures" / "cp_solver_vs_damask.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out.relative_to(ROOT)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = the single-core target)")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument(
        "--cases",
        nargs="*",
        default=["Mg 16^3", "Cu 16^3", "Mg 32^3"],
        help="single-VE cases to time (names as in the table; none: skip)",
    )
    ap.add_argument("--batch", nargs="*", type=int, default=[], help="batch sizes for 16^3 Mg throughput")
    ap.add_argument("--increments", type=int, default=20)
    ap.add_argument(
        "--validate",
        action="store_true",
        help="run the two DAMASK references, print the agreement table and write docs/figures/cp_solver_vs_damask.png",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.validate:
        validate(args.device)
    dtype = getattr(torch, args.dtype)
    d = np.load(REF)
    gm, q = d["material_idx_xyz"], d["quaternions"]
    load = LoadCase.uniaxial(N=args.increments, strain=0.01 * args.increments / 20)
    scale = args.increments / 20

    print(f"# device {args.device}, {args.threads} thread(s), {args.dtype}, {args.increments} increments")
    rows = []
    for case in args.cases:
        if case not in DAMASK_S:
            raise SystemExit(f"unknown case {case!r}: {list(DAMASK_S)}")
        mat, size = case.split()
        g = gm if size == "16^3" else np.repeat(np.repeat(np.repeat(gm, 2, 0), 2, 1), 2, 2)
        r = run_case(case, g, q, mat, load, args.device, dtype)
        r["damask"] = DAMASK_S[case] * scale
        rows.append(r)
        print(
            f"{case:8s} converged={r['converged']} newton={r['iterations']:3d} wall={r['wall']:8.1f} s "
            f"cpu={r['cpu']:8.1f} s  DAMASK={r['damask']:7.0f} s  speed-up (cpu) {r['damask'] / r['cpu']:5.1f}x "
            f"(wall) {r['damask'] / r['wall']:5.1f}x  sigma_xx(end)={r['sigma_xx']:.3f} MPa",
            flush=True,
        )

    if args.batch:
        print("\n# batched throughput, 16^3 Mg VE with random orientations per VE")
        rng = np.random.default_rng(0)
        phase = get_phase("Mg")
        for B in args.batch:
            qs = []
            for _ in range(B):
                x = rng.normal(size=(len(q), 4))
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                x[x[:, 0] < 0] *= -1
                qs.append(x)
            maps = np.repeat(gm[None], B, 0)
            _sync(args.device)
            w0, c0 = time.perf_counter(), time.process_time()
            res = solve(maps, qs, phase, load, device=args.device, dtype=dtype)
            _sync(args.device)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            ok = sum(r.converged for r in res)
            print(
                f"B={B:5d} converged {ok}/{B} wall={wall:8.1f} s cpu={cpu:8.1f} s "
                f"throughput {B / wall:7.3f} VE/s (wall)  {B / cpu:7.3f} VE/cpu-s  "
                f"VEs per DAMASK-VE-time {B / wall * DAMASK_S['Mg 16^3'] * scale:8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
