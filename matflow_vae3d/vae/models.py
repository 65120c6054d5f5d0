"""The two VAE architectures behind one interface, and how a checkpoint names them.

========== ============================== ================================================
name       class / config                 what
========== ============================== ================================================
spatial    SpatialVAE3d / SpatialVAEConfig periodic, fully convolutional, latent C × (n/4)³,
                                          quaternions in and out, symmetry-aware loss
                                          (the project's default, docs/vae.md)
dense      ResNetVAE3d / VAEConfig        the paper's ResNet with a dense bottleneck,
                                          normalised Euler angles, BCE + spectral loss
========== ============================== ================================================

Both models offer ``architecture``, ``representation`` ('quaternion' / 'euler'),
``config`` (with ``to_dict``), ``check_input(x)``, ``encode(x) -> (mu, logvar)``,
``fingerprint(x) -> (B, latent)``, ``decode_raw(z)``, ``output(raw)`` and
``forward(x, generator) -> (raw, mu, logvar)``.
"""

from __future__ import annotations

from typing import Any

from .network import ResNetVAE3d, VAEConfig, preset_config
from .spatial import SpatialVAE3d, SpatialVAEConfig

ARCHITECTURES: dict[str, tuple[Any, Any]] = {
    "spatial": (SpatialVAE3d, SpatialVAEConfig),
    "dense": (ResNetVAE3d, VAEConfig),
}

#: presets of the spatial architecture (the dense one keeps network.preset_config's
#: 'small' / 'resnet12' / 'resnet18' / 'resnet34').
SPATIAL_PRESETS = {
    # the shipped CPU models: ≈ 0.7 M parameters, 16 × 4³ = 1,024 numbers for a 16³ VE
    "periodic": dict(widths=(16, 32, 64), layers=(1, 1, 1), latent_channels=16, head_layers=1),
    # 8 × 4³ = 512 numbers: the models shipped until 2026-12-07 (docs/vae.md, latent size)
    "periodic-512": dict(widths=(16, 32, 64), layers=(1, 1, 1), latent_channels=8, head_layers=1),
    # 4 × 4³ = 256 numbers: the paper's fingerprint length
    "periodic-256": dict(widths=(16, 32, 64), layers=(1, 1, 1), latent_channels=4, head_layers=1),
    # wider and deeper, for a GPU
    "periodic-large": dict(widths=(32, 64, 128), layers=(2, 2, 2), latent_channels=16, head_layers=2),
}


def check_architecture(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown VAE architecture {name!r}: use {' or '.join(ARCHITECTURES)}")
    return name


def config_from_dict(architecture: str, d: dict[str, Any]):
    """The config object of ``architecture`` from its plain dict (unknown keys refused)."""
    return ARCHITECTURES[check_architecture(architecture)][1].from_dict(dict(d))


def build_model(architecture: str, config):
    """A fresh model of ``architecture`` from its config (object or plain dict)."""
    cls, cfg_cls = ARCHITECTURES[check_architecture(architecture)]
    if isinstance(config, dict):
        config = cfg_cls.from_dict(config)
    return cls(config)


def model_config(preset: str, grid: int, **overrides):
    """(architecture, config) of a named preset on a ``grid``³ input.

    Spatial presets: 'periodic' (default), 'periodic-512', 'periodic-256', 'periodic-large'; dense
    presets (the paper's): 'small', 'resnet12', 'resnet18', 'resnet34'. ``overrides``
    replace config fields; None values are ignored, and fields the architecture does
    not have are refused by name.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    key = preset.lower()
    arch = "spatial" if key in SPATIAL_PRESETS else "dense"
    bad = sorted(set(overrides) - set(ARCHITECTURES[arch][1].__dataclass_fields__))
    if bad:
        raise ValueError(f"preset {preset!r} ({arch} architecture) has no option {', '.join(bad)}")
    if arch == "spatial":
        return arch, SpatialVAEConfig(**{**SPATIAL_PRESETS[key], "grid": grid, **overrides})
    try:
        return "dense", preset_config(key, grid=grid, **overrides)
    except ValueError as exc:
        if "unknown VAE preset" in str(exc):
            raise ValueError(
                f"unknown VAE preset {preset!r}: use one of "
                f"{', '.join([*SPATIAL_PRESETS, 'small', 'resnet12', 'resnet18', 'resnet34'])}"
            ) from None
        raise
