"""The :class:`VolumeElement` type: a voxelated single-phase polycrystal.

A VE is defined by a per-voxel grain index and one orientation per grain; the
float Euler image the VAE sees is derived from those on demand.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..crystal import LATTICES, canonical_lattice  # noqa: F401 - re-exported


@dataclasses.dataclass
class VolumeElement:
    """A periodic voxel polycrystal.

    Attributes
    ----------
    grain_map : (nx, ny, nz) int32
        0-based grain index per voxel, indexed [ix, iy, iz] (DAMASK's
        ``GeomGrid.material`` convention).
    quaternions : (n_grains, 4) float64
        Orientation of each grain, (w, x, y, z), DAMASK convention (passive
        rotation sample -> crystal frame, P = -1, w >= 0), reduced to the
        fundamental zone of ``lattice``.
    lattice : str
        'cF', 'cI' or 'hP'.
    size : (3,) float64, m
        Physical edge lengths (the CP model is local; size only matters for export).
    seed : int or None
        Seed the generator used (None for imported VEs).
    params : dict
        JSON-serialisable generator parameters (empty for imported VEs).
    ve_id : str or None
        Identifier, unique within a dataset.
    """

    grain_map: np.ndarray
    quaternions: np.ndarray
    lattice: str = "cF"
    size: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(3))
    seed: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    ve_id: str | None = None

    def __post_init__(self):
        self.lattice = canonical_lattice(self.lattice)
        gm = np.asarray(self.grain_map)
        if gm.ndim != 3:
            raise ValueError(f"grain_map must be 3-D (nx, ny, nz), got shape {gm.shape}")
        if not np.issubdtype(gm.dtype, np.integer):
            raise ValueError(f"grain_map must hold integers, got dtype {gm.dtype}")
        q = np.asarray(self.quaternions, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != 4:
            raise ValueError(f"quaternions must have shape (n_grains, 4), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("quaternions contain NaN or inf")
        if gm.size and (gm.min() < 0 or gm.max() >= len(q)):
            raise ValueError(
                f"grain_map indices span [{gm.min()}, {gm.max()}] but only {len(q)} orientations are given"
            )
        self.grain_map = gm.astype(np.int32, copy=False)
        self.quaternions = q
        self.size = np.asarray(self.size, dtype=np.float64).reshape(3)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Cells per direction (nx, ny, nz)."""
        nx, ny, nz = (int(n) for n in self.grain_map.shape)
        return nx, ny, nz

    @property
    def n_grains(self) -> int:
        """Number of orientations (grains) of the VE."""
        return len(self.quaternions)
