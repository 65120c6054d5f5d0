"""Using a trained VAE: fingerprints (mu, no noise), reconstructions and the
reconstruction error as misorientation.

Reconstruction error of one VE = mean over voxels of

* the paper's quaternion metric ``1 - |q . q_hat|`` (no crystal symmetry; the
  "relative average misorientation", ≈ 9e-3 in the paper), and
* the symmetry-aware disorientation angle (degrees),

between the input orientation and the orientation decoded from the reconstructed
normalised Euler angles (clamped to [0, 1]). Over a set: mean ± std of the per-VE
values.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from .. import crystal
from .checkpoint import check_compatible
from matflow_vae3d.fileio import atomic_output

FINGERPRINT_FORMAT = "matflow-vae3d/fingerprints"


def open_dataset(path, meta: dict | None = None):
    """Open a VE dataset for encoding, refusing empty sets and (with ``meta``) sets
    of another crystal structure or grid than the model's."""
    from ..datasets import VEDataset

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VE dataset not found: {path}")
    ds = VEDataset(str(path))
    if len(ds) == 0:
        raise ValueError(f"VE dataset {path} holds no VEs")
    if meta is not None:
        check_compatible(meta, ds.lattice, ds.grid, what=f"dataset {path.name}")
    return ds


def _amp(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare(model: torch.nn.Module, device) -> torch.nn.Module:
    """Model to ``device`` in eval mode; channels_last_3d on CUDA."""
    device = torch.device(device)
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def batch_to_tensor(batch, device, dtype=torch.float32) -> torch.Tensor:
    """VEBatch / tensor / [tensor, ...] -> (B, C, n, n, n) on ``device``; NaN/inf refused."""
    if hasattr(batch, "to_tensor"):
        x = batch.to_tensor(device, dtype)
    elif isinstance(batch, (list, tuple)):
        x = batch[0].to(device=device, dtype=dtype)
    else:
        x = batch.to(device=device, dtype=dtype)
    if not torch.isfinite(x).all():
        raise ValueError("input VEs contain NaN or inf orientations")
    return x


def to_input(batch, device) -> torch.Tensor:
    """VEBatch -> (B, 3, n, n, n) float32 normalised Euler image on ``device``;
    channels_last_3d on CUDA."""
    x = batch_to_tensor(batch, device)
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


@torch.inference_mode()
def encode(model, x: torch.Tensor) -> torch.Tensor:
    """Fingerprints mu (B, latent) float32 of images x (B, 3, n, n, n); no noise."""
    with _amp(x.device):
        mu, _ = model.encode(x)
    return mu.float()


@torch.inference_mode()
def reconstruct(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu (B, latent), reconstruction (B, 3, n, n, n) in [0, 1]), eval mode, z = mu."""
    with _amp(x.device):
        mu, _ = model.encode(x)
        logits = model.decode_logits(mu)
    return mu.float(), torch.sigmoid(logits.float())


def image_quaternions(x: torch.Tensor) -> torch.Tensor:
    """Normalised Euler image (B, 3, n, n, n) -> quaternions (B, n, n, n, 4) (float32)."""
    eu = crystal.torch_denormalise_eulers(x.float().clamp(0.0, 1.0).movedim(1, -1))
    return crystal.torch_eulers_to_quaternions(eu)


def misorientation(x: torch.Tensor, recon: torch.Tensor, lattice: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-VE mean reconstruction error.

    x, recon: (B, 3, n, n, n) normalised Euler images. Returns (quat (B,), deg (B,)):
    mean of 1 - |q . q_hat| and mean disorientation angle in degrees.
    """
    q, qh = image_quaternions(x), image_quaternions(recon)
    mq = crystal.torch_quaternion_misorientation(q, qh).flatten(1).mean(1)
    md = crystal.torch_disorientation_angle(q, qh, lattice, degrees=True).flatten(1).mean(1)
    return mq, md


def loader(ds_path, batch_size: int, num_workers: int = 0, indices=None):
    """DataLoader of VEBatches over a dataset, in order."""
    from torch.utils.data import DataLoader

    from ..datasets import VETorchDataset, collate_ves

    tds = VETorchDataset(str(ds_path), indices=indices)
    return DataLoader(tds, batch_size=int(batch_size), shuffle=False, collate_fn=collate_ves,
                      num_workers=int(num_workers), pin_memory=torch.cuda.is_available())


def _progress(it, total, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, unit="batch", disable=not progress)


def fingerprint_dataset(model, meta: dict, data, out, batch_size: int = 64, device="cpu",
                        num_workers: int = 0, progress: bool = True) -> dict:
    """Encode every VE of dataset ``data`` and write ``out`` (docs/formats.md
    "Fingerprints") atomically. Returns {'n', 'latent', 'path'}."""
    ds = open_dataset(data, meta)
    device = torch.device(device)
    model = prepare(model, device)
    out = Path(out)
    if batch_size < 1:
        raise ValueError("batch size must be >= 1")
    mus, ids = [], []
    dl = loader(data, batch_size, num_workers)
    for batch in _progress(dl, len(dl), "fingerprint", progress):
        mus.append(encode(model, to_input(batch, device)).cpu().numpy())
        ids.extend(str(v) for v in batch.ve_ids)
    mu = np.concatenate(mus).astype(np.float32)
    write_fingerprints(out, ids, mu, model_sha256=meta["sha256"], lattice=meta["lattice"],
                       grid=ds.grid, source=str(Path(data).resolve()))
    return {"n": len(ids), "latent": int(mu.shape[1]), "path": str(out)}


def write_fingerprints(path, ve_ids, mu, model_sha256: str, lattice: str, grid, source: str) -> None:
    """Write a fingerprint file (temporary file, then rename).

    ve_ids: (n,) str; mu: (n, latent) float32; grid: 3 ints.
    """
    import h5py

    mu = np.asarray(mu, dtype=np.float32)
    if mu.ndim != 2 or len(mu) != len(ve_ids):
        raise ValueError(f"mu must be (n, latent) with n = {len(ve_ids)}, got {mu.shape}")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FINGERPRINT_FORMAT
        f.attrs["format_version"] = 1
        f.create_dataset("ve_id", data=np.array(ve_ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("mu", data=mu)
        f.attrs["model_sha256"] = model_sha256
        f.attrs["latent_dim"] = int(mu.shape[1])
        f.attrs["lattice"] = lattice
        f.attrs["grid"] = np.asarray(tuple(grid) if hasattr(grid, "__len__") else (grid,) * 3, dtype=np.int64)
        f.attrs["source"] = source


def read_fingerprints(path) -> dict:
    """Read a fingerprint file -> {'ve_id': list[str], 'mu': (n, latent) float32, **attrs}."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fingerprint file not found: {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FINGERPRINT_FORMAT:
            raise ValueError(f"{path} is not a fingerprint file (format {f.attrs.get('format')!r})")
        out = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        out["ve_id"] = [s.decode() if isinstance(s, bytes) else str(s) for s in f["ve_id"][()]]
        out["mu"] = f["mu"][()]
    return out


def evaluate_dataset(model, meta: dict, data, batch_size: int = 32, device="cpu",
                     num_workers: int = 0, max_ves: int | None = None,
                     progress: bool = True) -> dict:
    """Reconstruction error over a dataset.

    Returns {'ve_id': list, 'quat': (n,), 'deg': (n,), 'quat_mean', 'quat_std',
    'deg_mean', 'deg_std', 'n', 'examples': (x, recon) of the first batch (CPU)}.
    """
    ds = open_dataset(data, meta)
    device = torch.device(device)
    model = prepare(model, device)
    n = len(ds) if max_ves is None else min(len(ds), int(max_ves))
    dl = loader(data, batch_size, num_workers, indices=list(range(n)))
    ids, mq, md, examples = [], [], [], None
    for batch in _progress(dl, len(dl), "evaluate", progress):
        x = to_input(batch, device)
        _, rec = reconstruct(model, x)
        a, b = misorientation(x, rec, meta["lattice"])
        mq.append(a.cpu().numpy())
        md.append(b.cpu().numpy())
        ids.extend(str(v) for v in batch.ve_ids)
        if examples is None:
            examples = (x[:4].float().cpu(), rec[:4].cpu())
    mq, md = np.concatenate(mq).astype(np.float64), np.concatenate(md).astype(np.float64)
    return {
        "ve_id": ids, "quat": mq, "deg": md, "n": len(ids),
        "quat_mean": float(mq.mean()), "quat_std": float(mq.std()),
        "deg_mean": float(md.mean()), "deg_std": float(md.std()),
        "examples": examples,
    }


def _rgb(img: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(3, n, n) normalised Euler slice -> (n, n, 3) RGB, each channel divided by its
    display maximum ``scale`` (the fundamental zone spans a fraction of [0, 1])."""
    return np.clip(np.moveaxis(img, 0, -1) / scale, 0.0, 1.0)


def plot_reconstructions(x: torch.Tensor, recon: torch.Tensor, png, titles=None) -> None:
    """Mid-slices (z = n/2) of inputs (top row) and reconstructions (bottom row),
    coloured by normalised Euler angles -> PNG (written atomically).

    x, recon: (B, 3, n, n, n); B <= 8 columns are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, recon = x.float().cpu().numpy(), recon.float().cpu().numpy()
    b = min(len(x), 8)
    k = x.shape[-1] // 2
    scale = np.maximum(x[:b].reshape(b, 3, -1).max(axis=(0, 2)), 1e-3)
    fig, axes = plt.subplots(2, b, figsize=(2.2 * b, 4.6), squeeze=False)
    for j in range(b):
        for i, (img, lab) in enumerate(((x[j], "input"), (recon[j], "reconstruction"))):
            ax = axes[i, j]
            ax.imshow(_rgb(img[:, :, :, k], scale).transpose(1, 0, 2), origin="lower",
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(lab)
        if titles is not None:
            axes[0, j].set_title(str(titles[j]), fontsize=8)
    fig.suptitle("mid-slice z = n/2, RGB = normalised (phi1, Phi, phi2) / channel max", fontsize=9)
    fig.tight_layout()
    _savefig(fig, png)


def _savefig(fig, png) -> None:
    import matplotlib.pyplot as plt

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.stem + ".tmp" + png.suffix)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
