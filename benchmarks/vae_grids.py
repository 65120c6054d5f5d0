"""The shipped periodic VAEs on VEs of other grids than their training grid (16³):
reconstruction at 16³, 32³, 64³ and a non-cubic grid, every generator preset, next to
the identity and mean-image baselines (docs/vae.md "Any grid", docs/results.md); and
(--speed) the time and peak memory of the full fingerprint (mu, summary, decoded
statistics over the rolled views) per VE.

VEs are made by `vae3d generate` with seeds 7000+ (the training and held-out sets used
101-116, 201-216, 998, 999), so none was seen in training. Baselines: the constant
identity orientation, and the voxel-wise mean Euler image of the set itself (with 10-40
VEs per set it contains 1/n of each VE: an optimistic baseline).

Usage:
    python benchmarks/vae_grids.py --work W                        # both lattices, all sets
    python benchmarks/vae_grids.py --work W --lattices hP --grids 64 --presets train cube
    python benchmarks/vae_grids.py --work W --speed --grids 32 64 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS = ["train", "large", "small", "elongated", "brass", "copper", "cube", "goss"]
#: VEs per set at each grid (cost grows with the cells)
N_VES = {"16": 200, "32": 40, "64": 10, "16x32x48": 20}


def make(work: Path, lattice: str, grid: str, preset: str, n: int, seed: int) -> Path:
    from matflow_vae3d.cli import cli

    p = work / f"{lattice}_{grid}_{preset}.h5"
    if not p.exists():
        args = ["generate", "--preset", preset, "--count", n, "--grid", grid, "--seed", seed, "--lattice", lattice]
        cli.main([str(a) for a in args] + ["--out", str(p), "--no-progress"], standalone_mode=False)
    return p


def reconstruction(work: Path, lattices, grids, presets, seed_base: int) -> list[dict]:
    import torch

    from matflow_vae3d.vae import pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import evaluate_dataset
    from matflow_vae3d.vae.evaluation import baseline_errors, mean_euler_image

    torch.set_num_threads(1)
    rows = []
    for lattice in lattices:
        model, meta = load_model(pretrained_path(lattice))
        for gi, grid in enumerate(grids):
            for pi, preset in enumerate(presets):
                seed = seed_base + 100 * gi + pi + (50 if lattice == "cF" else 0)
                data = make(work, lattice, grid, preset, N_VES.get(grid, 20), seed)
                t0 = time.perf_counter()
                r = evaluate_dataset(model, meta, data, batch_size=32, progress=False)
                dt = time.perf_counter() - t0
                b = baseline_errors(data, lattice, mean_euler_image(data))
                row = dict(lattice=lattice, grid=grid, set=preset, n=r["n"], seed=seed, s_per_ve=dt / r["n"])
                for name, res in (("vae", r), ("identity", b["identity"]), ("mean", b["mean image"])):
                    for k in ("deg", "within5", "within15", "quat"):
                        row[f"{name}_{k}"] = float(res[f"{k}_mean"])
                    row[f"{name}_deg_std"] = float(res["deg_std"])
                rows.append(row)
                print(_row(row), flush=True)
    return rows


def _row(r: dict) -> str:
    return (
        f"| {r['lattice']} | {r['grid']} | {r['set']} | {r['n']} | **{r['vae_deg']:.2f} ± {r['vae_deg_std']:.2f}** "
        f"· {100 * r['vae_within5']:.1f} / {100 * r['vae_within15']:.1f} % · {r['vae_quat']:.4f} "
        f"| {r['identity_deg']:.2f} · {r['identity_quat']:.4f} | {r['mean_deg']:.2f} · {r['mean_quat']:.4f} |"
    )


HEADER = (
    "| lattice | grid | set | VEs | VAE: disorientation ° · % within 5 / 15° · 1-\\|q·q̂\\| "
    "| identity: ° · 1-\\|q·q̂\\| | mean image: ° · 1-\\|q·q̂\\| |\n|---|---|---|---|---|---|---|"
)


def _speed_child(data: str, lattice: str, threads: int, out: str) -> None:
    import torch

    from matflow_vae3d.vae import pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import fingerprint_dataset

    torch.set_num_threads(threads)
    model, meta = load_model(pretrained_path(lattice))
    c0, w0 = time.process_time(), time.perf_counter()
    res = fingerprint_dataset(model, meta, data, out, batch_size=64, progress=False)
    c1, w1 = time.process_time(), time.perf_counter()
    print(
        json.dumps(
            dict(
                n=res["n"],
                wall_per_ve=(w1 - w0) / res["n"],
                cpu_per_ve=(c1 - c0) / res["n"],
                peak_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            )
        )
    )


def speed(work: Path, lattices, grids, threads_list) -> list[dict]:
    rows = []
    for lattice in lattices:
        for grid in grids:
            n = {"16": 64, "32": 8, "64": 3, "128": 1}.get(grid, 4)
            data = make(work, lattice, grid, "train", n, 7900 + len(grid))
            for threads in threads_list:
                out = (
                    subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--work",
                            str(work),
                            "--speed-child",
                            str(data),
                            lattice,
                            str(threads),
                            str(work / f"fp_{lattice}_{grid}.h5"),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                r = dict(json.loads(out), lattice=lattice, grid=grid, threads=threads)
                rows.append(r)
                print(
                    f"| {lattice} | {grid} | {threads} | {r['n']} | {r['wall_per_ve']:.2f} | {r['cpu_per_ve']:.2f} "
                    f"| {r['peak_gb']:.2f} |",
                    flush=True,
                )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--lattices", nargs="*", default=["hP", "cF"])
    ap.add_argument("--grids", nargs="*", default=["16", "32", "64", "16x32x48"])
    ap.add_argument("--presets", nargs="*", default=PRESETS)
    ap.add_argument("--seed-base", type=int, default=7000)
    ap.add_argument("--speed", action="store_true", help="time and peak memory of the full fingerprint")
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--speed-child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.speed_child:
        d, lat, th, out = a.speed_child
        _speed_child(d, lat, int(th), out)
        return
    a.work.mkdir(parents=True, exist_ok=True)
    if a.speed:
        print("| lattice | grid | threads | VEs | wall s/VE | CPU s/VE | peak RSS GB |\n|---|---|---|---|---|---|---|")
        rows = speed(a.work, a.lattices, a.grids, a.threads)
    else:
        print(HEADER)
        rows = reconstruction(a.work, a.lattices, a.grids, a.presets, a.seed_base)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
