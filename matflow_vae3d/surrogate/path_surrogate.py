"""The load-path surrogate: per-VE features + a prescribed load path -> the stress
(and the free deformation) at every increment, trained with Lightning.

Training (:func:`train_path_surrogate`): masked MSE over the scaled targets
(sigma / ``sigma_scale``, (F - I) / ``strain_scale``, the deformation terms weighted by
``deformation_weight``), AdamW, gradient clipping, early stopping on the validation
rows' loss; every member keeps its best-validation weights. Features are
standardised by the training rows' mean and standard deviation (stored with the model).

The checkpoint (``format = matflow-vae3d/path-surrogate``, ``torch.load(weights_only=
True)``) holds the network, the scales, the features it expects (``features`` kind,
``model_sha256`` of the VAE or feature definition) and the split, so fingerprints of
another VAE are refused by name, as by the uniaxial surrogate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cp.loadcase import LoadCase
from ..fileio import atomic_output
from ..vae.fingerprints import check_same_input_kind, check_same_vae, recorded_input_kind
from .ensemble import _to_plain, fit_calibration_scale, load_checkpoint
from .lightning import EpochHistory, fit_quietly
from .path_network import PathGRU
from .path_table import N_SIGMA, PathTable, encode_loadcase, unvoigt
from .table import Fingerprints

CHECKPOINT_FORMAT = "matflow-vae3d/path-surrogate"
CHECKPOINT_VERSION = 1


@dataclasses.dataclass
class PathTrainConfig:
    """Hyper-parameters of the sequence model (module doc). The defaults are the
    configuration measured in docs/load_paths.md (7,248 rows with rotated copies: one
    GRU layer of 64, 3 members, early stopping after 30 epochs without improvement).

    deformation_weight : weight of the (F - I) targets in the loss relative to sigma.
    feature_steps : the features enter every step's input as well as the initial hidden
        state (True), or the initial hidden state only (False: about 2x faster to predict).
    threads : torch intra-op threads (one is as fast as two for these sizes and far
        faster on a loaded machine).
    """

    n_members: int = 3
    hidden: int = 64
    layers: int = 1
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 300
    patience: int = 30
    grad_clip: float = 1.0
    deformation_weight: float = 0.25
    seed: int = 0
    threads: int = 1
    feature_steps: bool = True

    def __post_init__(self):
        for name in ("n_members", "hidden", "layers", "batch_size", "max_epochs", "patience", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.grad_clip > 0 and self.deformation_weight >= 0):
            raise ValueError("need lr > 0, weight_decay >= 0, grad_clip > 0, deformation_weight >= 0")


class PathSurrogate:
    """A trained load-path surrogate (network + scales + provenance in ``meta``)."""

    def __init__(self, net: PathGRU, meta: dict[str, Any]):
        self.net = net.eval()
        self.meta = meta

    @property
    def features(self) -> str:
        return str(self.meta["features"])

    @property
    def n_features(self) -> int:
        return self.net.n_features

    @property
    def model_sha256(self) -> str:
        return str(self.meta.get("model_sha256", ""))

    @property
    def calibration_scale(self) -> float | None:
        s = self.meta.get("calibration_scale")
        return None if s is None else float(s)

    def check_features(self, fp: Fingerprints | None) -> None:
        """Refuse features the model was not trained on (ValueError naming both)."""
        if self.features == "none":
            return
        if fp is None:
            raise ValueError(f"this path surrogate needs per-VE {self.features} features (--fingerprints)")
        if fp.inputs != self.meta.get("inputs", fp.inputs):
            raise ValueError(f"the path surrogate reads the {self.meta['inputs']!r} input, these are {fp.inputs!r}")
        if fp.latent_dim != self.n_features:
            raise ValueError(
                f"the path surrogate was trained on {self.n_features} features per VE, "
                f"{fp.source or 'these'} have {fp.latent_dim}"
            )
        check_same_vae(
            self.model_sha256, fp.model_sha256, f"the model's training {self.features} features", fp.source or "these"
        )
        check_same_input_kind(
            recorded_input_kind(self.meta),
            fp.input_kind,
            f"the model's training {self.features} features",
            fp.source or "these",
        )

    def _x(self, X: np.ndarray | None, n: int) -> torch.Tensor:
        if self.n_features == 0:
            return torch.zeros((n, 0))
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (n, {self.n_features}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("features contain NaN/inf")
        m, s = (np.asarray(self.meta["feature_scaling"][k]) for k in ("mean", "std"))
        return torch.as_tensor((X - m) / s, dtype=torch.float32)

    @torch.inference_mode()
    def predict_members(self, X: np.ndarray | None, U: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Every member's targets: X (n, n_features) (ignored without features), U (n,
        T, N_STEP_INPUTS) -> (M, n, T, N_TARGETS), sigma in Pa and F - I."""
        U = np.array(U, dtype=np.float32)  # a writable copy (inputs may be broadcast views)
        if U.ndim != 3:
            raise ValueError(f"expected inputs of shape (n, T, n_inputs), got {U.shape}")
        x = self._x(X, len(U))
        u = torch.as_tensor(U)
        outs = [self.net(x[i : i + batch_size], u[i : i + batch_size]) for i in range(0, len(U), batch_size)]
        s = torch.cat(outs, dim=1).double().numpy() if outs else np.zeros((self.net.n_members, 0) + U.shape[1:2] + (0,))
        scale = np.asarray(self.meta["target_scale"])
        return s * scale

    def predict_targets(
        self, X: np.ndarray | None, U: np.ndarray, calibrated: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Ensemble mean and spread of the targets (the one rule every caller uses).

        X, U : as :meth:`predict_members`. Returns mean (n, T, N_TARGETS) (sigma Voigt
        in Pa, then F - I) and std of the same shape: the members' standard deviation
        times the validation-fitted calibration scale (``calibrated``), or None for a
        single network (no spread).
        """
        y = self.predict_members(X, U)
        if y.shape[0] < 2:
            return y.mean(axis=0), None
        std = y.std(axis=0, ddof=1)
        if calibrated and self.calibration_scale is not None:
            std = std * self.calibration_scale
        return y.mean(axis=0), std

    def predict(self, X: np.ndarray | None, lc: LoadCase, calibrated: bool = True) -> dict[str, np.ndarray]:
        """Predicted response of n microstructures along one load path.

        Returns t (S,) s; sigma, sigma_std (n, S, 3, 3) Pa (ensemble mean and
        calibrated spread, state 0 unloaded); F (n, S, 3, 3) (mean).
        """
        U = encode_loadcase(lc)
        n = 1 if self.n_features == 0 and X is None else len(np.asarray(X))
        mean, spread = self.predict_targets(X, np.broadcast_to(U, (n,) + U.shape), calibrated)
        std = np.zeros_like(mean) if spread is None else spread
        zero = np.zeros((n, 1, 3, 3))
        sigma = np.concatenate([zero, unvoigt(mean[..., :N_SIGMA])], axis=1)
        sigma_std = np.concatenate([zero, unvoigt(std[..., :N_SIGMA])], axis=1)
        F = np.concatenate([zero + np.eye(3), mean[..., N_SIGMA:].reshape(n, -1, 3, 3) + np.eye(3)], axis=1)
        return {"t": lc.times(), "sigma": sigma, "sigma_std": sigma_std, "F": F}

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        path = Path(path)
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
            "net": self.net.config(),
            "meta": _to_plain(self.meta),
        }
        with atomic_output(path, overwrite) as tmp:
            torch.save(ckpt, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PathSurrogate:
        ckpt = load_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "path-surrogate checkpoint")
        net = PathGRU(**ckpt["net"])
        net.load_state_dict(ckpt["state_dict"])
        return cls(net, ckpt["meta"])


# ---------------------------------------------------------------------------- training
def _lightning_module(net: PathGRU, cfg: PathTrainConfig, weights: torch.Tensor):
    import lightning as L

    class PathModule(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net
            self.best = torch.full((net.n_members,), float("inf"))
            self.kept = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in net.members]
            self.epochs = EpochHistory()
            self.history = self.epochs.history

        def _loss(self, batch):
            x, u, y, m = batch
            d = (self.net(x, u) - y) ** 2 * weights  # (M, B, T, K)
            w = m[None, :, :, None].to(d.dtype)
            return (d * w).sum(dim=(1, 2, 3)) / (w.sum() * weights.sum()).clamp_min(1)

        def training_step(self, batch, batch_idx):
            per_member = self._loss(batch)
            self.epochs.add(float(per_member.detach().mean()), batch[0].shape[0])
            return per_member.sum()

        def validation_step(self, batch, batch_idx):
            per_member = self._loss(batch).detach()
            improved = per_member < self.best
            if improved.any():  # each member keeps its own best weights
                self.best = torch.where(improved, per_member, self.best)
                for i, member in enumerate(self.net.members):
                    if improved[i]:
                        self.kept[i] = {k: v.detach().clone() for k, v in member.state_dict().items()}
            train = self.epochs.close(self.current_epoch, float(per_member.mean()))
            self.log("train_loss", train, prog_bar=True)
            self.log("val_loss", per_member.mean(), prog_bar=True)
            self.log("val_best", self.best.mean(), prog_bar=False)

        def on_train_epoch_end(self):
            if self.epochs.open:  # no validation rows: record the training loss alone
                self.epochs.close(self.current_epoch)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    return PathModule()


class _Batches:
    def __init__(self, tensors, batch_size: int, seed: int, shuffle: bool):
        self.tensors, self.bs, self.shuffle = tensors, batch_size, shuffle
        self.gen = torch.Generator().manual_seed(int(seed))

    def __len__(self):
        return -(-len(self.tensors[0]) // self.bs)

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n, generator=self.gen) if self.shuffle else torch.arange(n)
        for s in range(0, n, self.bs):
            idx = order[s : s + self.bs]
            yield tuple(t[idx] for t in self.tensors)


def train_path_surrogate(
    table: PathTable, config: PathTrainConfig | None = None, progress: bool = True
) -> PathSurrogate:
    """Train on ``table``'s train rows, early stopping on its val rows (module doc)."""

    cfg = config or PathTrainConfig()
    tr, va = table.rows("train"), table.rows("val")
    if len(tr) == 0:
        raise ValueError(f"no training rows: all {len(table)} rows fell in val/test")
    m_tr = table.mask[tr]
    Ytr = table.Y[tr][m_tr]
    sigma_scale = float(np.sqrt(np.mean(Ytr[:, :N_SIGMA] ** 2))) or 1.0
    strain_scale = float(np.sqrt(np.mean(Ytr[:, N_SIGMA:] ** 2))) or 1.0
    target_scale = np.r_[np.full(N_SIGMA, sigma_scale), np.full(Ytr.shape[1] - N_SIGMA, strain_scale)]
    feature_scaling = None
    X = table.X.astype(np.float64)
    if X.shape[1]:
        sd = X[tr].std(axis=0)
        feature_scaling = {"mean": X[tr].mean(axis=0).tolist(), "std": np.where(sd > 0, sd, 1.0).tolist()}
        X = (X - np.asarray(feature_scaling["mean"])) / np.asarray(feature_scaling["std"])

    def tensors(rows):
        return (
            torch.as_tensor(X[rows], dtype=torch.float32),
            torch.as_tensor(table.U[rows]),
            torch.as_tensor(table.Y[rows] / target_scale, dtype=torch.float32),
            torch.as_tensor(table.mask[rows]),
        )

    weights = torch.as_tensor(
        np.r_[np.ones(N_SIGMA), np.full(len(target_scale) - N_SIGMA, cfg.deformation_weight)], dtype=torch.float32
    )
    torch.manual_seed(cfg.seed)
    net = PathGRU(X.shape[1], cfg.hidden, cfg.layers, cfg.n_members, feature_steps=cfg.feature_steps)
    module = _lightning_module(net, cfg, weights)
    callbacks: list[Any] = []
    val = None
    if len(va):
        from lightning.pytorch.callbacks import EarlyStopping

        val = _Batches(tensors(va), max(len(va), 1), cfg.seed, shuffle=False)
        callbacks.append(EarlyStopping(monitor="val_best", mode="min", patience=cfg.patience, check_finite=True))
    trainer = fit_quietly(
        module,
        _Batches(tensors(tr), cfg.batch_size, cfg.seed, True),
        val,
        max_epochs=cfg.max_epochs,
        callbacks=callbacks,
        logger=False,
        progress=progress,
        threads=cfg.threads,
        gradient_clip_val=cfg.grad_clip,
    )
    if len(va):
        for member, kept in zip(net.members, module.kept):
            member.load_state_dict(kept)
    net.eval()
    meta: dict[str, Any] = {
        "features": table.features,
        "inputs": table.inputs,
        "input_kind": table.input_kind,
        "model_sha256": table.model_sha256,
        "feature_scaling": feature_scaling,
        "target_scale": target_scale.tolist(),
        "sigma_scale_pa": sigma_scale,
        "strain_scale": strain_scale,
        "lattice": table.lattice,
        "material": table.material,
        "max_increments": int(table.U.shape[1]),
        "calibration_scale": None,
        "split": {"seed": table.seed, "val_fraction": table.val_fraction, "test_fraction": table.test_fraction},
        "train_ves": sorted(set(table.ve_id[tr])),
        "val_ves": sorted(set(table.ve_id[va])),
        "test_ves": sorted(set(table.ve_id[table.rows("test")])),
        "n_rows": {s: len(table.rows(s)) for s in ("train", "val", "test")},
        "excluded": dict(table.excluded),
        "config": dataclasses.asdict(cfg),
        "history": module.history,
        "epochs_run": int(trainer.current_epoch),
    }
    sur = PathSurrogate(net, meta)
    if cfg.n_members > 1 and len(va):
        y = sur.predict_members(table.X[va], table.U[va])
        m = table.mask[va]
        mean, std = y.mean(axis=0)[m][:, :N_SIGMA], y.std(axis=0, ddof=1)[m][:, :N_SIGMA]
        meta["calibration_scale"] = fit_calibration_scale(table.Y[va][m][:, :N_SIGMA], mean, std)
    return sur
