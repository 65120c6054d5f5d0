"""Crystallography: Bunge Euler angles, quaternions, rotation matrices, fundamental
zones, disorientation and the quaternion misorientation metric.

Conventions are DAMASK's (Rowenhorst et al. 2015): unit quaternions (w, x, y, z),
passive rotations (sample frame -> crystal frame), P = -1, w >= 0. Lattices are
DAMASK's Pearson symbols 'cF', 'cI' (both cubic, point group 432) and 'hP' (hexagonal,
622); aliases are resolved by :func:`~matflow_vae3d.microstructure.canonical_lattice`.

The numpy functions delegate to :class:`damask.Rotation` / :class:`damask.Orientation`
where those do the job; the ``torch_*`` functions re-implement the same formulas for
batched tensors on any device and dtype, and are tested against damask.
"""

from __future__ import annotations

import numpy as np

#: crystal structures understood throughout the package (DAMASK lattice symbols).
LATTICES = ("cF", "cI", "hP")

_LATTICE_ALIASES = {
    "cf": "cF",
    "fcc": "cF",
    "cubic": "cF",
    "ci": "cI",
    "bcc": "cI",
    "hp": "hP",
    "hcp": "hP",
    "hex": "hP",
    "hexagonal": "hP",
}


def canonical_lattice(lattice: str) -> str:
    """DAMASK lattice symbol ('cF', 'cI' or 'hP') for a name or alias.

    'cubic'/'fcc' -> 'cF', 'bcc' -> 'cI', 'hexagonal'/'hcp' -> 'hP'.
    Raises ValueError naming the accepted values for anything else.
    """
    if isinstance(lattice, str):
        if lattice in LATTICES:
            return lattice
        key = lattice.strip().lower()
        if key in _LATTICE_ALIASES:
            return _LATTICE_ALIASES[key]
    raise ValueError(
        f"unknown crystal structure {lattice!r}: use one of {', '.join(LATTICES)} "
        "(aliases: cubic/fcc, bcc, hexagonal/hcp)"
    )


_P = -1.0
#: divisors mapping Bunge Euler angles (rad) into [0, 1]
EULER_SCALE = np.array([2.0 * np.pi, np.pi, 2.0 * np.pi])

__all__ = [
    "EULER_SCALE",
    "eulers_to_quaternions",
    "quaternions_to_eulers",
    "quaternions_to_matrices",
    "matrices_to_quaternions",
    "quaternion_multiply",
    "symmetry_operators",
    "reduce_to_fz",
    "disorientation_angle",
    "quaternion_misorientation",
    "random_quaternions",
    "normalise_eulers",
    "denormalise_eulers",
    "torch_eulers_to_quaternions",
    "torch_quaternions_to_eulers",
    "torch_quaternion_multiply",
    "torch_reduce_to_fz",
    "torch_quaternion_misorientation",
    "torch_disorientation_angle",
    "torch_normalise_eulers",
    "torch_denormalise_eulers",
]


# ----------------------------------------------------------------------------- helpers
def _family(lattice: str) -> str:
    return "hexagonal" if canonical_lattice(lattice) == "hP" else "cubic"


def _check(a, last: tuple, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape[a.ndim - len(last) :] != last or a.ndim < len(last):
        raise ValueError(f"{name} must have shape (..., {', '.join(map(str, last))}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contain NaN or inf")
    return a


def _check_quaternions(q, name: str = "quaternions") -> np.ndarray:
    q = _check(q, (4,), name)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise ValueError(f"{name} contain zero-length quaternions")
    q = q / n
    return np.where(q[..., :1] < 0.0, -q, q)


# ----------------------------------------------------------------------------- numpy
def eulers_to_quaternions(eulers) -> np.ndarray:
    """Bunge Euler angles -> unit quaternions.

    eulers: (..., 3) rad, Bunge (phi1, Phi, phi2); any real values (angles are
    periodic). Returns (..., 4) float64, (w, x, y, z), w >= 0.
    """
    eu = _check(eulers, (3,), "Euler angles")
    ee = 0.5 * eu
    c, s = np.cos(ee[..., 1]), np.sin(ee[..., 1])
    q = np.stack(
        [
            c * np.cos(ee[..., 0] + ee[..., 2]),
            -_P * s * np.cos(ee[..., 0] - ee[..., 2]),
            -_P * s * np.sin(ee[..., 0] - ee[..., 2]),
            -_P * c * np.sin(ee[..., 0] + ee[..., 2]),
        ],
        axis=-1,
    )
    return np.where(q[..., :1] < 0.0, -q, q)


def quaternions_to_eulers(q) -> np.ndarray:
    """Unit quaternions -> Bunge Euler angles.

    q: (..., 4) (w, x, y, z) (normalised here). Returns (..., 3) rad with
    phi1 in [0, 2pi), Phi in [0, pi], phi2 in [0, 2pi); at the degeneracies Phi = 0
    and Phi = pi the rotation is carried by phi1 and phi2 = 0 (DAMASK's choice).
    """
    q = _check_quaternions(q)
    a, b, c, d = q[..., 0], -_P * q[..., 3], -_P * q[..., 1], -_P * q[..., 2]
    Phi = 2.0 * np.arctan2(np.sqrt(c * c + d * d), np.sqrt(a * a + b * b))
    chi, eta = np.arctan2(b, a), np.arctan2(-d, c)  # (phi1 +- phi2) / 2
    zero, pi = Phi <= 1e-8, Phi >= np.pi - 1e-8
    ok = ~(zero | pi)
    phi1 = np.where(ok, chi - eta, np.where(zero, 2.0 * chi, -2.0 * eta))
    phi2 = np.where(ok, chi + eta, 0.0)
    eu = np.stack([np.mod(phi1, 2.0 * np.pi), Phi, np.mod(phi2, 2.0 * np.pi)], axis=-1)
    eu[..., 0::2] = np.where(eu[..., 0::2] >= 2.0 * np.pi, 0.0, eu[..., 0::2])  # round-off: 2pi -> 0
    return eu


def quaternions_to_matrices(q) -> np.ndarray:
    """Unit quaternions (..., 4) -> rotation matrices (..., 3, 3) (passive: sample -> crystal)."""
    import damask

    return damask.Rotation(_check_quaternions(q)).as_matrix()


def matrices_to_quaternions(R) -> np.ndarray:
    """Rotation matrices (..., 3, 3) (proper, orthonormal) -> unit quaternions (..., 4), w >= 0."""
    import damask

    R = _check(R, (3, 3), "rotation matrices")
    if not np.allclose(np.linalg.det(R), 1.0, atol=1e-6):
        raise ValueError("rotation matrices must be proper (det = +1)")
    return damask.Rotation.from_matrix(R).as_quaternion()


def quaternion_multiply(q1, q2) -> np.ndarray:
    """Composition q1 * q2 (first q2, then q1), DAMASK convention (P = -1).

    q1, q2: (..., 4), broadcast. Returns (..., 4) with w >= 0.
    """
    q1 = np.asarray(q1, dtype=np.float64)
    q2 = np.asarray(q2, dtype=np.float64)
    w = q1[..., :1] * q2[..., :1] - np.sum(q1[..., 1:] * q2[..., 1:], axis=-1, keepdims=True)
    v = q1[..., :1] * q2[..., 1:] + q2[..., :1] * q1[..., 1:] + _P * np.cross(q1[..., 1:], q2[..., 1:])
    shape = np.broadcast_shapes(w.shape[:-1], v.shape[:-1])
    q = np.concatenate([np.broadcast_to(w, shape + (1,)), np.broadcast_to(v, shape + (3,))], axis=-1)
    return np.where(q[..., :1] < 0.0, -q, q)


_OPS: dict = {}


def symmetry_operators(lattice: str) -> np.ndarray:
    """Proper rotational symmetry operators of a lattice as quaternions.

    Returns (24, 4) for 'cF'/'cI' (432) and (12, 4) for 'hP' (622), identity first,
    in DAMASK's order.
    """
    lat = canonical_lattice(lattice)
    if lat not in _OPS:
        import damask

        _OPS[lat] = damask.Orientation(lattice=lat).symmetry_operations.quaternion.copy()
    return _OPS[lat].copy()


def reduce_to_fz(q, lattice: str) -> np.ndarray:
    """Symmetrically equivalent orientation inside the fundamental zone.

    q: (..., 4). Returns (..., 4), identical to
    ``damask.Orientation(q, lattice=lattice).reduced.quaternion`` (same FZ test, same
    choice of the first admissible operator; re-implemented here because it is ~5x
    faster and sits in the VE generator's inner loop; tested against damask).
    """
    q = _check_quaternions(q)
    M = _left_matrices(symmetry_operators(lattice))  # (n, 4, 4)
    eq = np.moveaxis((q.reshape(-1, 4) @ M.reshape(-1, 4).T).reshape(q.shape[:-1] + (len(M), 4)), -2, 0)
    eq = np.where(eq[..., :1] < 0.0, -eq, eq)  # (n, ..., 4): s * q
    ok = _in_fz(eq, lattice)
    first = np.argmax(ok, axis=0)
    first = np.where(ok.any(0), first, np.argmax(eq[..., 0], axis=0))  # round-off guard
    return np.take_along_axis(eq, first[None, ..., None], axis=0)[0]


def symmetry_matrices(lattice: str) -> np.ndarray:
    """Left-multiplication matrices of the proper symmetry operators: (n, 4, 4) with
    ``M[s] @ q == s * q`` (P = -1), in :func:`symmetry_operators`' order."""
    return _left_matrices(symmetry_operators(lattice))


def _left_matrices(ops: np.ndarray) -> np.ndarray:
    """4x4 matrices M_s with s * q = M_s q (P = -1) for quaternions s (n, 4)."""
    M = np.zeros((len(ops), 4, 4))
    s0, sv = ops[:, 0], ops[:, 1:]
    M[:, 0, 0] = s0
    M[:, 0, 1:] = -sv
    M[:, 1:, 0] = sv
    cx = np.zeros((len(ops), 3, 3))  # [s]_x, s x v = [s]_x v
    cx[:, 0, 1], cx[:, 0, 2], cx[:, 1, 2] = -sv[:, 2], sv[:, 1], -sv[:, 0]
    cx[:, 1, 0], cx[:, 2, 0], cx[:, 2, 1] = sv[:, 2], -sv[:, 1], sv[:, 0]
    M[:, 1:, 1:] = s0[:, None, None] * np.eye(3) + _P * cx
    return M


def _in_fz(q: np.ndarray, lattice: str) -> np.ndarray:
    """damask's Orientation.in_FZ (Heinz & Neumann 1991) for standardised q (..., 4),
    written without the division by w: |rho_i| = |x_i| / w."""
    w = q[..., 0]
    r = np.abs(q[..., 1:]) * (1.0 - 1e-9)
    if _family(lattice) == "cubic":
        return np.all(r <= (np.sqrt(2.0) - 1.0) * w[..., None], axis=-1) & (r.sum(-1) <= w)
    s3 = np.sqrt(3.0)
    return (
        np.all(r <= w[..., None], axis=-1)
        & (s3 * r[..., 0] + r[..., 1] <= 2.0 * w)
        & (s3 * r[..., 1] + r[..., 0] <= 2.0 * w)
        & (r[..., 2] <= (2.0 - s3) * w)
    )


def disorientation_angle(q1, q2, lattice: str, degrees: bool = False) -> np.ndarray:
    """Symmetry-aware disorientation angle between orientations q1 and q2.

    q1, q2: (..., 4), broadcast against each other. Returns (...) in rad (or deg),
    in [0, 62.8 deg] for cubic and [0, 93.8 deg] for hexagonal symmetry.
    """
    import damask

    lat = canonical_lattice(lattice)
    q1, q2 = np.broadcast_arrays(_check_quaternions(q1, "q1"), _check_quaternions(q2, "q2"))
    a = damask.Orientation(q1, lattice=lat).disorientation_angle(damask.Orientation(q2, lattice=lat))
    a = np.asarray(a).reshape(q1.shape[:-1])
    return np.degrees(a) if degrees else a


def quaternion_misorientation(q1, q2) -> np.ndarray:
    """Quaternion metric 1 - |q1 . q2| (Huynh 2009, Phi_3), no crystal symmetry.

    q1, q2: (..., 4) unit quaternions, broadcast. Returns (...) in [0, 1]
    (0: same rotation, 1: rotations pi apart).
    """
    q1 = _check(q1, (4,), "q1")
    q2 = _check(q2, (4,), "q2")
    return 1.0 - np.abs(np.sum(q1 * q2, axis=-1))


def random_quaternions(n: int | tuple, rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed rotations on SO(3) (Shoemake 1992).

    n: int or shape; rng: numpy Generator. Returns (*shape, 4), w >= 0.
    """
    shape = (n,) if isinstance(n, (int, np.integer)) else tuple(n)
    u = rng.random(shape + (3,))
    a, b = np.sqrt(1.0 - u[..., 0]), np.sqrt(u[..., 0])
    t1, t2 = 2.0 * np.pi * u[..., 1], 2.0 * np.pi * u[..., 2]
    q = np.stack([a * np.cos(t1), a * np.sin(t1), b * np.cos(t2), b * np.sin(t2)], axis=-1)
    return np.where(q[..., :1] < 0.0, -q, q)


def normalise_eulers(eulers) -> np.ndarray:
    """Bunge Euler angles (..., 3) rad -> eulers / (2pi, pi, 2pi), in [0, 1] for FZ angles."""
    return _check(eulers, (3,), "Euler angles") / EULER_SCALE


def denormalise_eulers(x) -> np.ndarray:
    """Inverse of :func:`normalise_eulers`: (..., 3) in [0, 1] -> rad."""
    return _check(x, (3,), "normalised Euler angles") * EULER_SCALE


# ----------------------------------------------------------------------------- torch
def _torch():
    import torch

    return torch


def _tcheck(t, last: int, name: str):
    torch = _torch()
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim < 1 or t.shape[-1] != last:
        raise ValueError(f"{name} must have shape (..., {last}), got {tuple(t.shape)}")
    return t


def _tstandardise(q):
    torch = _torch()
    return torch.where(q[..., :1] < 0, -q, q)


def torch_eulers_to_quaternions(eulers):
    """Torch version of :func:`eulers_to_quaternions`: (..., 3) rad -> (..., 4), w >= 0."""
    torch = _torch()
    eu = _tcheck(eulers, 3, "Euler angles")
    ee = 0.5 * eu
    c, s = torch.cos(ee[..., 1]), torch.sin(ee[..., 1])
    q = torch.stack(
        [
            c * torch.cos(ee[..., 0] + ee[..., 2]),
            -_P * s * torch.cos(ee[..., 0] - ee[..., 2]),
            -_P * s * torch.sin(ee[..., 0] - ee[..., 2]),
            -_P * c * torch.sin(ee[..., 0] + ee[..., 2]),
        ],
        dim=-1,
    )
    return _tstandardise(q)


def torch_quaternions_to_eulers(q):
    """Torch version of :func:`quaternions_to_eulers`: (..., 4) -> (..., 3) rad,
    phi1 in [0, 2pi), Phi in [0, pi], phi2 in [0, 2pi); Phi ~ 0 or pi puts the
    whole rotation into phi1 (phi2 = 0), as DAMASK does.
    """
    torch = _torch()
    q = _tcheck(q, 4, "quaternions")
    q = _tstandardise(q / torch.linalg.norm(q, dim=-1, keepdim=True))
    a, b, c, d = q[..., 0], -_P * q[..., 3], -_P * q[..., 1], -_P * q[..., 2]
    ab, cd = a * a + b * b, c * c + d * d
    Phi = 2.0 * torch.atan2(torch.sqrt(cd), torch.sqrt(ab))
    chi = torch.atan2(b, a)  # (phi1 + phi2) / 2
    eta = torch.atan2(-d, c)  # (phi1 - phi2) / 2
    tol = 1e-8 if q.dtype == torch.float64 else 1e-4
    zero = Phi <= tol
    pi = Phi >= torch.pi - tol
    ok = ~(zero | pi)
    phi1 = torch.where(ok, chi - eta, torch.where(zero, 2.0 * chi, -2.0 * eta))
    phi2 = torch.where(ok, chi + eta, torch.zeros_like(chi))
    two_pi = 2.0 * torch.pi
    eu = torch.stack([torch.remainder(phi1, two_pi), Phi, torch.remainder(phi2, two_pi)], dim=-1)
    scale = torch.tensor([two_pi, 2.0 * torch.pi, two_pi], dtype=eu.dtype, device=eu.device)
    eu = torch.where(eu >= scale, torch.zeros_like(eu), eu)  # round-off: 2pi -> 0
    return eu


def torch_quaternion_multiply(q1, q2):
    """Torch version of :func:`quaternion_multiply` (q1 * q2, P = -1), broadcast, w >= 0."""
    torch = _torch()
    w = q1[..., :1] * q2[..., :1] - (q1[..., 1:] * q2[..., 1:]).sum(-1, keepdim=True)
    v1, v2 = torch.broadcast_tensors(q1[..., 1:], q2[..., 1:])
    v = q1[..., :1] * q2[..., 1:] + q2[..., :1] * q1[..., 1:] + _P * torch.linalg.cross(v1, v2, dim=-1)
    return _tstandardise(torch.cat([w.expand(v.shape[:-1] + (1,)), v], dim=-1))


def _torch_ops(lattice: str, like):
    torch = _torch()
    return torch.as_tensor(symmetry_operators(lattice), dtype=like.dtype, device=like.device)


def torch_reduce_to_fz(q, lattice: str):
    """Torch version of :func:`reduce_to_fz`: (..., 4) -> (..., 4), w >= 0.

    Same algorithm as damask: among the equivalents s*q (s in DAMASK's operator
    order) the first one whose Rodrigues-Frank vector lies in the fundamental zone
    (Heinz & Neumann 1991) is returned.
    """
    torch = _torch()
    q = _tcheck(q, 4, "quaternions")
    q = _tstandardise(q / torch.linalg.norm(q, dim=-1, keepdim=True))
    M = torch.as_tensor(_left_matrices(symmetry_operators(lattice)), dtype=q.dtype, device=q.device)
    n = M.shape[0]
    eq = (q @ M.reshape(-1, 4).T).unflatten(-1, (n, 4))  # (..., n, 4): s * q
    # the FZ test only needs |x_i| / |w| (damask: |rho| * (1 - 1e-9) <= bound)
    w = eq[..., 0].abs() * (1.0 / (1.0 - 1e-9))
    r = eq[..., 1:].abs()
    if _family(lattice) == "cubic":
        ok = (r.amax(-1) <= (np.sqrt(2.0) - 1.0) * w) & (r.sum(-1) <= w)
    else:
        s3 = np.sqrt(3.0)
        ok = (
            (r.amax(-1) <= w)
            & (s3 * r[..., 0] + r[..., 1] <= 2.0 * w)
            & (s3 * r[..., 1] + r[..., 0] <= 2.0 * w)
            & (r[..., 2] <= (2.0 - s3) * w)
        )
    # first admissible operator; fall back to largest w (never needed up to round-off)
    first = torch.argmax(ok.to(torch.uint8), dim=-1)
    idx = torch.where(ok.any(-1), first, torch.argmax(w, dim=-1))
    return _tstandardise(torch.gather(eq, -2, idx[..., None, None].expand(idx.shape + (1, 4))).squeeze(-2))


def torch_quaternion_misorientation(q1, q2):
    """Torch version of :func:`quaternion_misorientation`: 1 - |q1 . q2|, (...)."""
    _tcheck(q1, 4, "q1")
    _tcheck(q2, 4, "q2")
    return 1.0 - (q1 * q2).sum(-1).abs()


def torch_disorientation_angle(q1, q2, lattice: str, degrees: bool = False):
    """Torch version of :func:`disorientation_angle` (rad or deg), broadcast, (...).

    With dq = q1 * q2^-1, the disorientation angle is 2 arccos(max_s |s . dq|) over the
    proper symmetry operators s (the group is closed under inversion); evaluated as
    2 atan2(|v|, |w|) of the best s * dq for accuracy near zero angle.
    """
    torch = _torch()
    _tcheck(q1, 4, "q1")
    _tcheck(q2, 4, "q2")
    q1 = q1 / torch.linalg.norm(q1, dim=-1, keepdim=True)
    q2 = q2 / torch.linalg.norm(q2, dim=-1, keepdim=True)
    inv = torch.cat([q2[..., :1], -q2[..., 1:]], dim=-1)
    dq = torch_quaternion_multiply(q1, inv)  # (..., 4)
    ops = _torch_ops(lattice, dq)
    ops_c = torch.cat([ops[:, :1], -ops[:, 1:]], dim=-1)  # s^-1
    dots = (dq @ ops_c.T).abs()  # (..., n) = |w(s*dq)|
    best = torch.argmax(dots, dim=-1)
    s = ops[best]
    r = torch_quaternion_multiply(s, dq)
    ang = 2.0 * torch.atan2(torch.linalg.norm(r[..., 1:], dim=-1), r[..., 0].abs())
    return ang * (180.0 / np.pi) if degrees else ang


def torch_normalise_eulers(eulers):
    """Torch version of :func:`normalise_eulers`: (..., 3) rad -> [0, 1]."""
    torch = _torch()
    e = _tcheck(eulers, 3, "Euler angles")
    return e / torch.as_tensor(EULER_SCALE, dtype=e.dtype, device=e.device)


def torch_denormalise_eulers(x):
    """Torch version of :func:`denormalise_eulers`: (..., 3) in [0, 1] -> rad."""
    torch = _torch()
    x = _tcheck(x, 3, "normalised Euler angles")
    return x * torch.as_tensor(EULER_SCALE, dtype=x.dtype, device=x.device)
