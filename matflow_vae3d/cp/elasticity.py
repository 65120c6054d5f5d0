"""Hooke elasticity as DAMASK's ``phase_mechanical_elastic`` builds it.

The 6x6 stiffness (Voigt order 11, 22, 33, 23, 13, 12; engineering shear strains) is
symmetrised for the lattice like ``crystal_symmetrize_C66``: cubic from C_11, C_12, C_44;
hexagonal from C_11, C_12, C_13, C_33, C_44 with C_66 = (C_11 - C_12)/2.
"""

from __future__ import annotations

import numpy as np

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))

REQUIRED = {
    "cF": ("C_11", "C_12", "C_44"),
    "cI": ("C_11", "C_12", "C_44"),
    "hP": ("C_11", "C_12", "C_13", "C_33", "C_44"),
}
_OPTIONAL = {"type", "references"}


def stiffness_66(elastic: dict, lattice: str) -> np.ndarray:
    """(6, 6) Pa, Voigt stiffness from a DAMASK ``elastic`` dict {type: Hooke, C_11: ...}.

    Raises ValueError for another type, missing/unknown keys (temperature dependence
    ``C_11,T`` ... is not supported) or a stiffness that is not positive definite.
    """
    if lattice not in REQUIRED:
        raise ValueError(f"unknown lattice {lattice!r}: use one of {sorted(REQUIRED)}")
    if not isinstance(elastic, dict):
        raise ValueError("mechanical.elastic must be a dict")
    if elastic.get("type") != "Hooke":
        raise ValueError(f"unsupported elastic type {elastic.get('type')!r}: only 'Hooke'")
    need = REQUIRED[lattice]
    missing = [k for k in need if k not in elastic]
    if missing:
        raise ValueError(f"elastic (Hooke, {lattice}): missing {missing}")
    unknown = sorted(set(elastic) - set(need) - _OPTIONAL)
    if unknown:
        raise ValueError(f"elastic (Hooke, {lattice}): unsupported keys {unknown}")
    c = {k: float(elastic[k]) for k in need}
    if not all(np.isfinite(v) for v in c.values()):
        raise ValueError(f"elastic constants must be finite, got {c}")
    C = voigt_stiffness(c, lattice)
    check_positive_definite(C)
    return C


def voigt_stiffness(c: dict, lattice: str) -> np.ndarray:
    """(6, 6) Pa, Voigt stiffness from the independent constants ``c`` (Pa) of ``lattice``.

    cF/cI: C_11, C_12, C_44; hP: C_11, C_12, C_13, C_33, C_44, and C_66 = (C_11 - C_12)/2.
    No validation: see :func:`stiffness_66`.
    """
    C = np.zeros((6, 6))
    if lattice in ("cF", "cI"):
        C[:3, :3] = c["C_12"]
        np.fill_diagonal(C[:3, :3], c["C_11"])
        C[3, 3] = C[4, 4] = C[5, 5] = c["C_44"]
    else:
        C[0, 0] = C[1, 1] = c["C_11"]
        C[2, 2] = c["C_33"]
        C[0, 1] = C[1, 0] = c["C_12"]
        C[0, 2] = C[2, 0] = C[1, 2] = C[2, 1] = c["C_13"]
        C[3, 3] = C[4, 4] = c["C_44"]
        C[5, 5] = 0.5 * (c["C_11"] - c["C_12"])
    return C


def check_positive_definite(C66: np.ndarray) -> None:
    """Raise ValueError unless the (6, 6) stiffness is symmetric positive definite."""
    ev = np.linalg.eigvalsh(0.5 * (C66 + C66.T))
    if not np.all(ev > 0):
        raise ValueError(f"elastic stiffness is not positive definite (eigenvalues {ev.tolist()} Pa)")


def C66_to_3333(C66: np.ndarray) -> np.ndarray:
    """(6, 6) Voigt stiffness -> (3, 3, 3, 3) tensor with minor and major symmetry."""
    C = np.zeros((3, 3, 3, 3))
    for a, (i, j) in enumerate(VOIGT):
        for b, (k, l) in enumerate(VOIGT):
            v = C66[a, b]
            C[i, j, k, l] = C[j, i, k, l] = C[i, j, l, k] = C[j, i, l, k] = v
    return C


def C3333_to_66(C: np.ndarray) -> np.ndarray:
    """(..., 3, 3, 3, 3) -> (..., 6, 6) Voigt stiffness."""
    idx = np.array(VOIGT)
    return C[..., idx[:, 0][:, None], idx[:, 1][:, None], idx[:, 0][None, :], idx[:, 1][None, :]]


def rotate_3333(C: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Stiffness in the sample frame: C'_ijkl = R_mi R_nj R_ok R_pl C_mnop.

    R: (..., 3, 3) DAMASK orientation matrices (passive, sample -> crystal: v_c = R v_s).
    """
    return np.einsum("...mi,...nj,...ok,...pl,mnop->...ijkl", R, R, R, R, C)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z), DAMASK convention (P = -1, passive) ->
    (..., 3, 3) matrices R with v_crystal = R v_sample (as damask.Rotation.as_matrix)."""
    q = np.asarray(q, dtype=float)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    P = -1.0
    qq = w**2 - (x**2 + y**2 + z**2)
    R = np.empty(q.shape[:-1] + (3, 3))
    R[..., 0, 0] = qq + 2 * x * x
    R[..., 1, 1] = qq + 2 * y * y
    R[..., 2, 2] = qq + 2 * z * z
    R[..., 0, 1] = 2 * (x * y - P * w * z)
    R[..., 1, 0] = 2 * (y * x + P * w * z)
    R[..., 1, 2] = 2 * (y * z - P * w * x)
    R[..., 2, 1] = 2 * (z * y + P * w * x)
    R[..., 2, 0] = 2 * (z * x - P * w * y)
    R[..., 0, 2] = 2 * (x * z + P * w * y)
    return R


def voigt_reuss(C66: np.ndarray, R: np.ndarray, weights: np.ndarray | None = None):
    """Voigt (mean stiffness) and Reuss (inverse mean compliance) bounds, (6, 6) Pa each,
    for crystals of orientations R (n, 3, 3) with volume fractions ``weights``."""
    C = rotate_3333(C66_to_3333(C66), R)
    w = np.full(len(R), 1.0 / len(R)) if weights is None else np.asarray(weights) / np.sum(weights)
    Cv = C3333_to_66(np.einsum("n,nijkl->ijkl", w, C))
    # compliance in Voigt form with engineering shear: S66 = inv(C66)
    S = np.linalg.inv(C3333_to_66(C))
    Cr = np.linalg.inv(np.einsum("n,nab->ab", w, S))
    return Cv, Cr
