"""Recipe of the shipped VAEs (``vae_hP_grid16.pt``, ``vae_cF_grid16.pt``): the
periodic spatial-latent VAE (preset ``periodic``: 16 × 4³ = 1,024 numbers per 16³ VE)
trained on a CPU on ``train``-preset VEs, 2 epochs of 75,000 VEs (about 1 hour on 2
threads). Run from the repository root::

    python matflow_vae3d/data/pretrained/make_pretrained.py --lattice hP --work out/pretrained_hP --threads 2
    python matflow_vae3d/data/pretrained/make_pretrained.py --lattice cF --work out/pretrained_cF --threads 2

Steps (each resumes: a killed run continues where it stopped when started again):

1. data: ``vae3d generate`` sets on a 16³ grid, run seeds below (VE i of a set has a
   seed derived from (run seed, i), so held-out sets share no VE seed with training);
2. training: :func:`matflow_vae3d.vae.train.train_vae` (checkpoint every 500 steps);
3. evaluation on the held-out ``train``-preset set and the edge-case presets, next to
   the constant-identity and training-mean-image baselines; the model, its training
   record (config, data seeds, wall time, history) and ``eval_<lattice>.json`` /
   ``history_<lattice>.csv`` / ``loss_curve_<lattice>.png`` /
   ``reconstructions_<lattice>.png`` go beside this file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = 16
#: run seeds of the sets: (preset, count, seed); 'train' of size --n-train.
SEEDS = {
    "hP": {"train": 101, "val": 102, "test": 103, "large": 110, "small": 111, "elongated": 112,
           "brass": 113, "copper": 114, "cube": 115, "goss": 116},
    "cF": {"train": 201, "val": 202, "test": 203, "large": 210, "small": 211, "elongated": 212,
           "brass": 213, "copper": 214, "cube": 215, "goss": 216},
}
EDGE = ("large", "small", "elongated", "brass", "copper", "cube", "goss")


def model_path(lattice: str) -> Path:
    return HERE / f"vae_{lattice}_grid16.pt"


def make_set(work: Path, lattice: str, name: str, n: int) -> dict:
    """``vae3d generate`` one set unless it is already there with n VEs."""
    from matflow_vae3d.datasets import VEDataset

    preset = "train" if name in ("train", "val", "test") else name
    seed = SEEDS[lattice][name]
    path = work / f"{lattice}16_{name}.h5"
    cmd = ["vae3d", "generate", "--preset", preset, "--count", str(n), "--grid", str(GRID),
           "--seed", str(seed), "--lattice", lattice, "--out", str(path), "--no-progress"]
    if not (path.exists() and len(VEDataset(str(path))) == n):
        subprocess.run([sys.executable, "-m", "matflow_vae3d.cli", *cmd[1:], "--overwrite"], check=True)
    return {"path": path.name, "preset": preset, "n": n, "seed": seed, "command": " ".join(cmd)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lattice", choices=sorted(SEEDS), default="hP")
    ap.add_argument("--work", default=None, help="data and run folder (default out/pretrained_<lattice>)")
    ap.add_argument("--preset", default="periodic")
    ap.add_argument("--latent-channels", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=75_000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-edge", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init-from", default=None,
                    help="start from this model's weights (e.g. the shipped one) with a fresh schedule")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    ap.add_argument("--warmup-steps", type=int, default=None)
    ap.add_argument("--orientation-loss", default="angle", choices=("angle", "squared", "angle+fz"),
                    help="per-voxel loss (vae.losses.ORIENTATION_LOSSES); angle+fz adds the paper's metric")
    ap.add_argument("--run-name", default=None, help="run folder under --work (default run_<lattice>)")
    ap.add_argument("--evaluate-only", action="store_true", help="skip training; evaluate and export")
    ap.add_argument("--no-export", action="store_true", help="do not write beside this file")
    args = ap.parse_args(argv)

    import torch

    from matflow_vae3d.vae.checkpoint import load_model, save_model
    from matflow_vae3d.vae.encode import evaluate_dataset, plot_reconstructions
    from matflow_vae3d.vae.evaluation import baseline_errors, mean_euler_image, plain_summary, table
    from matflow_vae3d.vae.train import train_vae

    torch.set_num_threads(args.threads)
    lat = args.lattice
    work = Path(args.work or f"out/pretrained_{lat}")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sizes = {"train": args.n_train, "val": args.n_val, "test": args.n_test, **{e: args.n_edge for e in EDGE}}
    data = {name: make_set(work, lat, name, n) for name, n in sizes.items()}
    print(f"data ready: {time.perf_counter() - t0:.0f} s", flush=True)

    run = work / (args.run_name or f"run_{lat}")
    overrides = {"latent_channels": args.latent_channels}
    if not args.evaluate_only:
        t1 = time.perf_counter()
        train_vae(work / data["train"]["path"], run, val=work / data["val"]["path"], preset=args.preset,
                  overrides=overrides, epochs=args.epochs, seed=0, resume=True, progress=False,
                  accelerator="cpu", checkpoint_every_n_steps=500, init_from=args.init_from,
                  lr=args.lr, warmup_steps=args.warmup_steps, orientation_loss=args.orientation_loss,
                  record={"data": data, "torch_threads": args.threads, "recipe":
                          "matflow_vae3d/data/pretrained/make_pretrained.py " + " ".join(argv or sys.argv[1:])})
        print(f"training (this call): {time.perf_counter() - t1:.0f} s", flush=True)

    model, meta = load_model(run / "model.pt")
    record = dict(meta["training"])
    threads = record.get("torch_threads", args.threads)
    record.update(machine=f"2-core CPU (no GPU), {threads} torch thread(s)", torch=torch.__version__)
    mean_img = mean_euler_image(work / data["train"]["path"], max_ves=2000)
    results, baselines = {}, {}
    for name in ("test",) + EDGE:
        path = work / data[name]["path"]
        results[name] = evaluate_dataset(model, meta, path, batch_size=64, progress=False)
        baselines[name] = baseline_errors(path, lat, mean_image=mean_img)
    print(table(results, baselines), flush=True)
    record["evaluation"] = {k: {m: v for m, v in plain_summary(r).items() if not isinstance(v, list)}
                            for k, r in results.items()}
    if args.no_export:
        return 0
    out = model_path(lat)
    save_model(out, model, lat, record)
    doc = {"model": out.name, "lattice": lat, "sets": {k: plain_summary(r) for k, r in results.items()},
           "baselines": {k: {p: plain_summary(b) for p, b in v.items()} for k, v in baselines.items()}}
    (HERE / f"eval_{lat}.json").write_text(json.dumps(doc, indent=1))
    shutil.copy(run / "history.csv", HERE / f"history_{lat}.csv")
    shutil.copy(run / "loss_curve.png", HERE / f"loss_curve_{lat}.png")
    x, rec = results["test"]["examples"]
    plot_reconstructions(x, rec, HERE / f"reconstructions_{lat}.png", titles=results["test"]["ve_id"][:4],
                         representation=meta["representation"], lattice=lat)
    print(f"model -> {out} ({out.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
