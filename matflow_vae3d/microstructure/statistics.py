"""Orientation statistics of a polycrystal: volume-weighted histograms of the sample
axes in the crystal frame (what sets each grain's Schmid factors under a load along
that axis) and of the fundamental-zone Bunge angles, and the mean grain size.

Used as the orientation-statistics baseline of the surrogates
(:mod:`matflow_vae3d.surrogate.baselines`) and, computed on a VAE's reconstruction, as
the decoded statistics of a fingerprint (:mod:`matflow_vae3d.vae.fingerprints`).
Histograms are volume fractions x number of bins (mean 1), so they need no further
input scaling.
"""

from __future__ import annotations

import numpy as np

FEATURE_VERSION = "orientation-statistics-v2"

#: Bunge-angle ranges of the fundamental zones (hP: phi2 < 60 deg, Phi <= 90 deg; the
#: cubic FZ is not a box, these bound it), used to normalise the Euler histograms.
_EULER_RANGE = {
    "hP": (2 * np.pi, np.pi / 2, np.pi / 3),
    "cF": (2 * np.pi, np.pi / 2, np.pi / 2),
    "cI": (2 * np.pi, np.pi / 2, np.pi / 2),
}


def _hist(values, weights, bins, lo, hi):
    h, _ = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi), weights=weights)
    return h


#: sample axes whose crystal-frame histograms the features can hold
_AXES = {"x": 0, "y": 1, "z": 2}


def orientation_features(
    quaternions: np.ndarray, grain_map: np.ndarray, lattice: str, euler_bins: int = 8, axes: str = "x"
) -> np.ndarray:
    """Volume-weighted orientation statistics of one VE (see module doc).

    quaternions : (G, 4) (w, x, y, z), DAMASK convention, FZ-reduced; grain_map :
    (nx, ny, nz) int, 0-based grain index; axes : the sample axes whose crystal-frame
    histogram is included, in order ('x', the uniaxial load case's; 'xyz' for loads
    along any axis). Returns (n_features,) float32: 18 per axis + 3 euler_bins + 1 for
    hP, 25 per axis + 3 euler_bins + 1 for cubic lattices.
    """
    import damask

    if not axes or any(a not in _AXES for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"axes must be distinct letters of 'xyz', got {axes!r}")
    if lattice not in _EULER_RANGE:
        raise ValueError(f"unknown lattice {lattice!r}")
    q = np.asarray(quaternions, dtype=np.float64)
    gm = np.asarray(grain_map)
    w = np.bincount(gm.ravel(), minlength=len(q)).astype(np.float64)
    w /= w.sum()
    rot = damask.Rotation.from_quaternion(q, accept_homomorph=True)
    g = rot.as_matrix()
    hists = []
    for axis in axes:
        d = g[:, :, _AXES[axis]]  # the sample axis expressed in the crystal frame (passive g)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        if lattice == "hP":
            cos_c = np.abs(d[:, 2])
            az = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 60.0
            az = np.where(az > 30.0, 60.0 - az, az)
            h2, _, _ = np.histogram2d(cos_c, az, bins=(6, 3), range=((0, 1), (0, 30)), weights=w)
        else:
            a = np.sort(np.abs(d), axis=1)
            h2, _, _ = np.histogram2d(
                a[:, 2], a[:, 0], bins=(5, 5), range=((1 / np.sqrt(3), 1), (0, 1 / np.sqrt(3))), weights=w
            )
        hists.append(h2.ravel() * h2.size)
    eul = rot.as_Euler_angles() / np.asarray(_EULER_RANGE[lattice])
    eh = [_hist(eul[:, c], w, euler_bins, 0.0, 1.0) for c in range(3)]
    eh = np.concatenate(eh) * euler_bins
    size = np.log(gm.size / max(len(q), 1))
    return np.concatenate([*hists, eh, [size]]).astype(np.float32)
