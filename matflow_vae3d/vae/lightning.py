"""Lightning training of the VAE: :class:`VAEModule`, :class:`VEDataModule` and the
callbacks that write the CSV history and the loss-curve PNG.

* Batches arrive as :class:`~matflow_vae3d.datasets.VEBatch` (grain maps + per-grain
  orientations, a few kB per VE); the expansion to the normalised Euler image
  (B, 3, n, n, n) happens in ``on_after_batch_transfer``, i.e. on the GPU when there
  is one. A plain tensor batch (B, 3, n, n, n) is accepted as well.
* On CUDA: bf16 autocast (``precision='bf16-mixed'``), ``channels_last_3d`` for the
  model and its input, optional ``torch.compile``; several GPUs through Lightning's
  DDP strategy (``strategy='ddp'``, ``devices=N``).
* Reproducible resume: the training order comes from :class:`EpochSampler` (seed +
  epoch) and the per-sample latent noise from a generator seeded by (seed, global
  step, rank), so "train 1 epoch, kill, resume" ends in the same state as an
  uninterrupted run. Checkpoints are written every epoch, atomically.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, Sampler

from ..crystal import canonical_lattice
from ..fileio import save_figure
from .checkpoint import FORMAT, FORMAT_VERSION, atomic_torch_save, plain
from .encode import model_input
from .losses import ALPHA, ORIENTATION_LOSSES, quaternion_vae_loss, vae_loss
from .models import build_model, config_from_dict

LOSS_TERMS = ("loss", "bce", "spectral", "kl", "orientation")


class EpochSampler(Sampler):
    """Random permutation of range(n) drawn from (seed, epoch); ``set_epoch`` is
    called by Lightning at each epoch start, so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self):
        return self.n

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def random_rolls(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Roll each VE of x (B, C, n, n, n) periodically by its own random shift along
    the three axes. Exact for periodic VEs: the same microstructure."""
    B, n = x.shape[0], x.shape[-3:]
    shifts = torch.stack([torch.randint(0, int(k), (B,), generator=generator) for k in n], 1).tolist()
    return torch.stack([torch.roll(x[b], tuple(shifts[b]), dims=(1, 2, 3)) for b in range(B)])


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.02) -> float:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``
    at ``total`` steps (and ``floor`` after). total <= 0: constant 1 after warm-up."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= 0:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


class VAEModule(L.LightningModule):
    """LightningModule around either VAE architecture (:mod:`.models`).

    architecture: 'spatial' or 'dense'; config: that architecture's config as a dict;
    lattice: crystal structure of the training data; optimizer: 'adam' (the paper's,
    constant lr) or 'adamw' (with warm-up and cosine decay over ``total_steps``);
    lr, weight_decay; alpha: BCE weight of the Euler loss (0.999); kl_weight: β of
    the KL term (per latent dimension summed for 'dense', per element averaged for
    'spatial'); orientation_loss: 'angle' or 'squared' (quaternion representation);
    roll: random periodic rolls of each training VE; seed: noise/roll seed;
    compile: torch.compile the net.
    """

    net: Any  # the VAE (a vae.models VAEBase)

    def __init__(
        self,
        config: dict,
        lattice: str,
        architecture: str = "dense",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        alpha: float = ALPHA,
        kl_weight: float = 1e-5,
        seed: int = 0,
        compile: bool = False,
        optimizer: str = "adam",
        warmup_steps: int = 0,
        total_steps: int = 0,
        orientation_loss: str = "angle",
        roll: bool = False,
    ):
        super().__init__()
        config = config_from_dict(architecture, config).to_dict()
        lattice = canonical_lattice(lattice)
        if optimizer not in ("adam", "adamw"):
            raise ValueError(f"unknown optimizer {optimizer!r}: use adam or adamw")
        if orientation_loss not in ORIENTATION_LOSSES:
            raise ValueError(f"unknown orientation loss {orientation_loss!r}: use {' or '.join(ORIENTATION_LOSSES)}")
        self.save_hyperparameters(
            dict(
                config=config,
                lattice=lattice,
                architecture=architecture,
                lr=float(lr),
                weight_decay=float(weight_decay),
                alpha=float(alpha),
                kl_weight=float(kl_weight),
                seed=int(seed),
                compile=bool(compile),
                optimizer=optimizer,
                warmup_steps=int(warmup_steps),
                total_steps=int(total_steps),
                orientation_loss=orientation_loss,
                roll=bool(roll),
            )
        )
        self.net = build_model(architecture, config)
        self.__dict__["_forward"] = self.net  # not a registered submodule (compile wrapper)
        self.training_record: dict = {}

    # -- device placement ------------------------------------------------------
    @property
    def hp(self) -> Any:
        """``self.hparams`` with attribute access (Lightning types it as a plain mapping)."""
        return self.hparams

    @property
    def _channels_last(self) -> bool:
        return self.device.type == "cuda"

    def setup(self, stage: str) -> None:
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last_3d)
        if self.hp.compile and self._forward is self.net:
            self.__dict__["_forward"] = torch.compile(self.net)  # type: ignore[arg-type]  # a Module is accepted

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x = model_input(batch, self.device, self.net.representation)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    # -- steps ----------------------------------------------------------------
    def _noise_generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(self.hp.seed * 1_000_003 + self.global_step * 101 + self.global_rank)
        return g

    def _log_terms(self, prefix: str, terms: dict, batch_size: int, prog_bar: bool) -> None:
        for k, v in terms.items():
            self.log(
                f"{prefix}_{k}",
                v,
                on_step=False,
                on_epoch=True,
                prog_bar=prog_bar and k == "loss",
                batch_size=batch_size,
                sync_dist=True,
            )

    def loss_terms(self, raw, x, mu, logvar) -> dict:
        """The training objective of the model's representation (see vae.losses)."""
        h = self.hp
        if self.net.representation == "quaternion":
            return quaternion_vae_loss(
                self.net.output(raw), x, mu, logvar, h.lattice, kind=h.orientation_loss, kl_weight=h.kl_weight
            )
        return vae_loss(raw, x, mu.flatten(1), logvar.flatten(1), h.alpha, h.kl_weight)

    def training_step(self, x, batch_idx):
        self.net.check_input(x)
        if self.hp.roll:
            x = random_rolls(
                x, torch.Generator().manual_seed(self.hp.seed * 7_919 + self.global_step * 131 + self.global_rank)
            )
        raw, mu, logvar = self._forward(x, generator=self._noise_generator())
        terms = self.loss_terms(raw, x, mu, logvar)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(
                f"training loss became {float(terms['loss'])} at step {self.global_step}: "
                "lower the learning rate or check the data"
            )
        self._log_terms("train", terms, x.shape[0], True)
        return terms["loss"]

    def validation_step(self, x, batch_idx):
        self.net.check_input(x)
        raw, mu, logvar = self._forward(x)
        terms = self.loss_terms(raw, x, mu, logvar)
        self._log_terms("val", terms, x.shape[0], True)

    def configure_optimizers(self):
        h = self.hp
        if h.optimizer == "adam":
            return torch.optim.Adam(self.net.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        opt = torch.optim.AdamW(self.net.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        warm, total = int(h.warmup_steps), int(h.total_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(step, warm, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- checkpoint record -------------------------------------------------------
    def on_fit_start(self) -> None:
        self._fit_t0 = time.perf_counter()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume: the training wall time of the runs before this one."""
        rec = (checkpoint.get("vae3d") or {}).get("training") or {}
        self._wall_before = float(rec.get("train_wall_s", 0.0))

    def train_wall_s(self) -> float:
        """Training wall time up to now, summed over resumed runs (work lost to a kill
        after the last checkpoint is not counted)."""
        t0 = getattr(self, "_fit_t0", None)
        return getattr(self, "_wall_before", 0.0) + (time.perf_counter() - t0 if t0 is not None else 0.0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["vae3d"] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": self.hp.architecture,
            "representation": self.net.representation,
            "config": dict(self.hp.config),
            "lattice": self.hp.lattice,
            "grid": int(self.hp.config["grid"]),
            "training": plain(
                dict(
                    self.training_record,
                    epoch=int(self.current_epoch),
                    global_step=int(self.global_step),
                    train_wall_s=round(self.train_wall_s(), 1),
                )
            ),
        }
        # keep the file weights_only-loadable: hparams as a plain dict
        if "hyper_parameters" in checkpoint:
            checkpoint["hyper_parameters"] = dict(checkpoint["hyper_parameters"])


class VEDataModule(L.LightningDataModule):
    """Streams VE datasets (HDF5, ``matflow-vae3d/ve-dataset``) as VEBatches.

    train, val: dataset paths (val optional); batch_size; num_workers: loader
    processes (0 = in the main process); seed: shuffling seed.
    """

    def __init__(self, train: str, val: str | None = None, batch_size: int = 8, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.train_path, self.val_path = str(train), (str(val) if val else None)
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.train_set: Any = None
        self.val_set: Any = None

    def setup(self, stage: str | None = None) -> None:
        from ..datasets import VETorchDataset

        if self.train_set is None:
            self.train_set = VETorchDataset(self.train_path)
            if self.val_path:
                self.val_set = VETorchDataset(self.val_path)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        from ..datasets import collate_ves

        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(ds), self.seed, shuffle),
            collate_fn=collate_ves,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False) if self.val_set is not None else []


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write Lightning checkpoints to a temporary file, then rename (never truncated)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_torch_save(checkpoint, path)


class LastCheckpoint(Callback):
    """Save the full training state to ``path`` at the end of every epoch (after
    validation) and, with ``every_n_steps`` > 0, every that many optimiser steps,
    atomically through the trainer's checkpoint IO."""

    def __init__(self, path, every_n_steps: int = 0):
        self.path = Path(path)
        self.every_n_steps = int(every_n_steps)

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        n = self.every_n_steps
        if n > 0 and trainer.global_step > 0 and trainer.global_step % n == 0:
            trainer.save_checkpoint(self.path)


class History(Callback):
    """Appends one row per epoch (losses, wall time) to ``csv_path`` and redraws the
    loss-curve PNG. On resume, rows of epochs that are re-run are dropped.

    ``wall_s`` is the epoch's time in this process (for an epoch resumed mid-way, only
    the part after the resume); ``total_wall_s`` the training time up to the epoch's
    end summed over resumed runs (``VAEModule.train_wall_s``)."""

    def __init__(self, csv_path, png_path=None):
        self.csv_path, self.png_path = Path(csv_path), (Path(png_path) if png_path else None)
        self._t0 = None

    def _rows(self) -> list[dict]:
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, rows: list[dict]) -> None:
        keys = ["epoch", "step", "wall_s"] + [f"{p}_{k}" for p in ("train", "val") for k in LOSS_TERMS]
        keys.append("total_wall_s")
        from ..fileio import atomic_output

        with atomic_output(self.csv_path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def on_train_start(self, trainer, pl_module):  # after a resume restored the epoch
        # a run resumed mid-epoch does not start that epoch again: time it from here
        self._t0 = time.perf_counter()
        if trainer.is_global_zero:
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            keep = [r for r in self._rows() if int(r["epoch"]) < trainer.current_epoch]
            self._write(keep)

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        # callback_metrics reduces sync_dist metrics across ranks: every rank must ask
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if not trainer.is_global_zero:
            return
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "wall_s": round(time.perf_counter() - (self._t0 or time.perf_counter()), 3),
        }
        row["total_wall_s"] = round(pl_module.train_wall_s(), 1)  # summed over resumed runs, as in the record
        row.update({k: m[k] for k in m if k.startswith(("train_", "val_"))})
        rows = [r for r in self._rows() if int(r["epoch"]) < trainer.current_epoch] + [row]
        self._write(rows)
        if self.png_path:
            plot_loss_curve(self.csv_path, self.png_path)


def plot_loss_curve(csv_path, png_path) -> None:
    """Loss curves (total, BCE, spectral, KL; train and val) vs epoch -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    ep = [int(r["epoch"]) + 1 for r in rows]

    def series(p, k):
        return [float(r[f"{p}_{k}"]) if r.get(f"{p}_{k}") not in (None, "") else math.nan for r in rows]

    terms = [k for k in LOSS_TERMS if any(not all(math.isnan(y) for y in series(p, k)) for p in ("train", "val"))] or [
        "loss"
    ]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.5 * len(terms), 3.2), squeeze=False)
    for ax, k in zip(axes[0], terms):
        for p, style in (("train", "-"), ("val", "--")):
            ys = series(p, k)
            if not all(math.isnan(y) for y in ys):
                ax.plot(ep, ys, style, marker=".", label=p)
        ax.set_title(k)
        ax.set_xlabel("epoch")
        if k in ("spectral", "kl"):
            ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    save_figure(fig, png_path, dpi=100)


def make_trainer(
    out_dir,
    max_epochs: int,
    accelerator: str = "auto",
    devices="auto",
    strategy: str = "auto",
    precision: str | None = None,
    progress: bool = True,
    limit_train_batches=None,
    log_every_n_steps: int = 50,
    monitor_val: bool = True,
    gradient_clip: float = 0.0,
    checkpoint_every_n_steps: int = 0,
) -> L.Trainer:
    """A Trainer writing checkpoints (every epoch ``checkpoints/last.ckpt``; with
    ``monitor_val`` also ``checkpoints/best.ckpt``, lowest val_loss), ``history.csv``
    and ``loss_curve.png`` under ``out_dir``.

    precision: None picks 'bf16-mixed' on CUDA, '32-true' otherwise.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    out_dir = Path(out_dir)
    cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    if precision is None:
        precision = "bf16-mixed" if cuda else "32-true"
    ckpts: list[Any] = [LastCheckpoint(out_dir / "checkpoints" / "last.ckpt", checkpoint_every_n_steps)]
    if monitor_val:
        ckpts.append(
            ModelCheckpoint(
                dirpath=out_dir / "checkpoints",
                filename="best",
                monitor="val_loss",
                mode="min",
                save_top_k=1,
                enable_version_counter=False,
            )
        )
    return L.Trainer(
        default_root_dir=str(out_dir),
        max_epochs=int(max_epochs),
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        precision=precision,  # type: ignore[arg-type]  # checked by Lightning, a str here
        logger=False,
        callbacks=[History(out_dir / "history.csv", out_dir / "loss_curve.png"), *ckpts],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_train_batches=limit_train_batches,
        log_every_n_steps=log_every_n_steps,
        gradient_clip_val=float(gradient_clip) or None,
        benchmark=cuda,
    )
