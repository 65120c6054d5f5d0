"""Synthetic polycrystal volume elements: grain sizes, tessellation, textures,
presets and the :class:`VolumeElement` type."""

from .volume_element import LATTICES, VolumeElement, canonical_lattice

__all__ = ["LATTICES", "VolumeElement", "canonical_lattice"]
