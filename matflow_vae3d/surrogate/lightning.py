"""Training the surrogate with Lightning: MSE on min-max scaled stresses, Adam,
batch 128, early stopping on validation loss, CSV log and loss-curve PNG.

The whole table lives in memory as tensors; a batch is one fancy-indexing operation
(no per-sample DataLoader overhead). Each ensemble member draws its own shuffling
and keeps its own best weights (by its validation loss); training stops when no
member has improved for ``patience`` epochs.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import save_figure
from .ensemble import Surrogate, fit_calibration_scale, standardize
from .mlp import EnsembleMLP
from .table import MinMaxScaling, SurrogateTable


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters. Defaults are the paper's where it states them (hidden 512,
    LeakyReLU, sigmoid, MSE, Adam, batch 128; it trains 10,000 epochs, here the cap
    with early stopping).

    outputs : 'non-trivial' predicts states 1..n (state 0, unloaded, is the constant
        training value, 0 MPa for CP runs) or 'all' (the paper's 21 outputs).
    scaling_mode / scaling_margin : see :class:`MinMaxScaling`.
    standardize_inputs : shift and scale each input feature by its training-row mean
        and standard deviation (stored with the model and applied at prediction).
        The paper feeds the VAE's mu as it is (False, the default): on the Mg
        reference set (800 VEs) raw summaries gave 2.39 MPa held-out MAE vs 2.86
        standardised (5-member ensembles); standardising helps when the response
        hangs on low-variance features (a synthetic test).
    threads : torch intra-op threads while training. The batches are small (128 x
        256 x 512), so one thread is as fast as two on an idle 2-core machine and
        ~30x faster than two on a loaded one (threads spin-wait for each other).
    """

    n_members: int = 1
    hidden: int = 512
    negative_slope: float = 0.01
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 10000
    patience: int = 200
    outputs: str = "non-trivial"
    scaling_mode: str = "global"
    scaling_margin: float = 0.05
    seed: int = 0
    threads: int = 1
    standardize_inputs: bool = False

    def __post_init__(self):
        if self.outputs not in ("non-trivial", "all"):
            raise ValueError(f"outputs must be 'non-trivial' or 'all', got {self.outputs!r}")
        if self.n_members < 1 or self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("n_members, batch_size, max_epochs and patience must be >= 1")


class _Batches:
    """Mini-batches from in-memory tensors: yields (x (M, b, D), y (M, b, K)), each
    member with its own random permutation per epoch."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor, n_members: int, batch_size: int, seed: int):
        self.X, self.Y, self.M, self.bs = X, Y, n_members, batch_size
        self.gen = torch.Generator().manual_seed(int(seed))

    def __len__(self):
        return math.ceil(len(self.X) / self.bs)

    def __iter__(self):
        n = len(self.X)
        perm = torch.argsort(torch.rand(self.M, n, generator=self.gen), dim=1)
        for s in range(0, n, self.bs):
            idx = perm[:, s : s + self.bs]
            yield self.X[idx], self.Y[idx]


class _OneBatch:
    """The whole validation set as a single batch (x (n, D), y (n, K))."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor):
        self.X, self.Y = X, Y

    def __len__(self):
        return 1

    def __iter__(self):
        yield self.X, self.Y


class EpochHistory:
    """Per-epoch losses of an ensemble fit, shared by both surrogates' Lightning modules.

    ``add`` sums a batch's mean training loss weighted by its row count; ``close``
    ends the epoch with the validation loss (NaN without validation rows) and returns
    the epoch's training loss. ``history``: epoch, train_loss, val_loss lists.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": []}
        self._sum, self._count = 0.0, 0

    @property
    def open(self) -> bool:
        """Training batches seen since the last ``close``."""
        return self._count > 0

    def add(self, loss: float, rows: int) -> None:
        self._sum += float(loss) * rows
        self._count += rows

    def close(self, epoch: int, val_loss: float = float("nan")) -> float:
        train = self._sum / max(self._count, 1)
        self._sum, self._count = 0.0, 0
        self.history["epoch"].append(int(epoch))
        self.history["train_loss"].append(train)
        self.history["val_loss"].append(float(val_loss))
        return train


def _lightning_module(net: EnsembleMLP, lr: float, weight_decay: float):
    import lightning as L

    class SurrogateModule(L.LightningModule):
        """MSE on scaled outputs, summed over members (each member gets the gradient of
        its own MSE); tracks per-member best weights on the validation set."""

        def __init__(self):
            super().__init__()
            self.net = net
            M = net.n_members
            self.best = torch.full((M,), float("inf"))
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            self.epochs = EpochHistory()
            self.history = self.epochs.history

        def training_step(self, batch, batch_idx):
            x, y = batch
            per_member = ((self.net(x) - y) ** 2).mean(dim=(1, 2))
            self.epochs.add(float(per_member.detach().mean()), x.shape[1])
            return per_member.sum()

        def validation_step(self, batch, batch_idx):
            x, y = batch
            per_member = ((self.net(x) - y) ** 2).mean(dim=(1, 2)).detach()
            improved = per_member < self.best
            if improved.any():
                self.best = torch.where(improved, per_member, self.best)
                state = self.net.state_dict()
                for k, v in state.items():
                    self.best_state[k][improved] = v.detach()[improved]
            train = self.epochs.close(self.current_epoch, float(per_member.mean()))
            self.log("train_loss", train, prog_bar=True)
            self.log("val_loss", per_member.mean(), prog_bar=True)
            self.log("val_best", self.best.mean(), prog_bar=False)

        def on_train_epoch_end(self):
            if self.epochs.open:  # no validation rows: record the training loss alone
                self.log("train_loss", self.epochs.close(self.current_epoch), prog_bar=True)

        def configure_optimizers(self):
            try:  # the fused CPU kernel is several times faster for these small tensors
                return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
            except (RuntimeError, TypeError):  # pragma: no cover - older torch
                return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

    return SurrogateModule()


def _ood_record(X_std) -> dict[str, Any] | None:
    """The out-of-population record (training inputs as a float32 tensor) or None for
    fewer than 2 training rows."""
    from .ood import fit_ood

    if len(X_std) < 2:
        return None
    rec = fit_ood(np.asarray(X_std))
    rec["train_inputs"] = torch.as_tensor(rec["train_inputs"])
    return rec


def train_surrogate(
    table: SurrogateTable,
    config: TrainConfig | None = None,
    log_dir: str | Path | None = None,
    progress: bool = True,
) -> Surrogate:
    """Train on ``table``'s train rows with early stopping on its val rows.

    Returns a :class:`Surrogate` whose members hold their best-validation weights and,
    for an ensemble with validation rows, a calibration scale fitted on them. With
    ``log_dir``, Lightning's CSV log goes to ``log_dir/metrics.csv`` and the loss curve
    to ``log_dir/loss.png``.
    """

    cfg = config or TrainConfig()
    tr, va = table.rows("train"), table.rows("val")
    if len(tr) == 0:
        raise ValueError(
            f"no training rows: all {len(table)} VEs fell in val/test "
            f"(val_fraction={table.val_fraction}, test_fraction={table.test_fraction})"
        )
    first = 1 if cfg.outputs == "non-trivial" else 0
    Y = table.Y[:, first:]
    initial_value = float(np.mean(table.Y[:, 0]))
    if first and np.ptp(table.Y[:, 0]) > 1e-6 * max(np.ptp(table.Y), 1e-12):
        raise ValueError(
            "the initial (unloaded) stress differs between VEs; train with outputs='all' "
            f"(range {np.ptp(table.Y[:, 0]):.3g} MPa)"
        )
    # min-max over the whole dataset (all rows), as the paper; stored with the model
    scaling = MinMaxScaling.fit(Y, cfg.scaling_mode, cfg.scaling_margin)
    S = torch.as_tensor(scaling.transform(Y), dtype=torch.float32)
    input_scaling = None
    if cfg.standardize_inputs:
        sd = table.X[tr].std(axis=0, dtype=np.float64)
        input_scaling = {
            "mean": table.X[tr].mean(axis=0, dtype=np.float64).tolist(),
            "std": np.where(sd > 0, sd, 1.0).tolist(),  # a constant feature stays as it is
        }
    X = torch.as_tensor(standardize(table.X, input_scaling), dtype=torch.float32)

    torch.manual_seed(cfg.seed)
    net = EnsembleMLP(table.latent_dim, cfg.hidden, Y.shape[1], cfg.n_members, cfg.negative_slope)
    module = _lightning_module(net, cfg.lr, cfg.weight_decay)
    train_batches = _Batches(X[tr], S[tr], cfg.n_members, cfg.batch_size, cfg.seed)
    callbacks: list[Any] = []
    val_batches = None
    if len(va):
        from lightning.pytorch.callbacks import EarlyStopping

        val_batches = _OneBatch(X[va], S[va])
        callbacks.append(EarlyStopping(monitor="val_best", mode="min", patience=cfg.patience, check_finite=True))
    logger: Any = False
    if log_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        logger = CSVLogger(str(log_dir), name="", version="")
    trainer = fit_quietly(
        module,
        train_batches,
        val_batches,
        max_epochs=cfg.max_epochs,
        callbacks=callbacks,
        logger=logger,
        progress=progress,
        threads=cfg.threads,
        log_every_n_steps=1,
    )
    if len(va):
        net.load_state_dict(module.best_state)
    net.eval()

    meta: dict[str, Any] = {
        "latent_dim": table.latent_dim,
        "model_sha256": table.model_sha256,
        "inputs": table.inputs,
        "input_kind": table.input_kind,
        "component": table.component,
        "t": table.t.tolist(),
        "strain": table.strain.tolist(),
        "outputs": cfg.outputs,
        "initial_value": initial_value,
        "train_mean_curve": table.Y[tr].mean(axis=0).tolist(),
        "calibration_scale": None,
        "input_scaling": input_scaling,
        "lattice": table.lattice,
        "loadcase": table.loadcase,
        "trained_for": table.provenance(),
        "ood": _ood_record(standardize(table.X[tr], input_scaling)),
        "split": {"seed": table.seed, "val_fraction": table.val_fraction, "test_fraction": table.test_fraction},
        "train_ids": table.ve_id[tr].tolist(),
        "val_ids": table.ve_id[va].tolist(),
        "test_ids": table.ve_id[table.rows("test")].tolist(),
        "excluded": dict(table.excluded),
        "config": dataclasses.asdict(cfg),
        "history": module.history,
        "epochs_run": int(trainer.current_epoch),
        "best_val_loss": [float(b) for b in module.best] if len(va) else None,
    }
    surrogate = Surrogate(net, scaling, meta)
    if cfg.n_members > 1 and len(va):
        mean, std = surrogate.predict(table.X[va], calibrated=False)
        meta["calibration_scale"] = fit_calibration_scale(table.Y[va, 1:], mean[:, 1:], std[:, 1:])
    if log_dir is not None:
        plot_loss(module.history, log_dir / "loss.png")
    return surrogate


def fit_quietly(module, train, val, *, max_epochs: int, callbacks, logger, progress: bool, threads: int, **trainer_kw):
    """``lightning.Trainer(...).fit`` for the surrogates' small CPU networks: one
    device, no checkpoints, no sanity check, ``threads`` torch threads while it runs,
    and without Lightning's banner and warnings that do not apply (workers, GPU, SLURM,
    logging interval). ``val`` None: no validation. Returns the trainer."""
    import logging

    import lightning as L

    rz = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    old_level, old_threads = rz.level, torch.get_num_threads()
    rz.setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(threads)))
    try:
        with warnings.catch_warnings():
            for msg in (
                ".*does not have many workers.*",
                ".*GPU available but not used.*",
                ".*log_every_n_steps.*",
                ".*LeafSpec.*",
                ".*`srun` command is available.*",
            ):
                warnings.filterwarnings("ignore", message=msg)
            trainer = L.Trainer(
                max_epochs=max_epochs,
                accelerator="cpu",
                devices=1,
                logger=logger,
                callbacks=callbacks,
                enable_checkpointing=False,
                enable_model_summary=False,
                enable_progress_bar=progress,
                num_sanity_val_steps=0,
                limit_val_batches=1.0 if val is not None else 0,
                **trainer_kw,
            )
            trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    finally:
        torch.set_num_threads(old_threads)
        rz.setLevel(old_level)
    return trainer


def plot_loss(history: dict[str, list[float]], path: str | Path) -> Path:
    """Loss curves (MSE in scaled units vs epoch, mean over members) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ep = np.asarray(history["epoch"]) + 1
    ax.semilogy(ep, history["train_loss"], label="train")
    if history.get("val_loss"):
        ax.semilogy(ep, history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (scaled units)")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
