"""Normalised FZ Euler angles: the image the paper's VAE sees, from a VE's orientations."""

from __future__ import annotations

import numpy as np

from ..microstructure.volume_element import VolumeElement
from .layout import EULER_SCALE


# ----------------------------------------------------------------------------------
# orientation helpers
# ----------------------------------------------------------------------------------
def _quaternions_to_eulers(q: np.ndarray) -> np.ndarray:
    """Bunge Euler angles (..., 3) rad of unit quaternions (..., 4) (w, x, y, z)."""
    from ..crystal import quaternions_to_eulers

    return quaternions_to_eulers(np.asarray(q, dtype=np.float64))


def eulers_norm_of(quaternions: np.ndarray) -> np.ndarray:
    """Normalised Euler angles (..., 3) float32 in [0, 1] of quaternions (..., 4).

    The quaternions are expected to be reduced to the fundamental zone already
    (as :class:`VolumeElement` requires); the Bunge angles (phi1, Phi, phi2) are
    divided by (2 pi, pi, 2 pi).
    """
    e = _quaternions_to_eulers(quaternions) / EULER_SCALE
    return np.clip(e, 0.0, 1.0).astype(np.float32)


def euler_image(ve: VolumeElement) -> np.ndarray:
    """Normalised Euler image (3, nx, ny, nz) float32 in [0, 1] of one VE.

    Channel c holds the FZ Bunge angle c of each voxel's grain divided by
    (2 pi, pi, 2 pi)[c] (the paper's VAE input).
    """
    table = eulers_norm_of(ve.quaternions)  # (G, 3)
    return np.ascontiguousarray(np.moveaxis(table[ve.grain_map], -1, 0))
