"""VAE checkpoints: plain, ``weights_only``-loadable torch files.

A model file is a dict of plain types only (tensors, dicts, lists, str, int, float)::

    {"format": "matflow-vae3d/vae-model", "format_version": 2,
     "architecture": "spatial" | "dense", "representation": "quaternion" | "euler",
     "config": <the architecture's config>.to_dict(), "lattice": "hP", "grid": 16,
     "state_dict": {...}, "training": {...plain record...}}

Version 1 files (no ``architecture``) are the paper's dense ResNet on Euler angles
and load as such.

Lightning's resume checkpoints (``*.ckpt``) carry the same information under the
key ``"vae3d"`` (added by :class:`~matflow_vae3d.vae.lightning.VAEModule`), so either
file can be passed as ``--model``. Files are written atomically (temporary file in
the same folder, then ``os.replace``): a killed run never leaves a truncated model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from matflow_vae3d.fileio import atomic_output

from ..crystal import canonical_lattice
from .models import ARCHITECTURES, build_model

FORMAT = "matflow-vae3d/vae-model"
FORMAT_VERSION = 2


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside ``path``, then rename over it."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (identifies the model fingerprints came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plain(obj: Any) -> Any:
    """Recursively convert to types ``torch.load(weights_only=True)`` accepts:
    dict/list/str/int/float/bool/None (tuples -> lists, numpy scalars -> Python,
    anything else -> str)."""
    if obj is None or isinstance(obj, (bool, int, float, str)) and type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return plain(obj.item())
    return str(obj)


def model_record(model, lattice: str, training: dict | None = None) -> dict:
    """The plain dict saved by :func:`save_model` (state on CPU, fp32)."""
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}  # torch.compile
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture,
        "representation": model.representation,
        "config": model.config.to_dict(),
        "lattice": canonical_lattice(lattice),
        "grid": int(model.config.grid),
        "state_dict": state,
        "training": plain(dict(training or {})),
    }


def save_model(path, model, lattice: str, training: dict | None = None) -> Path:
    """Write a model file atomically. ``training``: plain JSON-like record."""
    atomic_torch_save(model_record(model, lattice, training), path)
    return Path(path)


def _extract(obj: Any, path) -> dict:
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        if int(obj.get("format_version", 1)) > FORMAT_VERSION:
            raise ValueError(
                f"{path} is a VAE checkpoint of format version {obj['format_version']}; "
                f"this matflow-vae3d reads up to {FORMAT_VERSION}: upgrade matflow-vae3d"
            )
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("vae3d"), dict):  # Lightning checkpoint
        meta = dict(obj["vae3d"])
        prefix = "net."
        state = {
            k[len(prefix) :].replace("_orig_mod.", ""): v
            for k, v in obj.get("state_dict", {}).items()
            if k.startswith(prefix)
        }
        meta["state_dict"] = state
        return meta
    from ..fileio import file_kind

    hint = file_kind(path, obj)
    if hint:
        raise ValueError(f"{path} is not a VAE checkpoint: it is {hint}")
    raise ValueError(f"{path} is not a matflow-vae3d VAE checkpoint (no format {FORMAT!r} and no 'vae3d' record)")


def load_model(path, map_location="cpu"):
    """Load a model file or Lightning checkpoint with ``torch.load(weights_only=True)``.

    Returns (model in eval mode, meta) where meta holds 'architecture',
    'representation', 'config', 'lattice', 'grid', 'latent', 'training', 'sha256' and
    'path'. The model is a SpatialVAE3d or a ResNetVAE3d (vae.models).
    FileNotFoundError / ValueError on bad files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VAE checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, foreign pickle, not a torch file
        from ..fileio import file_kind

        hint = file_kind(path)
        if hint:
            raise ValueError(f"{path} is not a VAE checkpoint: it is {hint}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read VAE checkpoint {path}: {first}") from None
    rec = _extract(obj, path)
    arch = rec.get("architecture", "dense")  # format version 1: the dense ResNet
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: unknown VAE architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    try:
        model = build_model(arch, rec["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid {arch} VAE config: {exc}") from exc
    try:
        model.load_state_dict(rec["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not match its own config: {exc}") from exc
    model.eval()
    meta = {
        "architecture": arch,
        "representation": model.representation,
        "latent": int(model.config.latent),
        "config": rec["config"],
        "lattice": canonical_lattice(rec["lattice"]),
        "grid": int(rec["grid"]),
        "training": rec.get("training", {}),
        "sha256": file_sha256(path),
        "path": str(path),
    }
    return model, meta


def check_compatible(meta: dict, lattice: str, grid, what: str = "dataset") -> None:
    """Refuse to encode VEs of another crystal structure than the model's, or of a grid
    the model cannot take.

    A spatial (periodic, fully convolutional) model takes any grid whose edges are
    multiples of 4, cubic or not, whatever grid it was trained on
    (:func:`~matflow_vae3d.vae.spatial.check_grid`); the dense (paper) ResNet only its
    training grid. grid: int or 3-tuple of cells. Raises ValueError naming both.
    """
    from .spatial import as_grid, check_grid, grid_text

    lat = canonical_lattice(lattice)
    if lat != meta["lattice"]:
        raise ValueError(
            f"the VAE was trained on crystal structure {meta['lattice']!r} but the {what} "
            f"{'are' if what.startswith('VEs') else 'is'} "
            f"{lat!r}: train or pick a model for {lat!r}"
        )
    g = as_grid(grid)
    if meta.get("architecture", "dense") == "spatial":
        check_grid(g, f"the {what}")
        return
    n = meta["grid"]
    if g != (n, n, n):
        raise ValueError(
            f"the dense (paper) ResNet VAE takes only its training grid {n}x{n}x{n}, but the {what} "
            f"{'have' if what.startswith('VEs') else 'has'} grid "
            f"{grid_text(g)}: resample the VEs (vae3d convert VES OUT.h5 --grid {n}x{n}x{n}) or use a "
            "periodic VAE, which takes any grid of multiples of 4 (--model pretrained)"
        )
