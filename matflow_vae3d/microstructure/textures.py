"""Grain orientations: uniform random texture and texture components with scatter.

Component mean orientations are Bunge Euler angles (deg) of the classic fcc rolling
components (e.g. Suwas & Ray, *Crystallographic Texture of Materials*, Springer 2014,
Table 6.1; Hirsch & Luecke, Acta Metall. 36, 1988), given by their Miller indices
{hkl}<uvw> (rolling-plane normal || ND, rolling direction || RD):

========  ==============  =========================
name      {hkl}<uvw>      (phi1, Phi, phi2) / deg
========  ==============  =========================
cube      {001}<100>      (0, 0, 0)
goss      {110}<001>      (0, 45, 0)
brass     {110}<-112>     (35.26, 45, 0)
copper    {112}<-1-11>    (90, 35.26, 45)
s         {-123}<6-34>    (58.98, 36.70, 63.43)
========  ==============  =========================

35.26 stands for arctan(1/sqrt 2) = 35.2644 deg (used exactly). S, the third rolling
component of fcc metals ({123}<634>, e.g. Suwas & Ray Table 6.1: (59, 37, 63)), is the
variant {-123}<6-34>, written as the textbook triplet (computed from its Miller indices
by :func:`bunge_from_miller`, phi2 turned by a cubic 90 deg: Phi = arccos(3/sqrt 14),
phi2 = arctan 2). Copper is often written
{112}<11-1>, which is the same component under the orthorhombic sample symmetry of
rolling (a 180 deg turn about ND); the triplet above is {112}<-1-11> exactly.

``tests/test_microstructure.py`` re-derives each triplet from its Miller indices
(symmetry-aware), so a typo here fails the tests.

Scatter follows the paper: independent normal noise of standard deviation
``scatter_deg`` on each Euler angle, then *reflected* at zero (|angle|, "kept
non-negative near zero") instead of wrapped, Phi reflected at pi, phi1/phi2 wrapped
into [0, 360). The orientation is then reduced to the fundamental zone.
"""

from __future__ import annotations

import numpy as np

from .. import crystal
from ..crystal import canonical_lattice

__all__ = [
    "TEXTURE_COMPONENTS",
    "TEXTURE_MILLER",
    "TEXTURES",
    "DEFAULT_SCATTER_DEG",
    "scatter_eulers",
    "sample_orientations",
]

#: mean Bunge Euler angles (deg) of the texture components
_A = float(np.degrees(np.arctan(1.0 / np.sqrt(2.0))))  # 35.2644 deg


def bunge_from_miller(hkl, uvw) -> tuple[float, float, float]:
    """Bunge Euler angles (deg) of the orientation with the crystal plane {hkl} normal to
    the sample z (ND) and the crystal direction <uvw> along the sample x (RD)."""
    nd, rd = np.asarray(hkl, dtype=float), np.asarray(uvw, dtype=float)
    nd, rd = nd / np.linalg.norm(nd), rd / np.linalg.norm(rd)
    g = np.stack([rd, np.cross(nd, rd), nd], axis=1)  # columns: RD, TD, ND in crystal axes
    phi = float(np.degrees(np.arccos(np.clip(g[2, 2], -1.0, 1.0))))
    phi1 = float(np.degrees(np.arctan2(g[2, 0], -g[2, 1]))) % 360.0
    phi2 = float(np.degrees(np.arctan2(g[0, 2], g[1, 2]))) % 360.0
    return phi1, phi, phi2


# {-123}<6-34>: bunge_from_miller gives (58.98, 36.70, 333.43); phi2 + 90 deg (a cubic
# symmetry operation) is the textbook triplet, which is what hP VEs must get
_S = bunge_from_miller((-1, 2, 3), (6, -3, 4))
_S_TEXTBOOK = (_S[0], _S[1], (_S[2] + 90.0) % 360.0)
TEXTURE_COMPONENTS = {
    "cube": (0.0, 0.0, 0.0),
    "goss": (0.0, 45.0, 0.0),
    "brass": (_A, 45.0, 0.0),
    "copper": (90.0, _A, 45.0),
    "s": _S_TEXTBOOK,
}
#: Miller indices ({hkl} || ND, <uvw> || RD) the triplets above stand for
TEXTURE_MILLER = {
    "cube": ((0, 0, 1), (1, 0, 0)),
    "goss": ((1, 1, 0), (0, 0, 1)),
    "brass": ((1, 1, 0), (-1, 1, 2)),
    "copper": ((1, 1, 2), (-1, -1, 1)),
    "s": ((-1, 2, 3), (6, -3, 4)),
}
#: accepted texture names
TEXTURES = ("random",) + tuple(TEXTURE_COMPONENTS) + ("custom",)
#: default standard deviation of the normal scatter on each Euler angle
DEFAULT_SCATTER_DEG = 5.0


def scatter_eulers(mean_deg, scatter_deg: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n Bunge Euler triplets (n, 3) rad: mean_deg (3,) + N(0, scatter_deg) per angle,
    reflected at 0 (paper's non-negativity), Phi reflected into [0, 180], phi1/phi2
    wrapped into [0, 360)."""
    e = np.asarray(mean_deg, dtype=np.float64).reshape(3) + rng.normal(0.0, scatter_deg, (n, 3))
    e = np.abs(e)
    e[:, 1] = np.mod(e[:, 1], 360.0)
    e[:, 1] = np.where(e[:, 1] > 180.0, 360.0 - e[:, 1], e[:, 1])
    e[:, 0::2] = np.mod(e[:, 0::2], 360.0)
    return np.radians(e)


def sample_orientations(
    n: int,
    texture: str,
    lattice: str,
    rng: np.random.Generator,
    eulers_deg=None,
    scatter_deg: float = DEFAULT_SCATTER_DEG,
) -> np.ndarray:
    """n grain orientations (n, 4), FZ-reduced quaternions for ``lattice``.

    texture: 'random' (uniform on SO(3)), a component name ('brass', 'copper',
    'cube', 'goss', 's'), or 'custom' (mean ``eulers_deg`` (3,) Bunge, deg).
    """
    lat = canonical_lattice(lattice)
    if texture == "random":
        q = crystal.random_quaternions(n, rng)
    elif texture in TEXTURE_COMPONENTS or texture == "custom":
        mean = TEXTURE_COMPONENTS.get(texture, eulers_deg)
        if mean is None:
            raise ValueError("texture 'custom' needs eulers_deg (phi1, Phi, phi2) in degrees")
        q = crystal.eulers_to_quaternions(scatter_eulers(mean, scatter_deg, n, rng))
    else:
        raise ValueError(f"unknown texture {texture!r}: use one of {', '.join(TEXTURES)}")
    return crystal.reduce_to_fz(q, lat)
