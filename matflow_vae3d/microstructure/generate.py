"""Generation of synthetic periodic polycrystal VEs: :class:`VEParams`,
:func:`generate_ve` and :func:`generate_ves`.

Pipeline for one VE (see docs/generation.md):

1. grain sizes: log-normal ESDs drawn until their sphere volumes fill the grid
   (:mod:`.grain_sizes`);
2. periodic Laguerre tessellation with those volumes, one centroidal/weight
   iteration (:mod:`.tessellation`); seeds sorted along a Morton curve so grain ids
   are spatially coherent; grains that received no voxel are dropped, ids are
   contiguous 0..G-1;
3. one orientation per grain from the texture, FZ-reduced (:mod:`.textures`).

The seed is split (``numpy.random.SeedSequence(seed).spawn(2)``) into a morphology
stream and an orientation stream, so the same seed gives the same grain structure
for every texture.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..crystal import canonical_lattice
from .grain_sizes import sample_grain_sizes
from .tessellation import laguerre_grains, morton_order
from .textures import DEFAULT_SCATTER_DEG, TEXTURES, sample_orientations
from .volume_element import VolumeElement

__all__ = ["VEParams", "generate_ve", "generate_ves"]


def _finite(name: str, x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


@dataclasses.dataclass
class VEParams:
    """Parameters of the VE generator.

    Attributes
    ----------
    grid : int or (3,) int
        Voxels per edge (N or (nx, ny, nz)), each >= 8.
    mean_esd : float
        Mean equivalent sphere diameter, voxels (> 0). mu of ln(ESD) is
        ln(mean_esd) - sigma^2 / 2 so the distribution's mean equals mean_esd.
    sigma : float
        Standard deviation of ln(ESD) (>= 0).
    min_cutoff, max_cutoff : float
        Truncation of ln(ESD) at mu - min_cutoff*sigma and mu + max_cutoff*sigma (>= 0).
    aspect_ratio : (3,) float
        Grain elongation along x, y, z ((1, 1, 1) equiaxed, (2, 1, 1) elongated along x).
    texture : str
        'random', 'brass', 'copper', 'cube', 'goss', 's' or 'custom'.
    texture_eulers_deg : (3,) float
        Mean Bunge Euler angles (deg) for 'custom'.
    texture_scatter_deg : float
        Standard deviation (deg) of the normal scatter on each Euler angle (>= 0).
    lattice : str
        'cF', 'cI' or 'hP' (aliases accepted).
    name : str
        Free label (preset name), used in default VE ids.
    """

    grid: Any = 64
    mean_esd: float = 5.78
    sigma: float = 0.1
    min_cutoff: float = 5.0
    max_cutoff: float = 5.0
    aspect_ratio: Any = (1.0, 1.0, 1.0)
    texture: str = "random"
    texture_eulers_deg: Any = (0.0, 0.0, 0.0)
    texture_scatter_deg: float = DEFAULT_SCATTER_DEG
    lattice: str = "cF"
    name: str = "custom"

    def __post_init__(self):
        g = np.asarray(self.grid)
        if g.ndim == 0:
            g = np.repeat(g, 3)
        if g.shape != (3,):
            raise ValueError(f"grid must be an int or 3 ints, got {self.grid!r}")
        if not all(float(x).is_integer() for x in g.astype(float)):
            raise ValueError(f"grid must hold integers, got {self.grid!r}")
        g = tuple(int(x) for x in g)
        if min(g) < 8:
            raise ValueError(f"grid must be >= 8 voxels per edge, got {g}")
        self.grid = g
        self.mean_esd = _finite("mean_esd", self.mean_esd)
        if self.mean_esd <= 0:
            raise ValueError(f"mean_esd must be > 0 voxels, got {self.mean_esd}")
        for f in ("sigma", "min_cutoff", "max_cutoff", "texture_scatter_deg"):
            v = _finite(f, getattr(self, f))
            if v < 0:
                raise ValueError(f"{f} must be >= 0, got {v}")
            setattr(self, f, v)
        a = np.asarray(self.aspect_ratio, dtype=np.float64)
        if a.shape != (3,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"aspect_ratio must be 3 finite numbers > 0, got {self.aspect_ratio!r}")
        self.aspect_ratio = tuple(float(x) for x in a)
        if self.texture not in TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}: use one of {', '.join(TEXTURES)}")
        e = np.asarray(self.texture_eulers_deg, dtype=np.float64)
        if e.shape != (3,) or not np.all(np.isfinite(e)):
            raise ValueError(f"texture_eulers_deg must be 3 finite angles (deg), got {self.texture_eulers_deg!r}")
        self.texture_eulers_deg = tuple(float(x) for x in e)
        self.lattice = canonical_lattice(self.lattice)
        self.name = str(self.name)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (lists, floats, str)."""
        d = dataclasses.asdict(self)
        for k in ("grid", "aspect_ratio", "texture_eulers_deg"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VEParams:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(d, dict):
            raise ValueError(f"VE parameters must be a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VE parameter(s) {sorted(unknown)}: known are {sorted(known)}")
        return cls(**d)


def ve_seed(seed: int, index: int) -> int:
    """Seed of VE ``index`` of a run started with ``seed`` (63-bit, deterministic).

    Independent streams per (seed, index) via numpy's SeedSequence, so VE i is the
    same whether generated in one run, appended later, or made by MatFlow's
    ``generate_VE`` (shard s of n VEs holds indices s*n .. s*n+n-1): the CLI and
    MatFlow make the same VEs from the same preset and seed.
    """
    s = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(2, np.uint32)
    return int((int(s[0]) << 31) ^ int(s[1]))


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def generate_ve(params: VEParams, seed: int, ve_id: str | None = None) -> VolumeElement:
    """One periodic VE from ``params`` and ``seed`` (deterministic: same inputs give a
    byte-identical grain_map and quaternions on the same installation).

    Returns a :class:`VolumeElement` with grain ids 0..G-1 (Morton-ordered), FZ-reduced
    orientations, ``params = params.to_dict()``, ``seed`` and ``ve_id`` (default
    ``'<name>-<seed>'``). Size: 1 per voxel edge length unit, i.e. ``size = grid`` in
    micrometres (1e-6 m per voxel).
    """
    if isinstance(params, dict):
        params = VEParams.from_dict(params)
    if not isinstance(params, VEParams):
        raise ValueError(f"params must be VEParams or a dict, got {type(params).__name__}")
    seed = _check_seed(seed)
    rng_m, rng_o = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    grid = np.asarray(params.grid)
    esd = sample_grain_sizes(
        float(np.prod(grid)), params.mean_esd, params.sigma, params.min_cutoff, params.max_cutoff, rng_m
    )
    labels, seeds = laguerre_grains(esd, grid, params.aspect_ratio, rng_m)
    # Morton order of the seeds, then drop empty cells: new id = rank among non-empty
    order = morton_order(seeds, grid)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    present = np.zeros(len(order), dtype=bool)
    present[labels.ravel()] = True
    present_sorted = present[order]
    new_id = np.full(len(order), -1, dtype=np.int64)
    new_id[order[present_sorted]] = np.arange(int(present_sorted.sum()))
    grain_map = new_id[labels].astype(np.int32)
    n = int(present_sorted.sum())
    q = sample_orientations(
        n,
        params.texture,
        params.lattice,
        rng_o,
        eulers_deg=params.texture_eulers_deg,
        scatter_deg=params.texture_scatter_deg,
    )
    return VolumeElement(
        grain_map=grain_map,
        quaternions=q,
        lattice=params.lattice,
        size=grid * 1e-6,
        seed=seed,
        params=params.to_dict(),
        ve_id=ve_id if ve_id is not None else f"{params.name}-{seed}",
    )


def _work(args):
    params, seed = args
    return generate_ve(params, seed)


def generate_ves(
    params: VEParams, seeds: Iterable[int], workers: int = 1, progress: bool = True
) -> Iterator[VolumeElement]:
    """VEs for each seed, yielded in seed order.

    workers > 1 uses a process pool (one VE per task, results reordered); progress
    shows a tqdm bar (``progress=False`` to disable).
    """
    from tqdm.auto import tqdm

    if isinstance(params, dict):
        params = VEParams.from_dict(params)
    seeds = [_check_seed(s) for s in seeds]
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = tqdm(total=len(seeds), desc=f"generate {params.name}", unit="VE", disable=not progress)
    try:
        if workers == 1 or len(seeds) <= 1:
            for s in seeds:
                ve = generate_ve(params, s)
                bar.update(1)
                yield ve
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn" if mp.get_start_method(allow_none=True) == "spawn" else "fork")
            with ctx.Pool(workers) as pool:
                for ve in pool.imap(_work, [(params, s) for s in seeds], chunksize=4):
                    bar.update(1)
                    yield ve
    finally:
        bar.close()
