"""Pictures of volume elements: mid-slices coloured by normalised Euler angles.

Colour convention (the paper's): each voxel's RGB is its grain's FZ Bunge angles
divided by (2 pi, pi, 2 pi), i.e. R = phi1 / 2pi, G = Phi / pi, B = phi2 / 2pi.
"""

from __future__ import annotations

import numpy as np

from .datasets import euler_image
from .fileio import save_figure
from .microstructure.volume_element import VolumeElement


def mid_slices(ve: VolumeElement) -> list[tuple[str, np.ndarray, tuple[str, str]]]:
    """The three mid-plane RGB images of a VE.

    Returns [(name, rgb (h, w, 3) float32 in [0, 1], (row_axis, col_axis)), ...] for
    the planes x = nx/2 (rows y, columns z), y = ny/2 (rows x, columns z) and
    z = nz/2 (rows x, columns y).
    """
    img = euler_image(ve)  # (3, nx, ny, nz)
    nx, ny, nz = ve.grid
    return [
        (f"x = {nx // 2}", np.moveaxis(img[:, nx // 2, :, :], 0, -1), ("y", "z")),
        (f"y = {ny // 2}", np.moveaxis(img[:, :, ny // 2, :], 0, -1), ("x", "z")),
        (f"z = {nz // 2}", np.moveaxis(img[:, :, :, nz // 2], 0, -1), ("x", "y")),
    ]


def plot_mid_slices(ve: VolumeElement, out=None, title: str | None = None, dpi: int = 150):
    """Figure of the three mid-slices of ``ve`` coloured by normalised Euler angles
    (RGB = phi1/2pi, Phi/pi, phi2/2pi), titled with the VE id, lattice, grid and grain
    count; saved to ``out`` (PNG, PDF, ...) when given. Returns the figure."""
    import matplotlib

    if out is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.9), constrained_layout=True)
    for ax, (name, rgb, (r, c)) in zip(axes, mid_slices(ve)):
        ax.imshow(np.clip(rgb, 0.0, 1.0), origin="lower", interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(f"{r} (voxel)")
        ax.set_xlabel(f"{c} (voxel)")
    nx, ny, nz = ve.grid
    if title is None:
        title = f"{ve.ve_id or 'VE'}  |  lattice {ve.lattice}  |  grid {nx}x{ny}x{nz}  |  {ve.n_grains} grains"
    fig.suptitle(title + "\nRGB = (phi1/2pi, Phi/pi, phi2/2pi), FZ Bunge angles", fontsize=10)
    if out is not None:
        save_figure(fig, out, dpi=dpi)
    return fig
