"""Training a VAE on VE datasets: the one entry point that the ``vae3d train-vae``
command, the MatFlow action and the shipped-model recipes call.

:func:`train_vae` takes the grid and crystal structure from the training set, builds
the model of a preset (:func:`~matflow_vae3d.vae.models.model_config`), trains it with
Lightning (checkpoints every epoch and, optionally, every N steps; resume from
``OUT/checkpoints/last.ckpt``) and exports ``OUT/model.pt``, the best validation epoch
when a validation set is given.

Defaults follow the architecture:

============== ========================================= =================================
               spatial (``periodic*`` presets)            dense (the paper's ResNets)
============== ========================================= =================================
optimiser      AdamW, lr 2e-3, linear warm-up 200 steps,  Adam, lr 1e-4, constant
               cosine decay to 2 % over the run
loss           sin(θ/2) symmetry-aware + 1e-3 · KL/elem.  0.999 BCE + 0.001 spectral + 1e-5 KL
augmentation   a random periodic roll per VE and step     none
clipping       gradient norm 1                            none
batch          16                                         8
============== ========================================= =================================
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

#: per-architecture defaults of :func:`train_vae` (None in a call = use these).
DEFAULTS: dict[str, dict[str, Any]] = {
    "spatial": dict(
        optimizer="adamw",
        lr=2e-3,
        weight_decay=1e-4,
        warmup_steps=200,
        kl_weight=1e-3,
        roll=True,
        gradient_clip=1.0,
        batch_size=16,
    ),
    "dense": dict(
        optimizer="adam",
        lr=1e-4,
        weight_decay=1e-4,
        warmup_steps=0,
        kl_weight=1e-5,
        roll=False,
        gradient_clip=0.0,
        batch_size=8,
    ),
}


class RunExists(ValueError):
    """OUT/checkpoints/last.ckpt exists and the caller did not say resume or not."""


def _load_initial_weights(module, path, arch: str, config: dict, lattice: str) -> dict:
    """Copy the weights of the VAE file ``path`` into ``module.net``; its record back."""
    from .checkpoint import load_model

    model, meta = load_model(path)
    same = json.dumps(meta["config"], sort_keys=True) == json.dumps(config, sort_keys=True)
    if meta["architecture"] != arch or not same or meta["lattice"] != lattice:
        raise ValueError(
            f"--init-from {path}: a {meta['lattice']} {meta['architecture']} VAE with config "
            f"{meta['config']} cannot start a {lattice} {arch} run with config {config}"
        )
    module.net.load_state_dict(model.state_dict())
    prior = meta.get("training") or {}
    keep = ("epochs", "n_train", "lr", "wall_s_this_run", "train_wall_s", "global_step", "init_from")
    return {
        "path": str(Path(path).resolve()),
        "sha256": meta.get("sha256", ""),
        **{k: prior[k] for k in keep if k in prior},
    }


def train_vae(
    train,
    out,
    *,
    val=None,
    preset: str = "periodic",
    overrides: dict | None = None,
    epochs: int = 10,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    optimizer: str | None = None,
    warmup_steps: int | None = None,
    kl_weight: float | None = None,
    alpha: float = 0.999,
    orientation_loss: str = "angle",
    roll: bool | None = None,
    gradient_clip: float | None = None,
    seed: int = 0,
    resume: bool | None = None,
    accelerator: str = "auto",
    devices="auto",
    strategy: str = "auto",
    precision: str | None = None,
    compile: bool = False,
    num_workers: int = 0,
    progress: bool = True,
    checkpoint_every_n_steps: int = 0,
    record: dict | None = None,
    init_from=None,
) -> dict:
    """Train a VAE and export ``out/model.pt``.

    Parameters
    ----------
    train, val : paths of VE datasets (HDF5); val optional, same lattice and grid.
    out : run folder: checkpoints/, history.csv, loss_curve.png, model.pt.
    preset : 'periodic' (default), 'periodic-512', 'periodic-256', 'periodic-large' (spatial) or
        'small', 'resnet12', 'resnet18', 'resnet34' (the paper's dense ResNets).
    overrides : config fields replacing the preset's (e.g. latent_channels, widths).
    resume : True continues from out/checkpoints/last.ckpt, False starts over,
        None refuses (RunExists) when that file exists.
    checkpoint_every_n_steps : also save last.ckpt every N optimiser steps (0: off).
    record : extra plain entries for the training record (e.g. data seeds).
    init_from : a VAE model file or checkpoint whose weights start a new run
        (fine-tuning, e.g. a shipped model with a fresh learning-rate schedule). Its
        architecture, config and lattice must be the run's (ValueError otherwise);
        ignored when the run resumes from its own last.ckpt. Its training record is
        kept as ``init_from`` so that the total training time stays on record.
    Other arguments: see the module docstring; None = the architecture's default.

    Returns the training record (also stored in model.pt); an empty dict on the
    other ranks of a multi-process (DDP) run, which export nothing.
    """
    import lightning as L

    from .checkpoint import load_model, save_model
    from .encode import open_dataset
    from .lightning import VAEModule, VEDataModule, make_trainer
    from .models import model_config

    out = Path(out)
    last = out / "checkpoints" / "last.ckpt"
    if last.exists() and resume is None:
        raise RunExists(f"{last} exists: pass --resume to continue that run or --no-resume to start over")
    tr = open_dataset(train)
    g = tuple(tr.grid)
    if len(set(g)) != 1:
        raise ValueError(f"the VAE needs cubic grids, training set has {g}")
    va = None
    if val:
        va = open_dataset(val)
        if va.lattice != tr.lattice or tuple(va.grid) != g:
            raise ValueError(
                f"validation set ({va.lattice}, grid {tuple(va.grid)}) does not match "
                f"the training set ({tr.lattice}, grid {g})"
            )
    arch, cfg = model_config(preset, g[0], **(overrides or {}))
    d = DEFAULTS[arch]
    pick = lambda v, k: d[k] if v is None else v  # noqa: E731
    batch_size = int(pick(batch_size, "batch_size"))
    steps_per_epoch = math.ceil(len(tr) / batch_size)
    hp = dict(
        lr=float(pick(lr, "lr")),
        weight_decay=float(pick(weight_decay, "weight_decay")),
        optimizer=pick(optimizer, "optimizer"),
        warmup_steps=int(pick(warmup_steps, "warmup_steps")),
        kl_weight=float(pick(kl_weight, "kl_weight")),
        roll=bool(pick(roll, "roll")),
        alpha=float(alpha),
        orientation_loss=orientation_loss,
    )
    hp["total_steps"] = steps_per_epoch * int(epochs) if hp["optimizer"] == "adamw" else 0
    clip = float(pick(gradient_clip, "gradient_clip"))

    L.seed_everything(seed, verbose=False)
    module = VAEModule(cfg.to_dict(), tr.lattice, architecture=arch, seed=seed, compile=compile, **hp)
    init_record = None
    if init_from is not None and not (resume and last.exists()):
        init_record = _load_initial_weights(module, init_from, arch, cfg.to_dict(), tr.lattice)
    data = VEDataModule(train, val, batch_size=batch_size, num_workers=num_workers, seed=seed)
    trainer = make_trainer(
        out,
        epochs,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,
        progress=progress,
        monitor_val=bool(val),
        gradient_clip=clip,
        checkpoint_every_n_steps=checkpoint_every_n_steps,
    )
    rec = dict(record or {})
    rec.update(
        train=str(Path(train).resolve()),
        val=str(Path(val).resolve()) if val else "",
        n_train=len(tr),
        n_val=len(va) if va is not None else 0,
        preset=preset,
        architecture=arch,
        config=cfg.to_dict(),
        epochs=int(epochs),
        batch_size=batch_size,
        gradient_clip=clip,
        seed=int(seed),
        precision=str(trainer.precision),
        devices=int(trainer.num_devices),
        accelerator=type(trainer.accelerator).__name__,
        **hp,
    )
    if init_record is not None:
        rec["init_from"] = init_record
    module.training_record = rec
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if (resume and last.exists()) else None)
    wall = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return {}
    best = out / "checkpoints" / "best.ckpt"
    src = best if (val and best.exists()) else last
    model, meta = load_model(src)
    rec.update(meta["training"])
    history = out / "history.csv"
    rec.update(
        wall_s_this_run=round(wall, 1), exported_from=src.name, history=history.read_text() if history.exists() else ""
    )
    save_model(out / "model.pt", model, tr.lattice, rec)
    return rec
