"""VAE throughput: training and fingerprinting VEs/s with the real data pipeline
(VE dataset on disk -> DataLoader workers -> compact VEBatch -> expansion to the
model's input image on the device: quaternions or normalised Euler angles).

GPU (default when CUDA is present): the paper's ResNet18 on 64³ × 3, steps
plain fp32 batch 8 -> bf16 autocast -> channels_last_3d -> larger batch ->
torch.compile, then fingerprinting (bf16, channels_last_3d, eval, no noise).
Reference figures (docs/benchmarks.md, issue 5): plain fp32 batch 8 ≈ 90 VEs/s on an
H100; the paper's two A100s ≈ 200 VEs/s; targets ≥ 600 VEs/s training and
≥ 5,000 VEs/s fingerprinting.

CPU (``--cpu``): the shipped default model (periodic spatial VAE, hP, 16³) next to
the old small dense preset: fingerprinting and training VEs/s at the thread count
given. ``--preset periodic`` on a GPU times the project's default design at 64³.

    python benchmarks/bench_vae.py                 # GPU table
    python benchmarks/bench_vae.py --cpu           # 2-core CPU figures
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REF_PLAIN = 90.0
REF_PAPER = 200.0
TARGET_TRAIN = 600.0
TARGET_FP = 5000.0


def make_data(path: Path, preset: str, grid: int, lattice: str, n: int, workers: int) -> Path:
    """Generate n VEs of ``preset`` to ``path`` unless it exists with enough VEs."""
    from matflow_vae3d.datasets import VEDataset, write_ves
    from matflow_vae3d.microstructure import generate_ves, get_preset

    if path.exists():
        with VEDataset(path) as ds:
            if len(ds) >= n and ds.grid == (grid,) * 3:
                return path
    t = time.perf_counter()
    ves = generate_ves(get_preset(preset, grid=grid, lattice=lattice), range(n), workers=workers, progress=True)
    write_ves(path, ves, overwrite=True, total=n)
    print(f"generated {n} VEs ({grid}³) in {time.perf_counter() - t:.0f} s -> {path}", flush=True)
    return path


def loader(path, batch_size, workers, shuffle=True):
    from torch.utils.data import DataLoader

    from matflow_vae3d.datasets import VETorchDataset, collate_ves

    ds = VETorchDataset(path, threads=1 if workers else None)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_ves,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        drop_last=True,
        prefetch_factor=4 if workers else None,
    )


def bench_train(arch_cfg, path, device, batch_size, steps, warmup, bf16, channels_last, compile_, workers, lattice):
    """Training VEs/s (forward + backward + optimiser step, the architecture's loss),
    excluding ``warmup`` steps. arch_cfg: (architecture, config) of vae.models."""
    from matflow_vae3d.vae.encode import model_input
    from matflow_vae3d.vae.losses import quaternion_vae_loss, vae_loss
    from matflow_vae3d.vae.models import build_model

    torch.manual_seed(0)
    model = build_model(*arch_cfg).to(device).train()
    rep = model.representation
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    fwd = torch.compile(model) if compile_ else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=device.type == "cuda")
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    dl = loader(path, batch_size, workers)
    done, t0, n = 0, None, 0
    while done < steps + warmup:
        for batch in dl:
            x = model_input(batch, device, rep)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with amp:
                raw, mu, logvar = fwd(x)
            if rep == "quaternion":
                loss = quaternion_vae_loss(model.output(raw), x, mu, logvar, lattice)["loss"]
            else:
                loss = vae_loss(raw, x, mu.flatten(1), logvar.flatten(1), kl_weight=1e-5)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            elif done > warmup:
                n += x.shape[0]
            if done >= steps + warmup:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = n / (time.perf_counter() - t0)
    del model, opt, fwd
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rate


@torch.inference_mode()
def bench_fingerprint(model, path, device, batch_size, workers, bf16, channels_last, max_batches=None):
    """Fingerprinting VEs/s over the whole dataset (one warm-up batch excluded)."""
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    dl = loader(path, batch_size, workers, shuffle=False)
    n, t0 = 0, None
    from matflow_vae3d.vae.encode import model_input

    for i, batch in enumerate(dl):
        x = model_input(batch, device, model.representation)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with amp:
            mu = model.fingerprint(x)
        mu.float().cpu()
        if i == 0:
            t0 = time.perf_counter()
        else:
            n += x.shape[0]
        if max_batches and i >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def gpu(args):
    from matflow_vae3d.vae.models import build_model, model_config

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    path = make_data(Path(args.data), "train", args.grid, "cF", args.n_ves, os.cpu_count() or 1)
    cfg = model_config(args.preset, args.grid)
    big = args.big_batch
    steps = [
        ("plain fp32, batch 8", dict(batch_size=8, bf16=False, channels_last=False, compile_=False)),
        ("+ bf16 autocast", dict(batch_size=8, bf16=True, channels_last=False, compile_=False)),
        ("+ channels_last_3d", dict(batch_size=8, bf16=True, channels_last=True, compile_=False)),
        (f"+ batch {big}", dict(batch_size=big, bf16=True, channels_last=True, compile_=False)),
    ]
    if not args.no_compile:
        steps.append(("+ torch.compile", dict(batch_size=big, bf16=True, channels_last=True, compile_=True)))
    print(
        f"device: {torch.cuda.get_device_name(0)}; {args.preset} {args.grid}³; data {path} "
        f"({args.n_ves} VEs, {args.workers} loader workers)",
        flush=True,
    )
    rows = []
    for name, kw in steps:
        try:
            r = bench_train(
                cfg, path, device, steps=args.steps, warmup=args.warmup, workers=args.workers, lattice="cF", **kw
            )
        except torch.cuda.OutOfMemoryError:
            r = float("nan")
            torch.cuda.empty_cache()
        rows.append((f"train: {name}", r))
        print(f"  {name}: {r:.0f} VEs/s", flush=True)
    model = build_model(*cfg)
    fp = bench_fingerprint(model, path, device, args.fp_batch, args.workers, True, True)
    rows.append((f"fingerprint: bf16, channels_last_3d, batch {args.fp_batch}", fp))
    print("\n| step | VEs/s | reference |\n|---|---|---|")
    for name, r in rows:
        ref = (
            f"target ≥ {TARGET_FP:.0f}"
            if name.startswith("fingerprint")
            else f"plain ≈ {REF_PLAIN:.0f}, paper 2×A100 ≈ {REF_PAPER:.0f}, target ≥ {TARGET_TRAIN:.0f}"
        )
        print(f"| {name} | {r:.0f} | {ref} |")


def _label(model_arg, model) -> str:
    """'<file> (spatial, C x g³)' or '<file> (dense, latent N)' of the timed model."""
    from matflow_vae3d.vae.encode import latent_shape

    shape = latent_shape(model)
    kind = f"spatial, {shape[0]} x {shape[1]}³" if len(shape) == 4 else f"dense, latent {shape[0]}"
    return f"{Path(model_arg).name if model_arg else 'shipped hP model'} ({kind})"


def cpu(args):
    """The shipped default (periodic spatial VAE, 16³) next to the old small dense preset."""
    from matflow_vae3d.vae import pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.models import build_model, model_config

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model, meta = load_model(args.model or pretrained_path("hP"))
    tmp = Path(args.data) if args.data else Path(tempfile.mkdtemp()) / "small.h5"
    path = make_data(tmp, "train", meta["grid"], meta["lattice"], args.n_ves, 1)
    print(f"CPU, {args.threads} torch thread(s); {args.n_ves} hP 16³ VEs from {path}", flush=True)
    rows = []
    old = model_config("small", 16)  # the previously shipped design (dense ResNet12, latent 32)
    for name, m, (arch, cfg) in (
        (_label(args.model, model), model, (meta["architecture"], meta["config"])),
        ("old small preset (dense, latent 32)", build_model(*old), old),
    ):
        for bs in (32, 128):  # (the first batch is not timed: keep >= 3 batches of n_ves)
            rows.append(
                (f"{name}: fingerprint mu, fp32, batch {bs}", bench_fingerprint(m, path, device, bs, 0, False, False))
            )
        rows.append(
            (
                f"{name}: train, fp32, batch 16",
                bench_train((arch, cfg), path, device, 16, args.steps, 2, False, False, False, 0, meta["lattice"]),
            )
        )
    print("\n| step (2-core CPU) | VEs/s |\n|---|---|")
    for name, r in rows:
        print(f"| {name} | {r:.0f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="CPU figures for the small shipped model")
    ap.add_argument("--data", help="VE dataset to use/create (default: a temporary file)")
    ap.add_argument("--model", help="--cpu: the model to time (default: the shipped hP model)")
    ap.add_argument("--preset", default="resnet18")
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--n-ves", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per configuration")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--big-batch", type=int, default=64)
    ap.add_argument("--fp-batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    ap.add_argument("--threads", type=int, default=1, help="torch threads in --cpu mode")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    if args.cpu or not torch.cuda.is_available():
        args.n_ves = args.n_ves or 512
        args.steps = args.steps or 8
        cpu(args)
    else:
        args.n_ves = args.n_ves or 2048
        args.steps = args.steps or 30
        args.data = args.data or str(Path(tempfile.gettempdir()) / f"bench_vae_{args.grid}.h5")
        gpu(args)


if __name__ == "__main__":
    sys.exit(main())
