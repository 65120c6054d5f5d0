"""Changing a VE's grid: nearest-neighbour resampling to any grid, and coarsening by
an integer factor (for the periodic VAE's multiple-of-4 rule and for coarse CP).

Both keep what a VE is: the grain orientations, the lattice, the physical size
(``size`` in m; only the voxel size changes) and periodicity (the new cells sample the
old ones at the same relative positions in the periodic box, so no seam appears).
Grains that lose all their voxels are dropped (grain ids are renumbered 0..G'-1 in
their old order) and counted in the :class:`ResampleReport`.

Rules
-----
``nearest`` (:func:`resample_ve`): new cell i along an axis of n old and m new cells
    takes old cell ``floor((i + 1/2) n / m)``, the old cell under its centre. For
    m = n / k this is the plain subsampling ``grain_map[k//2::k]`` (the centre voxel of
    each k-block).
``majority`` (:func:`coarsen_ve`): each k³ block becomes the grain that holds most of
    its voxels (ties: the block's centre voxel if it is among them, else the lowest
    id), so a coarse voxel is the grain that fills most of it rather than whichever
    grain its centre happens to hit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .volume_element import VolumeElement

#: coarsening rules of :func:`coarsen_ve`
COARSEN_RULES = ("majority", "nearest")


@dataclasses.dataclass(frozen=True)
class ResampleReport:
    """What a change of grid did to a VE.

    grid_before, grid_after : 3 ints; grains_before, grains_after : int;
    vanished_volume_fraction : float, the volume fraction (of the original VE) of the
    grains that vanished.
    """

    grid_before: tuple
    grid_after: tuple
    grains_before: int
    grains_after: int
    vanished_volume_fraction: float

    @property
    def vanished_grains(self) -> int:
        return self.grains_before - self.grains_after

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["grid_before"], d["grid_after"] = list(self.grid_before), list(self.grid_after)
        d["vanished_grains"] = self.vanished_grains
        return d


def _grid(grid) -> tuple[int, int, int]:
    g = tuple(int(n) for n in (grid if hasattr(grid, "__len__") else (grid,) * 3))
    if len(g) != 3 or min(g) < 1:
        raise ValueError(f"a grid is 3 positive ints, got {grid!r}")
    return g


def _rebuild(ve: VolumeElement, grain_map: np.ndarray) -> tuple[VolumeElement, ResampleReport]:
    """The VE with ``grain_map`` (old grain ids), vanished grains dropped, and its report."""
    present = np.zeros(ve.n_grains, dtype=bool)
    present[np.unique(grain_map)] = True
    new_id = np.cumsum(present) - 1
    counts = np.bincount(ve.grain_map.ravel(), minlength=ve.n_grains)
    vanished = float(counts[~present].sum()) / ve.grain_map.size
    params = dict(ve.params)
    params["resampled_from_grid"] = list(ve.grid)
    out = VolumeElement(
        grain_map=new_id[grain_map].astype(np.int32),
        quaternions=ve.quaternions[present],
        lattice=ve.lattice,
        size=ve.size.copy(),
        seed=ve.seed,
        params=params,
        ve_id=ve.ve_id,
    )
    rep = ResampleReport(ve.grid, out.grid, ve.n_grains, out.n_grains, vanished)
    return out, rep


def resample_ve(ve: VolumeElement, grid) -> tuple[VolumeElement, ResampleReport]:
    """Nearest-neighbour resampling of a periodic VE onto ``grid`` (an int or 3 ints,
    finer or coarser, any ratio). Same physical size, orientations and lattice.
    Returns (new VE, :class:`ResampleReport`)."""
    new = _grid(grid)
    idx = [np.floor((np.arange(m) + 0.5) * n / m).astype(np.int64) for n, m in zip(ve.grid, new)]
    gm = ve.grain_map[np.ix_(*idx)]
    return _rebuild(ve, gm)


def check_factor(k: int, grid) -> None:
    """The one rule of an integer coarsening: ``k`` divides every edge of ``grid``;
    ValueError ('coarsening factor 3 does not divide the grid 16x16x16') otherwise."""
    g = _grid(grid)
    if any(n % int(k) for n in g):
        raise ValueError(f"coarsening factor {k} does not divide the grid {'x'.join(map(str, g))}")


def coarsen_ve(ve: VolumeElement, k: int, rule: str = "majority") -> tuple[VolumeElement, ResampleReport]:
    """Coarsen a VE by the integer factor ``k`` on every axis (grid / k), by ``rule``
    (:data:`COARSEN_RULES`, see the module docstring). k = 1 returns the VE unchanged.
    ValueError when k does not divide every edge."""
    k = int(k)
    if k < 1:
        raise ValueError(f"the coarsening factor must be a positive integer, got {k}")
    if rule not in COARSEN_RULES:
        raise ValueError(f"unknown coarsening rule {rule!r}: use {' or '.join(COARSEN_RULES)}")
    g = ve.grid
    check_factor(k, g)
    if k == 1:
        return ve, ResampleReport(g, g, ve.n_grains, ve.n_grains, 0.0)
    if rule == "nearest":
        return resample_ve(ve, tuple(n // k for n in g))
    c = tuple(n // k for n in g)
    blocks = ve.grain_map.reshape(c[0], k, c[1], k, c[2], k).transpose(0, 2, 4, 1, 3, 5).reshape(-1, k**3)
    centre = ((k // 2) * k + k // 2) * k + k // 2  # the voxel `nearest` picks
    out = np.empty(len(blocks), dtype=np.int64)
    step = max(1, (1 << 24) // k**6)  # bound the (b, k³, k³) comparison to ~16 M entries
    for a in range(0, len(blocks), step):
        b = blocks[a : a + step]
        counts = (b[:, :, None] == b[:, None, :]).sum(2).astype(np.float64)  # (b, k³): votes of each voxel's grain
        score = counts - 1e-9 * b  # ties: lowest id ...
        score[:, centre] += 0.5  # ... unless the centre voxel is among them
        out[a : a + step] = b[np.arange(len(b)), score.argmax(1)]
    return _rebuild(ve, out.reshape(c))
