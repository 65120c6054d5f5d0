"""Using a trained VAE: fingerprints (mu, no noise), reconstructions and the
reconstruction error as misorientation.

Reconstruction error of one VE = mean over voxels of

* the paper's quaternion metric ``1 - |q . q_hat|`` (no crystal symmetry; the
  "relative average misorientation", ≈ 9e-3 in the paper), with both orientations
  reduced to the fundamental zone first,
* the symmetry-aware disorientation angle (degrees), and
* the fractions of voxels within 5° and within 15° of their input orientation,

between the input orientation and the reconstructed one (decoded unit quaternions,
or the orientation of the reconstructed normalised Euler angles clamped to [0, 1]).
Over a set: mean ± std of the per-VE values.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from .. import crystal
from ..fileio import save_figure
from .checkpoint import check_compatible
from .fingerprints import (
    DECODED_STATS_ONE_VIEW,
    DECODED_STATS_ROLLS,
    SUMMARY_IDENTITY,
    SUMMARY_SHIFTED,
    decoded_views,
    roll_invariant_summary,
    summary_shifts,
    write_fingerprints,
)


def open_dataset(path, meta: dict | None = None, label: str | None = None):
    """Open a VE dataset for encoding, refusing empty sets and (with ``meta``) sets
    of another crystal structure or grid than the model's. ``label``: the user's name
    for the VEs in messages (e.g. 'ex.vti' for a temporary dataset made from it)."""
    from ..datasets import VEDataset

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VE dataset not found: {path}")
    ds = VEDataset(str(path))
    what = f"VEs of {label}" if label else f"dataset {path.name}"
    if len(ds) == 0:
        raise ValueError(f"{label} holds no VEs" if label else f"VE dataset {path} holds no VEs")
    if meta is not None:
        check_compatible(meta, ds.lattice, ds.grid, what=what)
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
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # torch stubs lack it
    return model


def model_input(batch, device, representation: str = "euler", dtype=torch.float32) -> torch.Tensor:
    """The model's input on ``device``: from a VEBatch, 'euler' (B, 3, n, n, n)
    normalised Euler angles or 'quaternion' (B, 4, n, n, n) FZ quaternions; a ready
    tensor (or [tensor, ...]) is taken as it is. NaN/inf refused."""
    if hasattr(batch, "to_tensor"):
        x = batch.quaternion_image(device, dtype) if representation == "quaternion" else batch.to_tensor(device, dtype)
    elif isinstance(batch, (list, tuple)):
        x = batch[0].to(device=device, dtype=dtype)
    else:
        x = batch.to(device=device, dtype=dtype)
    if not torch.isfinite(x).all():
        raise ValueError("input VEs contain NaN or inf orientations")
    return x


def to_input(batch, device, representation: str = "euler") -> torch.Tensor:
    """:func:`model_input`, channels_last_3d on CUDA."""
    x = model_input(batch, device, representation)
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x


@torch.inference_mode()
def encode(model, x: torch.Tensor) -> torch.Tensor:
    """Fingerprints mu (B, latent) float32 of inputs x (B, C, nx, ny, nz); no noise."""
    with _amp(x.device):
        mu = model.fingerprint(x)
    return mu.float()


@torch.inference_mode()
def encode_latent(model, x: torch.Tensor) -> torch.Tensor:
    """mu in its layout, float32, no noise: (B, latent_channels, nx/4, ny/4, nz/4) for a
    spatial model (any grid of multiples of 4), (B, latent) for a dense one."""
    if not is_spatial(model):
        return encode(model, x)
    with _amp(x.device):
        mu = model.encode(x)[0]
    return mu.float()


def is_spatial(model) -> bool:
    return getattr(model, "architecture", "dense") == "spatial"


def flat(mu: torch.Tensor) -> np.ndarray:
    """A latent in its layout -> (B, latent) float32 numpy (channel-major)."""
    return mu.flatten(1).cpu().numpy()


def voxel_batch(batch_size: int, grid, reference: int = 16**3) -> int:
    """VEs per batch for VEs of ``grid``: ``batch_size`` counts VEs of 16³ voxels, larger
    VEs are batched by voxels (a 64³ VE is 64 16³ VEs' worth), at least one VE."""
    n = int(np.prod([int(g) for g in grid]))
    return max(1, int(batch_size) * reference // max(n, 1))


@torch.inference_mode()
def reconstruct(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu (B, latent), reconstruction in the input's representation), eval mode, z = mu."""
    mu = encode_latent(model, x)
    with _amp(x.device):
        raw = model.decode_raw(mu)
    return mu.flatten(1), model.output(raw.float())


def image_quaternions(x: torch.Tensor, representation: str = "euler") -> torch.Tensor:
    """Model image (B, C, n, n, n) -> unit quaternions (B, n, n, n, 4), float32, w >= 0:
    normalised Euler angles (clamped to [0, 1]) are converted, quaternions normalised."""
    if representation == "quaternion":
        q = x.float().movedim(1, -1)
        q = q / torch.linalg.norm(q, dim=-1, keepdim=True).clamp_min(1e-12)
        return torch.where(q[..., :1] < 0, -q, q)
    eu = crystal.torch_denormalise_eulers(x.float().clamp(0.0, 1.0).movedim(1, -1))
    return crystal.torch_eulers_to_quaternions(eu)


def misorientation(
    x: torch.Tensor, recon: torch.Tensor, lattice: str, representation: str = "euler"
) -> dict[str, torch.Tensor]:
    """Per-VE reconstruction error; x, recon: (B, C, n, n, n) model images.

    Returns {'quat', 'deg', 'within5', 'within15'}, each (B,): the mean over voxels of
    1 - |q . q_hat| (both reduced to the fundamental zone, the paper's metric), the
    mean disorientation angle in degrees, and the fractions of voxels within 5° / 15°.
    """
    q = crystal.torch_reduce_to_fz(image_quaternions(x, representation), lattice)
    qh = crystal.torch_reduce_to_fz(image_quaternions(recon, representation), lattice)
    ang = crystal.torch_disorientation_angle(q, qh, lattice, degrees=True).flatten(1)
    return {
        "quat": crystal.torch_quaternion_misorientation(q, qh).flatten(1).mean(1),
        "deg": ang.mean(1),
        "within5": (ang <= 5.0).float().mean(1),
        "within15": (ang <= 15.0).float().mean(1),
    }


def loader(ds_path, batch_size: int, num_workers: int = 0, indices=None):
    """DataLoader of VEBatches over a dataset, in order."""
    from torch.utils.data import DataLoader

    from ..datasets import VETorchDataset, collate_ves

    tds = VETorchDataset(str(ds_path), indices=indices)
    return DataLoader(
        tds,  # type: ignore[arg-type]  # a map-style dataset (__len__, __getitem__), not a torch subclass
        batch_size=int(batch_size),
        shuffle=False,
        collate_fn=collate_ves,
        num_workers=int(num_workers),
        pin_memory=torch.cuda.is_available(),
    )


def _progress(it, total, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, unit="batch", disable=not progress)


@torch.inference_mode()
def encode_views(model, x: torch.Tensor) -> list[torch.Tensor]:
    """mu in its layout (:func:`encode_latent`) of x rolled by each shift of
    :func:`summary_shifts` (8 encodings, the first the unrolled x) for a spatial model;
    [mu] for a dense one."""
    if not is_spatial(model):
        return [encode(model, x)]
    with _amp(x.device):
        views = model.encode_rolled(x, summary_shifts())
    return [v.float() for v in views]


def summary_of_views(model, views: list[torch.Tensor]) -> np.ndarray:
    """(B, F) float32: the mean of :func:`roll_invariant_summary` over the views of
    :func:`encode_views` (dense: mu itself). F does not depend on the VE's grid."""
    if not is_spatial(model):
        return views[0].cpu().numpy().copy()
    shape = tuple(views[0].shape[1:])
    parts = [roll_invariant_summary(flat(v), shape) for v in views]
    return np.mean(parts, axis=0, dtype=np.float64).astype(np.float32)


def encode_with_summary(model, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mu (B, latent), roll-invariant summary (B, F)) as float32 numpy arrays.

    Spatial models: the summary is the mean of :func:`roll_invariant_summary` over x
    rolled by each shift of :func:`summary_shifts` (8 encodings); dense: mu itself.
    """
    views = encode_views(model, x)
    return flat(views[0]), summary_of_views(model, views)


@torch.inference_mode()
def decoded_statistics(model, mu: torch.Tensor, lattice: str) -> np.ndarray:
    """Orientation statistics of the reconstruction from fingerprints mu (in their layout,
    :func:`encode_latent`, or flat (B, latent) of the training grid): (B, D) float32
    (decode, reduce to the fundamental zone, histograms for sample axes x, y, z, every
    voxel its own grain; one view, :data:`DECODED_STATS_ONE_VIEW`)."""
    from ..microstructure.statistics import orientation_features

    with _amp(mu.device):
        raw = model.decode_raw(mu)
    q = crystal.torch_reduce_to_fz(image_quaternions(model.output(raw.float()), model.representation), lattice)
    q = q.reshape(q.shape[0], -1, 4).double().cpu().numpy()
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    cells = np.arange(q.shape[1])
    return np.stack([orientation_features(qb, cells, lattice, axes="xyz") for qb in q]).astype(np.float32)


def decoded_statistics_of_views(model, views: list[torch.Tensor], lattice: str) -> np.ndarray:
    """(B, D) float32: the mean of :func:`decoded_statistics` over the views of
    :func:`encode_views` (of the kind :func:`decoded_stats_kind_of`).

    One view's statistics move by 0.31 of their spread between VEs under a random
    periodic roll of the VE, the mean over the 8 rolls {0, 2}³ by 0.15 (exactly 0 for
    rolls by even numbers of voxels); docs/vae.md "Fingerprints and periodic rolls".
    VEs of 32³ cells or more average the first view only (:func:`decoded_views`)."""
    if is_spatial(model):
        views = views[: decoded_views(len(views), tuple(views[0].shape[1:]))]
    stats = [decoded_statistics(model, v, lattice) for v in views]
    return np.mean(stats, axis=0, dtype=np.float64).astype(np.float32)


def _views_attrs(model, grid) -> dict:
    """How many rolled views the summary and the decoded statistics of VEs of ``grid``
    average (file attributes ``summary_views``, ``decoded_stats_views``)."""
    if not is_spatial(model):
        return {"summary_views": 1, "decoded_stats_views": 1}
    n = len(summary_shifts())
    return {"summary_views": n, "decoded_stats_views": decoded_views(n, latent_shape(model, grid))}


def summary_kind_of(model) -> str:
    return SUMMARY_SHIFTED if is_spatial(model) else SUMMARY_IDENTITY


def decoded_stats_kind_of(model) -> str:
    """:data:`DECODED_STATS_ROLLS` for a spatial model (8 rolled views), else
    :data:`DECODED_STATS_ONE_VIEW`."""
    return DECODED_STATS_ROLLS if is_spatial(model) else DECODED_STATS_ONE_VIEW


def latent_shape(model, grid=None) -> tuple:
    """(C, gx, gy, gz) of a spatial model's latent for VEs of ``grid`` (default its
    training grid; g = edge / 4), (latent,) of a dense one."""
    from .spatial import SPATIAL_DOWNSAMPLE, as_grid

    c = model.config
    if is_spatial(model):
        g = as_grid(c.grid if grid is None else grid)
        return (c.latent_channels,) + tuple(n // SPATIAL_DOWNSAMPLE for n in g)
    return (int(c.latent),)


def fingerprint_dataset(
    model,
    meta: dict,
    data,
    out,
    batch_size: int = 64,
    device="cpu",
    num_workers: int = 0,
    progress: bool = True,
    label: str | None = None,
    source: str | None = None,
) -> dict:
    """Encode every VE of dataset ``data`` and write ``out`` (docs/formats.md
    "Fingerprints"), with the decoded statistics (:func:`decoded_statistics_of_views`),
    atomically. Any grid a spatial model takes (:func:`~.checkpoint.check_compatible`);
    ``batch_size`` counts 16³ VEs, larger ones are batched by voxels
    (:func:`voxel_batch`). ``label``/``source``: the user's name for the VEs in messages
    and the file's ``source`` attribute (default: the dataset's path).
    Returns {'n', 'latent', 'latent_shape', 'path'}."""
    ds = open_dataset(data, meta, label)
    device = torch.device(device)
    model = prepare(model, device)
    out = Path(out)
    if batch_size < 1:
        raise ValueError("batch size must be >= 1")
    mus: list[np.ndarray] = []
    sums: list[np.ndarray] = []
    decs: list[np.ndarray] = []
    ids: list[str] = []
    dl = loader(data, voxel_batch(batch_size, ds.grid), num_workers)
    rep = model.representation
    for batch in _progress(dl, len(dl), "fingerprint", progress):
        views = encode_views(model, to_input(batch, device, rep))
        mus.append(flat(views[0]))
        sums.append(summary_of_views(model, views))
        decs.append(decoded_statistics_of_views(model, views, meta["lattice"]))
        ids.extend(str(v) for v in batch.ve_ids)
    mu = np.concatenate(mus).astype(np.float32)
    write_fingerprints(
        out,
        ids,
        mu,
        model_sha256=meta["sha256"],
        lattice=meta["lattice"],
        grid=ds.grid,
        source=source or str(Path(data).resolve()),
        latent_shape=latent_shape(model, ds.grid),
        summary=np.concatenate(sums),
        summary_kind_=summary_kind_of(model),
        decoded_stats=np.concatenate(decs),
        decoded_stats_kind=decoded_stats_kind_of(model),
        attrs=_views_attrs(model, ds.grid),
    )
    return {"n": len(ids), "latent": int(mu.shape[1]), "latent_shape": latent_shape(model, ds.grid), "path": str(out)}


def summarise_errors(vals: dict, ids: list) -> dict:
    """Per-VE metric arrays {m: [(b,), ...]} -> {'ve_id', 'n', m: (n,), m_mean, m_std}."""
    out = {"ve_id": ids, "n": len(ids)}
    for k, v in vals.items():
        a = np.concatenate(v).astype(np.float64)
        out.update({k: a, f"{k}_mean": float(a.mean()), f"{k}_std": float(a.std())})
    return out


def evaluate_dataset(
    model,
    meta: dict,
    data,
    batch_size: int = 32,
    device="cpu",
    num_workers: int = 0,
    max_ves: int | None = None,
    progress: bool = True,
    label: str | None = None,
) -> dict:
    """Reconstruction error over a dataset (``label``: the user's name for it in messages).

    Returns {'ve_id': list, 'n', 'examples': (x, recon) of the first batch (CPU,
    model images), and for each metric m of :func:`misorientation` ('quat', 'deg',
    'within5', 'within15'): m (n,), m_mean, m_std}.
    """
    ds = open_dataset(data, meta, label)
    device = torch.device(device)
    model = prepare(model, device)
    n = len(ds) if max_ves is None else min(len(ds), int(max_ves))
    dl = loader(data, voxel_batch(batch_size, ds.grid), num_workers, indices=list(range(n)))
    rep = model.representation
    ids: list[str] = []
    vals: dict[str, list] = {}
    examples = None
    for batch in _progress(dl, len(dl), "evaluate", progress):
        x = to_input(batch, device, rep)
        _, rec = reconstruct(model, x)
        for k, v in misorientation(x, rec, meta["lattice"], rep).items():
            vals.setdefault(k, []).append(v.cpu().numpy())
        ids.extend(str(v) for v in batch.ve_ids)
        if examples is None:
            examples = (x[:4].float().cpu(), rec[:4].cpu())
    return dict(summarise_errors(vals, ids), examples=examples, representation=rep)


def _rgb(img: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(3, n, n) normalised Euler slice -> (n, n, 3) RGB, each channel divided by its
    display maximum ``scale`` (the fundamental zone spans a fraction of [0, 1])."""
    return np.clip(np.moveaxis(img, 0, -1) / scale, 0.0, 1.0)


def display_image(x: torch.Tensor, representation: str, lattice: str) -> torch.Tensor:
    """Model image -> normalised FZ Euler image (B, 3, n, n, n) for drawing: a
    reconstructed quaternion is reduced to the fundamental zone first, so symmetric
    equivalents get the input's colour."""
    if representation == "euler":
        return x.float()
    q = crystal.torch_reduce_to_fz(image_quaternions(x, representation), lattice)
    return crystal.torch_normalise_eulers(crystal.torch_quaternions_to_eulers(q)).movedim(-1, 1)


def plot_reconstructions(
    x: torch.Tensor, recon: torch.Tensor, png, titles=None, representation: str = "euler", lattice: str = "hP"
) -> None:
    """Mid-slices (z = n/2) of inputs (top row) and reconstructions (bottom row),
    coloured by normalised FZ Euler angles -> PNG (written atomically).

    x, recon: (B, C, n, n, n) model images of ``representation``; B <= 8 columns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = display_image(x.float().cpu(), representation, lattice).numpy()
    rs = display_image(recon.float().cpu(), representation, lattice).numpy()
    b = min(len(xs), 8)
    k = xs.shape[-1] // 2
    scale = np.maximum(xs[:b].reshape(b, 3, -1).max(axis=(0, 2)), 1e-3)
    fig, axes = plt.subplots(2, b, figsize=(2.2 * b, 4.6), squeeze=False)
    for j in range(b):
        for i, (img, lab) in enumerate(((xs[j], "input"), (rs[j], "reconstruction"))):
            ax = axes[i, j]
            ax.imshow(_rgb(img[:, :, :, k], scale).transpose(1, 0, 2), origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(lab)
        if titles is not None:
            axes[0, j].set_title(str(titles[j]), fontsize=8)
    fig.suptitle("mid-slice z = n/2, RGB = normalised (phi1, Phi, phi2) / channel max", fontsize=9)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
