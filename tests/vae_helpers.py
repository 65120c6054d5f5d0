"""Small hand-built VE datasets for the VAE tests (independent of the generator):
periodic Voronoi grains on a 16³ grid with random fundamental-zone orientations."""

from __future__ import annotations

import numpy as np

from matflow_vae3d import crystal
from matflow_vae3d.microstructure import VolumeElement


def voronoi_ve(grid: int, n_grains: int, rng, lattice: str = "hP", ve_id=None, spread=None) -> VolumeElement:
    """Periodic Voronoi VE. spread: None = random texture, else (mean quaternion, deg)
    for a textured VE (small rotations about a mean orientation)."""
    seeds = rng.random((n_grains, 3)) * grid
    c = np.indices((grid,) * 3).reshape(3, -1).T + 0.5
    d = c[:, None, :] - seeds[None]
    d -= grid * np.round(d / grid)
    gm = np.argmin((d**2).sum(-1), axis=1).reshape((grid,) * 3)
    if spread is None:
        q = crystal.random_quaternions(n_grains, rng)
    else:
        q0, deg = spread
        ax = rng.normal(size=(n_grains, 3))
        ax /= np.linalg.norm(ax, axis=1, keepdims=True)
        ang = np.radians(deg) * np.abs(rng.normal(size=(n_grains, 1)))
        dq = np.concatenate([np.cos(ang / 2), np.sin(ang / 2) * ax], axis=1)
        import torch

        q = crystal.torch_quaternion_multiply(torch.as_tensor(dq), torch.as_tensor(np.asarray(q0, float))).numpy()
    q = crystal.reduce_to_fz(q, lattice)
    used, gm = np.unique(gm, return_inverse=True)
    return VolumeElement(
        grain_map=gm.reshape((grid,) * 3).astype(np.int32), quaternions=q[used], lattice=lattice, ve_id=ve_id
    )


def write_set(path, n, grid=16, n_grains=12, seed=0, lattice="hP", prefix="ve", spread=None):
    """Write n Voronoi VEs to a VE dataset at ``path``; returns the path."""
    from matflow_vae3d.datasets import write_ves

    rng = np.random.default_rng(seed)
    ves = [voronoi_ve(grid, n_grains, rng, lattice, f"{prefix}-{i:04d}", spread) for i in range(n)]
    write_ves(path, ves, progress=False)
    return path


def cli_run(*args, ok=True) -> str:
    """Run ``vae3d ARGS`` in-process; assert success (or, with ``ok=False``, a clean
    failure: non-zero exit, no traceback); return the output."""
    from click.testing import CliRunner

    from matflow_vae3d.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert (res.exit_code == 0) == ok, res.output
    if not ok:
        assert "Traceback" not in res.output
    return res.output


def write_ves_with_rolled_copy(path, n, seed, prefix, shift=(5, 3, 7)):
    """Write ``n`` hP 16³ `train` VEs (ids prefix0, prefix1, ...; seeds seed, seed+1,
    ...) and the first one periodically rolled by ``shift`` voxels (id '<first>-rolled')
    to a VE dataset at ``path``; returns the path."""
    from matflow_vae3d.datasets import write_ves
    from matflow_vae3d.microstructure import generate_ve, get_preset

    ves = []
    for s in range(n):
        ve = generate_ve(get_preset("train", grid=16, lattice="hP"), seed=seed + s)
        ve.ve_id = f"{prefix}{s}"
        ves.append(ve)
    v0 = ves[0]
    rolled = np.roll(v0.grain_map, shift, (0, 1, 2))
    ves.append(VolumeElement(rolled, v0.quaternions, "hP", ve_id=f"{v0.ve_id}-rolled"))
    write_ves(path, ves, progress=False)
    return path
