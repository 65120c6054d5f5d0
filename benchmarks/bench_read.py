"""Benchmark: VE dataset size and read throughput per grain-map storage option.

Writes N ``train``-preset VEs (64^3, ~2000 grains) once per storage option, then
reports bytes per VE, the extrapolated size of 100,000 VEs, and read throughput
(decompressed grain maps + orientation tables, i.e. ``VEDataset.read_batch``) in
VEs/s with 1 thread and with all cores, in file order and in shuffled order; then
``VEBatch.to_tensor`` expansion throughput on CPU and a torch DataLoader run.

Reference: the foundation issue asks for >= 1,000 VEs/s reading at 64^3 on the
project's 2-core machine, and 100,000 VEs on a laptop disk.

    python benchmarks/bench_read.py               # N=200, 64^3
    python benchmarks/bench_read.py --n 50 --quick

Files are read right after writing (warm page cache): the figures are for
decompression + HDF5 overhead, not for a cold disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from matflow_vae3d.datasets import VEDataset, VETorchDataset, collate_ves, write_ves
from matflow_vae3d.microstructure import VolumeElement


def make_ves(n: int, grid: int, seed: int = 0, progress: bool = True):
    """``n`` train-preset VEs from the package generator, or, when it is not
    available, periodic Voronoi VEs with the train preset's grain count."""
    try:
        from matflow_vae3d.microstructure import generate_ves, get_preset

        params = get_preset("train")
        params = _with_grid(params, grid)
        seeds = [seed * 1_000_003 + i for i in range(n)]
        ves = list(generate_ves(params, seeds, workers=1, progress=progress))
        for i, ve in enumerate(ves):
            ve.ve_id = f"train-s{seed}-{i:06d}"
        return ves, "generate_ves(train preset)"
    except ImportError:
        pass
    import damask
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    # train preset: mean ESD 5.78 voxels -> ~ N^3 / (pi/6 * 5.78^3) grains
    n_grains = int(round(grid**3 / (np.pi / 6 * 5.78**3)))
    x = np.stack(np.meshgrid(*[np.arange(grid) + 0.5] * 3, indexing="ij"), -1).reshape(-1, 3)
    ves = []
    for i in range(n):
        seeds = rng.random((n_grains, 3)) * grid
        _, gm = cKDTree(seeds, boxsize=grid).query(x)
        q = damask.Orientation.from_random(shape=n_grains, lattice="cF", rng_seed=int(rng.integers(2**31))).reduced
        ves.append(VolumeElement(gm.reshape((grid,) * 3), q.quaternion, "cF", seed=i, ve_id=f"voronoi-{i:06d}"))
    return ves, f"periodic Voronoi, {n_grains} grains (generator not available)"


def _with_grid(params, grid):
    import dataclasses

    for name in ("grid", "cells", "grid_size", "n"):
        if hasattr(params, name):
            val = getattr(params, name)
            new = (grid,) * 3 if isinstance(val, (tuple, list)) else grid
            return dataclasses.replace(params, **{name: new})
    return params


def time_reads(path, n, batch, threads, shuffle, repeats=2):
    """(VEs/s wall, CPU seconds per VE) of read_batch over the whole file."""
    rng = np.random.default_rng(0)
    best, cpu = 0.0, np.inf
    with VEDataset(path, threads=threads) as ds:
        ds.read_batch([0])  # warm up (thread pool, ids)
        for _ in range(repeats):
            order = rng.permutation(n) if shuffle else np.arange(n)
            t, c = time.perf_counter(), time.process_time()
            for s in range(0, n, batch):
                ds.read_batch(order[s : s + batch])
            best = max(best, n / (time.perf_counter() - t))
            cpu = min(cpu, (time.process_time() - c) / n)
    return best, cpu


def read_existing(path, batch):
    """Wall-clock and CPU read rates of an existing dataset, 1 and all threads."""
    ncores = len(os.sched_getaffinity(0))
    with VEDataset(path) as ds:
        n = len(ds)
        print(f"# {ds!r}; batch {batch}; load average {os.getloadavg()[0]:.1f} on {ncores} cores")
    for threads in sorted({1, ncores}):
        best, cpu = 0.0, np.inf
        for _ in range(3):
            r, c = time_reads(path, n, batch, threads=threads, shuffle=False)
            best, cpu = max(best, r), min(cpu, c)
        print(f"read_batch, {threads} thread(s): {best:.0f} VEs/s wall, {cpu * 1e3:.2f} ms CPU per VE")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="VEs per file")
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="fewer storage options")
    ap.add_argument("--dir", default=None, help="scratch directory (default: temp)")
    ap.add_argument("--skip-storage", action="store_true", help="only the to_tensor and DataLoader measurements")
    ap.add_argument("--read", default=None, metavar="FILE", help="only time read_batch on an existing VE dataset FILE")
    args = ap.parse_args(argv)
    if args.read:
        return read_existing(args.read, args.batch)

    import torch

    ncores = len(os.sched_getaffinity(0))
    print(
        f"# bench_read: N={args.n} VEs at {args.grid}^3, batch {args.batch}, "
        f"{ncores} cores, torch {torch.__version__} (shared machine: timings noisy)"
    )
    t = time.perf_counter()
    ves, source = make_ves(args.n, args.grid, progress=False)
    grains = np.mean([ve.n_grains for ve in ves])
    print(f"# VEs: {source}; mean {grains:.0f} grains/VE; made in {time.perf_counter() - t:.1f} s")

    options = [
        ("gzip", 1),
        ("gzip", 4),
        ("gzip", 6),
        ("zstd", 3),
        ("zstd", 6),
        ("zstd", 12),
        ("lzf", None),
        ("none", None),
    ]
    if args.quick:
        options = [("gzip", 4), ("zstd", 6), ("none", None)]
    if args.skip_storage:
        options = []
    tmpdir = tempfile.TemporaryDirectory(dir=args.dir)
    rows = []
    for comp, level in options:
        path = Path(tmpdir.name) / f"{comp}{level or ''}.h5"
        t = time.perf_counter()
        write_ves(path, ves, compression=comp, compression_level=level, progress=False)
        t_write = time.perf_counter() - t
        size = path.stat().st_size
        with VEDataset(path) as ds:
            gm_bytes = ds._f["grain_maps"].id.get_storage_size()
        r1, cpu1 = time_reads(path, args.n, args.batch, threads=1, shuffle=False)
        rn, _ = time_reads(path, args.n, args.batch, threads=ncores, shuffle=False)
        rs, _ = time_reads(path, args.n, args.batch, threads=ncores, shuffle=True)
        rows.append(
            (
                f"{comp}" + (f"-{level}" if level else ""),
                size / args.n,
                gm_bytes / args.n,
                size / args.n * 1e5 / 1e9,
                args.n / t_write,
                r1,
                rn,
                rs,
                cpu1,
            )
        )
        path.unlink()

    print()
    if rows:
        print(
            "| storage | bytes/VE | of which grain map | 100k VEs (GB) | write VE/s "
            f"| read VE/s 1 thread | read VE/s {ncores} threads | shuffled, {ncores} threads "
            f"| CPU ms/VE | idle-machine VE/s ({ncores} cores / CPU time) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
    for name, bpv, gbpv, gb, w, r1, rn, rs, cpu in rows:
        print(
            f"| {name} | {bpv:,.0f} | {gbpv:,.0f} | {gb:.1f} | {w:.0f} | {r1:.0f} "
            f"| {rn:.0f} | {rs:.0f} | {cpu * 1e3:.2f} | {ncores / cpu:.0f} |"
        )
    print("\nreference: >= 1,000 VEs/s read at 64^3 (foundation issue); 100k VEs must fit a laptop disk.")

    # expansion to the (B, 3, N, N, N) float32 tensor on CPU
    path = Path(tmpdir.name) / "expand.h5"
    write_ves(path, ves, progress=False)
    with VEDataset(path) as ds:
        batch = ds.read_batch(np.arange(min(args.batch, args.n)))
    print()
    for threads in sorted({1, ncores}):
        torch.set_num_threads(threads)
        batch.to_tensor()
        t, c = time.perf_counter(), time.process_time()
        reps = 3
        for _ in range(reps):
            x = batch.to_tensor()
        dt = (time.perf_counter() - t) / reps
        dc = (time.process_time() - c) / reps
        naive, naive_c = time.perf_counter(), time.process_time()
        y = torch.from_numpy(batch.eulers_norm)[torch.from_numpy(batch.grain_maps).long()]
        y = y.permute(0, 4, 1, 2, 3).contiguous()
        naive, naive_c = time.perf_counter() - naive, time.process_time() - naive_c
        assert torch.equal(x, y)
        print(
            f"VEBatch.to_tensor on CPU, torch threads={threads}: {len(batch) / dt:.0f} VEs/s "
            f"wall, {dc / len(batch) * 1e3:.2f} ms CPU per VE "
            f"({x.numel() * 4 / 1e6 / len(batch):.1f} MB float32 per VE); naive "
            f"table[global].permute().contiguous(): {len(batch) / naive:.0f} VEs/s wall, "
            f"{naive_c / len(batch) * 1e3:.2f} ms CPU per VE"
        )
    torch.set_num_threads(ncores)

    # torch DataLoader with the collate function (read + collate, no expansion)
    from torch.utils.data import DataLoader

    for workers in (0, ncores):
        tds = VETorchDataset(path, threads=ncores if workers == 0 else 1)
        dl = DataLoader(
            tds,
            batch_size=args.batch,
            shuffle=True,
            num_workers=workers,
            collate_fn=collate_ves,
            persistent_workers=False,
        )
        t, c = time.perf_counter(), time.process_time()
        n = 0
        for b in dl:
            n += len(b)
        print(
            f"DataLoader(num_workers={workers}, shuffle) + collate_ves: "
            f"{n / (time.perf_counter() - t):.0f} VEs/s wall (incl. worker start-up); "
            f"main-process CPU {(time.process_time() - c) / n * 1e3:.2f} ms/VE"
        )
    tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
