"""Synthetic polycrystal volume elements: grain sizes, tessellation, textures,
presets and the :class:`VolumeElement` type."""

from ..crystal import LATTICES, canonical_lattice
from .generate import VEParams, generate_ve, generate_ves, ve_seed
from .presets import PRESETS, get_preset
from .textures import TEXTURE_COMPONENTS, TEXTURES
from .volume_element import VolumeElement

__all__ = [
    "LATTICES",
    "VolumeElement",
    "canonical_lattice",
    "VEParams",
    "generate_ve",
    "generate_ves",
    "ve_seed",
    "PRESETS",
    "get_preset",
    "TEXTURE_COMPONENTS",
    "TEXTURES",
]
