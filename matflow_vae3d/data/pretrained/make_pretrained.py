"""Recipe of the shipped small VAE (``vae_hP_grid16.pt``): hexagonal (hP) VEs on a
16³ grid with the ``train`` preset's statistics, a small ResNet12-style network,
trained on a CPU. Run from the repository root::

    python matflow_vae3d/data/pretrained/make_pretrained.py --work out/pretrained

It writes the VE sets (train/val/test + edge-case presets) to --work, trains for at
most --minutes of wall time (whole epochs), exports the model and its training record
(CSV history, config, data seeds, wall time) beside this file, and prints the
evaluation table. VEs come from ``matflow_vae3d.microstructure.generate_ves`` with the
presets at grid 16 (ESDs in voxels as in the paper: ``train`` has ~40 grains per VE).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = HERE / "vae_hP_grid16.pt"
GRID = 16
LATTICE = "hP"
#: sets evaluated besides the held-out train-preset test set (MISSION §1 edge cases)
EDGE = ("large", "small", "elongated", "brass", "copper", "cube", "goss")


def make_set(path: Path, preset: str, n: int, seed: int, prefix: str) -> dict:
    """Write n VEs of ``preset`` to ``path``; returns a record of how."""
    from matflow_vae3d.datasets import write_ves

    from matflow_vae3d.microstructure import generate_ves, get_preset

    params = get_preset(preset, grid=GRID, lattice=LATTICE)
    seeds = range(seed * 1_000_000, seed * 1_000_000 + n)
    ves = generate_ves(params, seeds, progress=False)
    how = (f"generate_ves(get_preset({preset!r}, grid={GRID}, lattice={LATTICE!r}), "
           f"seeds=range({seeds.start}, {seeds.stop}))")
    write_ves(path, ves, overwrite=True, progress=False, total=n)
    return {"path": path.name, "preset": preset, "n": n, "seed": seed, "generator": how}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="out/pretrained")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-val", type=int, default=400)
    ap.add_argument("--n-edge", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=14.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import lightning as L
    import torch
    from lightning.pytorch.callbacks import Callback

    from matflow_vae3d.vae.checkpoint import load_model, save_model
    from matflow_vae3d.vae.encode import evaluate_dataset
    from matflow_vae3d.vae.lightning import VAEModule, VEDataModule, make_trainer
    from matflow_vae3d.vae.network import preset_config

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = {"train": make_set(work / "train.h5", "train", args.n_train, 1, "train"),
            "val": make_set(work / "val.h5", "train", args.n_val, 2, "val"),
            "test": make_set(work / "test.h5", "train", args.n_edge, 3, "test")}
    for k, name in enumerate(EDGE):
        data[name] = make_set(work / f"{name}.h5", name, args.n_edge, 10 + k, name)
    t_data = time.perf_counter() - t0
    print(f"data: {t_data:.0f} s", flush=True)

    cfg = preset_config("small")  # ResNet12 layers, widths 16/32/64/128, hidden 256, latent 32
    deadline = time.perf_counter() + 60 * args.minutes

    class TimeBox(Callback):
        def __init__(self):
            self.epoch_s = 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.t = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.epoch_s = max(self.epoch_s, time.perf_counter() - self.t)
            if time.perf_counter() + 1.1 * self.epoch_s > deadline:
                trainer.should_stop = True

    run = work / "run"
    if run.exists():
        shutil.rmtree(run)
    L.seed_everything(0, verbose=False)
    module = VAEModule(cfg.to_dict(), LATTICE, lr=args.lr, weight_decay=1e-4, alpha=0.999,
                       kl_weight=1e-5, seed=0)
    dm = VEDataModule(work / "train.h5", work / "val.h5", batch_size=args.batch_size, seed=0)
    trainer = make_trainer(run, 1000, accelerator="cpu", progress=False)
    trainer.callbacks.append(TimeBox())
    t1 = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    t_train = time.perf_counter() - t1

    model, meta = load_model(run / "checkpoints" / "best.ckpt")
    history = (run / "history.csv").read_text()
    record = {
        "what": "small CPU model, grid 16: hP VEs with the train preset's statistics",
        "config": cfg.to_dict(), "lattice": LATTICE, "grid": GRID,
        "data": data, "epochs_run": int(trainer.current_epoch), "best_epoch_record": meta["training"],
        "batch_size": args.batch_size, "lr": args.lr, "weight_decay": 1e-4, "alpha": 0.999,
        "kl_weight": 1e-5, "seed": 0, "torch_threads": args.threads,
        "wall_s_data": round(t_data, 1), "wall_s_train": round(t_train, 1),
        "machine": "2-core CPU, shared with ~6 other jobs (timings noisy)",
        "torch": torch.__version__, "recipe": "matflow_vae3d/data/pretrained/make_pretrained.py",
        "history_csv": history,
    }
    save_model(MODEL, model, LATTICE, record)
    (HERE / "history.csv").write_text(history)
    shutil.copy(run / "loss_curve.png", HERE / "loss_curve.png")

    model, meta = load_model(MODEL)
    rows = {}
    for name in ("test",) + EDGE:
        r = evaluate_dataset(model, meta, work / f"{name}.h5", batch_size=64, progress=False)
        rows[name] = {k: r[k] for k in ("n", "quat_mean", "quat_std", "deg_mean", "deg_std")}
        print(f"| {name} | {r['n']} | {r['quat_mean']:.3e} ± {r['quat_std']:.1e} | "
              f"{r['deg_mean']:.2f} ± {r['deg_std']:.2f} |", flush=True)
    record["evaluation"] = rows
    save_model(MODEL, model, LATTICE, record)
    (HERE / "training_record.json").write_text(json.dumps({k: v for k, v in record.items() if k != "history_csv"}, indent=1))
    print(f"model -> {MODEL} ({MODEL.stat().st_size / 1e6:.1f} MB); train {t_train:.0f} s, "
          f"{trainer.current_epoch} epochs", flush=True)


if __name__ == "__main__":
    sys.exit(main())
