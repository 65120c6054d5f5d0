"""Benchmark: VE generation speed vs damask.GeomGrid.from_Voronoi_tessellation.

Measures, side by side in one run on the same grid and grain count:

* ours, one process: complete VEs (sizes, seeds, Laguerre tessellation with one
  coarse iteration, Morton relabelling, orientations + FZ reduction);
* ours, ``generate_ves(..., workers=--workers)``, throughput (pool start-up included);
* damask: ``GeomGrid.from_Voronoi_tessellation`` (periodic, seeds from
  ``damask.seeds.from_random``) with as many seeds as our VEs have grains, one call
  at a time (damask's KD-tree query uses OMP_NUM_THREADS threads, default 4), and
  ``--workers`` processes with one thread each; tessellation only, no orientations.

Calls are interleaved (ours, damask, ours, ...) so that load from other users of a
shared machine hits both alike. Prints a table (wall and CPU ms per VE, VEs/s, hours
for 100,000 VEs).

    .venv/bin/python benchmarks/bench_generate.py --preset train --grid 64 --count 40 --workers 2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _damask_one(args):
    cells, n_grains, seed = args
    import damask

    rng_seed = int(seed)
    seeds = damask.seeds.from_random(np.ones(3), n_grains, cells, rng_seed=rng_seed)
    return damask.GeomGrid.from_Voronoi_tessellation(cells, np.ones(3), seeds, periodic=True).material.max() + 1


def _init_single_thread():
    os.environ["OMP_NUM_THREADS"] = "1"


def _pool_throughput(fn, tasks, workers, single_thread=False):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_single_thread if single_thread else None) as pool:
        list(pool.imap(fn, tasks[:workers]))  # warm-up (imports)
        t0 = time.perf_counter()
        out = list(pool.imap(fn, tasks, chunksize=1))
        return time.perf_counter() - t0, out


def _stats(grid: int, n_ves: int):
    """Measured statistics of each preset: ESD mean / sigma of ln ESD from voxel counts,
    grains per VE, inertia-tensor elongation sqrt(C_xx/C_yy), median disorientation to
    the texture component (deg)."""
    from matflow_vae3d import crystal
    from matflow_vae3d.microstructure import PRESETS, generate_ve, get_preset
    from matflow_vae3d.microstructure.grain_sizes import esd_from_volumes
    from matflow_vae3d.microstructure.textures import TEXTURE_COMPONENTS

    print(
        "| preset | asked ESD / sigma | measured mean ESD | measured sigma ln ESD | grains/VE | "
        "sqrt(Cxx/Cyy) median | median disorientation to component (deg) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in PRESETS:
        p = get_preset(name, grid=grid)
        ves = [generate_ve(p, s) for s in range(n_ves)]
        esd = np.concatenate([esd_from_volumes(np.bincount(v.grain_map.ravel())) for v in ves])
        ratios = []
        for v in ves:
            gm = v.grain_map.ravel()
            x = np.indices(v.grid).reshape(3, -1).T + 0.5
            ref = np.zeros((v.n_grains, 3))
            ref[gm[::-1]] = x[::-1]
            d = x - ref[gm]
            d -= grid * np.round(d / grid)
            cnt = np.bincount(gm)
            m = np.stack([np.bincount(gm, d[:, i]) for i in range(3)], 1) / cnt[:, None]
            d -= m[gm]
            big = cnt >= 20
            cxx, cyy = np.bincount(gm, d[:, 0] ** 2)[big], np.bincount(gm, d[:, 1] ** 2)[big]
            ratios.append(np.sqrt(cxx / cyy))
        dis = "-"
        if p.texture in TEXTURE_COMPONENTS:
            comp = crystal.eulers_to_quaternions(np.radians(TEXTURE_COMPONENTS[p.texture]))
            angles = [crystal.disorientation_angle(v.quaternions, comp, p.lattice, degrees=True) for v in ves]
            dis = f"{np.median(np.concatenate(angles)):.1f}"
        print(
            f"| {name} | {p.mean_esd} / {p.sigma} | {esd.mean():.3f} | {np.log(esd).std():.4f} | "
            f"{np.mean([v.n_grains for v in ves]):.0f} | {np.median(np.concatenate(ratios)):.2f} | {dis} |"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="train")
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--count", type=int, default=40, help="VEs per measurement")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--stats", action="store_true", help="instead: print measured statistics of every preset (--count VEs each)"
    )
    args = ap.parse_args(argv)
    if args.stats:
        return _stats(args.grid, args.count)

    import damask
    from tqdm.auto import tqdm

    from matflow_vae3d.microstructure import generate_ve, get_preset

    params = get_preset(args.preset, grid=args.grid)
    cells = np.array([args.grid] * 3)
    seeds = list(range(args.seed, args.seed + args.count))
    load0 = os.getloadavg()[0]

    # warm-up (imports, caches)
    generate_ve(params, 10**6)
    n_warm = generate_ve(params, 10**6 + 1).n_grains
    _damask_one((cells, n_warm, 0))

    ours_wall, ours_cpu, dam_wall, dam_cpu, grains = [], [], [], [], []
    for s in tqdm(seeds, desc="interleaved single-process runs", unit="VE"):
        t, c = time.perf_counter(), time.process_time()
        ve = generate_ve(params, s)
        ours_wall.append(time.perf_counter() - t)
        ours_cpu.append(time.process_time() - c)
        grains.append(ve.n_grains)
        t, c = time.perf_counter(), time.process_time()
        _damask_one((cells, ve.n_grains, s))
        dam_wall.append(time.perf_counter() - t)
        dam_cpu.append(time.process_time() - c)
    n_grains = int(round(np.mean(grains)))

    w = args.workers
    from matflow_vae3d.microstructure import generate_ves

    t0 = time.perf_counter()  # pool start-up included
    n_out = sum(1 for _ in generate_ves(params, seeds, workers=w, progress=False))
    t_ours = time.perf_counter() - t0
    assert n_out == len(seeds)
    t_dam, _ = _pool_throughput(_damask_one, [(cells, g, s) for g, s in zip(grains, seeds)], w, single_thread=True)
    load1 = os.getloadavg()[0]

    def row(name, wall, cpu, rate):
        h = 1e5 / rate / 3600
        print(f"| {name:<46} | {wall:9.1f} | {cpu:8.1f} | {rate:7.2f} | {h:7.2f} |")

    print()
    print(
        f"VE generation, preset {args.preset!r}, grid {args.grid}^3, {n_grains} grains per VE (mean), "
        f"{args.count} VEs per line; damask {damask.__version__}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset (damask uses 4)')}; "
        f"{os.cpu_count()} CPUs, load average {load0:.1f} -> {load1:.1f}"
    )
    print()
    print(f"| {'method':<46} | {'wall ms/VE':>9} | {'CPU ms/VE':>8} | {'VEs/s':>7} | {'h/100k':>7} |")
    print(f"|{'-' * 48}|{'-' * 11}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
    row(
        "ours generate_ve (complete VE), 1 process",
        1e3 * np.median(ours_wall),
        1e3 * np.median(ours_cpu),
        1.0 / np.mean(ours_wall),
    )
    row(
        "damask from_Voronoi_tessellation, 1 call",
        1e3 * np.median(dam_wall),
        1e3 * np.median(dam_cpu),
        1.0 / np.mean(dam_wall),
    )
    row(f"ours generate_ves, {w} processes", 1e3 * t_ours / args.count, float("nan"), args.count / t_ours)
    row(f"damask from_Voronoi_tessellation, {w} processes", 1e3 * t_dam / args.count, float("nan"), args.count / t_dam)
    print()
    print(
        f"speed-up over damask (median wall, 1 process): {np.median(dam_wall) / np.median(ours_wall):.2f}x; "
        f"({w} processes): {t_dam / t_ours:.2f}x"
    )
    print(
        "wall = median over the interleaved single-process calls; CPU = process CPU time (damask's "
        "threads included); VEs/s from the mean; timings on a shared machine are noisy."
    )


if __name__ == "__main__":
    main()
