"""Rotations of a periodic voxel VE by the 24 proper rotations of the cube.

A periodic VE on a cubic grid rotated by 90° steps is another valid VE of the same
microstructure statistics. The crystal-plasticity response is frame-indifferent, so
the rotated VE under the rotated load path answers with the rotated stress, exactly
(``sigma' = R sigma R^T``, likewise ``F`` and ``P``; see
:mod:`matflow_vae3d.cp.rotations`). That turns one CP run into 24 training examples
for a surrogate whose input (a fingerprint, orientation statistics) is not invariant
under rotations.

Conventions
-----------
``R`` : (3, 3) signed permutation, det +1, acting on sample-frame coordinates
(``x' = R x``). ``R[i, p[i]] = s[i]``: the rotated VE's axis i is the original's axis
``p[i]``, reversed where ``s[i] < 0``. The rotation is about the VE's centre (voxel
centres map onto voxel centres). Crystal orientations are DAMASK's passive sample ->
crystal rotations ``M``; a rotated specimen has ``M' = M R^T``.

Rotated copies carry the id ``<ve_id>@r<k>`` (k = 1..23, :func:`rotated_id`); every
rule that must keep a VE and its copies together (train/validation/test splits) groups
by :func:`base_id`.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np

from ..crystal import matrices_to_quaternions, quaternions_to_matrices, reduce_to_fz
from .volume_element import VolumeElement

_ROT_SUFFIX = re.compile(r"@r(\d{2})$")


def cube_rotations() -> np.ndarray:
    """(24, 3, 3) float64: the proper rotations of the cube (signed permutation
    matrices, det +1); index 0 is the identity, the order is fixed."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            R = np.zeros((3, 3))
            R[np.arange(3), perm] = signs
            if np.linalg.det(R) > 0:
                out.append(R)
    out.sort(key=lambda R: (not np.allclose(R, np.eye(3)), tuple(R.ravel())))
    return np.stack(out)


def _check_rotation(R) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.allclose(np.abs(R).sum(axis=0), 1) or not np.allclose(np.abs(R).sum(axis=1), 1):
        raise ValueError(f"a grid rotation must be a 3x3 signed permutation matrix, got {R.tolist()}")
    if not np.isclose(np.linalg.det(R), 1.0):
        raise ValueError("a grid rotation must be proper (det +1): a mirror would change the crystals' handedness")
    perm = np.abs(R).argmax(axis=1)
    signs = R[np.arange(3), perm]
    return R, perm, signs


def rotate_tensors(a, R) -> np.ndarray:
    """Sample-frame second-order tensors (..., 3, 3) in the rotated frame:
    ``R a R^T`` (NaN components move with their index, e.g. DAMASK's free 'x')."""
    R, perm, signs = _check_rotation(R)
    a = np.asarray(a, dtype=np.float64)
    return a[..., perm[:, None], perm[None, :]] * np.outer(signs, signs)


def rotate_grid(field: np.ndarray, R) -> np.ndarray:
    """A voxel field (nx, ny, nz, ...) rotated about the VE's centre by ``R``; the
    grid must have equal edges along the axes ``R`` swaps."""
    R, perm, signs = _check_rotation(R)
    field = np.asarray(field)
    shape = field.shape[:3]
    if tuple(shape[p] for p in perm) != tuple(shape):
        raise ValueError(f"rotation {R.astype(int).tolist()} does not map the grid {shape} onto itself")
    out = np.transpose(field, tuple(perm) + tuple(range(3, field.ndim)))
    flip = tuple(i for i in range(3) if signs[i] < 0)
    return np.flip(out, axis=flip) if flip else out


def rotated_id(ve_id: str | None, k: int) -> str:
    """Id of rotation ``k`` (1..23 of :func:`cube_rotations`) of VE ``ve_id``."""
    if not 1 <= int(k) <= 23:
        raise ValueError(f"rotation index must be in 1..23, got {k}")
    if ve_id is None or _ROT_SUFFIX.search(str(ve_id)):
        raise ValueError(f"VE id {ve_id!r} is missing or already a rotated copy")
    return f"{ve_id}@r{int(k):02d}"


def base_id(ve_id: str) -> str:
    """The original VE's id of a rotated copy (the id itself for an original)."""
    return _ROT_SUFFIX.sub("", str(ve_id))


def rotation_index(ve_id: str) -> int:
    """k of a rotated copy's id, 0 for an original."""
    m = _ROT_SUFFIX.search(str(ve_id))
    return int(m.group(1)) if m else 0


def rotate_ve(ve: VolumeElement, k: int) -> VolumeElement:
    """Rotation ``k`` (1..23 of :func:`cube_rotations`) of ``ve`` about its centre:
    voxels moved, every grain's orientation ``M' = M R^T`` (back in the fundamental
    zone), edges permuted, id :func:`rotated_id`."""
    vid = rotated_id(ve.ve_id, k)  # checks k
    R, perm, _ = _check_rotation(cube_rotations()[int(k)])
    M = quaternions_to_matrices(ve.quaternions) @ R.T
    q = reduce_to_fz(matrices_to_quaternions(M), ve.lattice)
    params = dict(ve.params) | {"rotated_from": ve.ve_id, "cube_rotation": R.astype(int).tolist()}
    return dataclasses.replace(
        ve,
        grain_map=np.ascontiguousarray(rotate_grid(ve.grain_map, R)),
        quaternions=q,
        size=ve.size[perm],
        params=params,
        ve_id=vid,
    )


def axis_rotations() -> list[int]:
    """Indices of the identity and the two cyclic axis permutations (x -> y -> z -> x
    and its inverse): a load along x becomes the same load along y and along z."""
    Rs = cube_rotations()
    cyc = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return [0] + [int(np.flatnonzero([np.allclose(R, C) for R in Rs])[0]) for C in (cyc, cyc @ cyc)]


def parse_rotations(spec: str) -> list[int]:
    """Rotation indices from text: 'all' (0..23), 'axes' (:func:`axis_rotations`), or
    comma-separated indices 0..23 (0 = as is)."""
    text = str(spec).strip().lower()
    if text == "all":
        return list(range(24))
    if text == "axes":
        return axis_rotations()
    try:
        ks = sorted({int(k) for k in text.split(",")})
    except ValueError:
        ks = []
    if not ks or ks[0] < 0 or ks[-1] > 23:
        raise ValueError(f"rotations {spec!r}: use 'all', 'axes' or comma-separated indices 0..23")
    return ks
