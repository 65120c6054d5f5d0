"""Generator presets for the paper's datasets (MISSION.md section 1).

All presets: log-normal ESD with sigma 0.1 and cut-offs at 5 sigmas (the paper's
DREAM.3D settings); ``train`` is equiaxed with mean ESD 5.78 voxels and random
texture; the morphology edge cases change the ESD (and shape); the texture presets
keep the ``train`` morphology and draw orientations from one texture component with
the default scatter (:data:`~.textures.DEFAULT_SCATTER_DEG`).
"""

from __future__ import annotations

from .generate import VEParams

__all__ = ["PRESETS", "get_preset"]

_TRAIN = dict(mean_esd=5.78, sigma=0.1, min_cutoff=5.0, max_cutoff=5.0, aspect_ratio=(1.0, 1.0, 1.0), texture="random")

#: preset name -> VEParams keyword arguments (grid and lattice are chosen at use)
PRESETS: dict[str, dict] = {
    "train": dict(_TRAIN),
    "large": dict(_TRAIN, mean_esd=12.24),
    "small": dict(_TRAIN, mean_esd=2.73),
    "elongated": dict(_TRAIN, mean_esd=9.54, aspect_ratio=(2.0, 1.0, 1.0)),
    "brass": dict(_TRAIN, texture="brass"),
    "copper": dict(_TRAIN, texture="copper"),
    "cube": dict(_TRAIN, texture="cube"),
    "goss": dict(_TRAIN, texture="goss"),
    "s": dict(_TRAIN, texture="s"),
}


def get_preset(name: str, grid=64, lattice: str = "cF") -> VEParams:
    """VEParams of preset ``name`` on ``grid`` (int or (3,)) for ``lattice``.

    Unknown names raise ValueError listing the presets.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return VEParams(grid=grid, lattice=lattice, name=name, **PRESETS[name])
