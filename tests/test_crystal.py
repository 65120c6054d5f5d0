"""Crystallography (matflow_vae3d.crystal) against damask, on random rotations.

Tolerances: float64 results agree with damask to 1e-12 (conversions, FZ reduction)
or 1e-10 rad (disorientation angles); float32 torch results to 1e-5. Quaternions are
compared up to sign where the sign is not fixed (w = 0), Euler angles through the
rotation they represent (degenerate Phi = 0, pi triplets are not unique).
"""

import damask
import numpy as np
import pytest
import torch

from matflow_vae3d import crystal as C

N = 10_000
LATTICES = ("cF", "cI", "hP")


@pytest.fixture(scope="module")
def q():
    return damask.Rotation.from_random(N, rng_seed=1).quaternion


_REDUCED = {}


def damask_reduced(q, lattice):
    if lattice not in _REDUCED:
        _REDUCED[lattice] = damask.Orientation(q, lattice=lattice).reduced.quaternion
    return _REDUCED[lattice]


def same_rotation(q1, q2, atol):
    """max over rotations of min(|q1 - q2|, |q1 + q2|)."""
    d = np.minimum(np.linalg.norm(q1 - q2, axis=-1), np.linalg.norm(q1 + q2, axis=-1))
    return d.max() < atol


# ----------------------------------------------------------------------------- numpy
def test_eulers_to_quaternions_matches_damask(q):
    eu = damask.Rotation(q).as_Euler_angles()
    assert same_rotation(C.eulers_to_quaternions(eu), damask.Rotation.from_Euler_angles(eu).quaternion, 1e-12)


def test_quaternions_to_eulers_range_and_round_trip(q):
    eu = C.quaternions_to_eulers(q)
    assert eu.shape == (N, 3)
    assert np.all(eu >= 0) and np.all(eu[:, 0] < 2 * np.pi) and np.all(eu[:, 2] < 2 * np.pi)
    assert np.all(eu[:, 1] <= np.pi)
    assert same_rotation(C.eulers_to_quaternions(eu), q, 1e-12)
    # damask reads them back to the same rotation
    assert same_rotation(damask.Rotation.from_Euler_angles(eu).quaternion, q, 1e-12)
    # and agrees with damask's own Euler angles (as rotations; damask snaps < 1e-6 rad)
    assert same_rotation(C.eulers_to_quaternions(damask.Rotation(q).as_Euler_angles()), q, 1e-6)


def test_euler_degeneracies():
    eu = np.array([[0.3, 0.0, 0.5], [1.0, np.pi, 0.25], [6.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    q = C.eulers_to_quaternions(eu)
    back = C.quaternions_to_eulers(q)
    assert np.allclose(back[:, 2], 0.0)  # rotation carried by phi1
    assert np.allclose(back[:, 0], [0.8, 0.75, np.mod(7.0, 2 * np.pi), 0.0])
    assert same_rotation(C.eulers_to_quaternions(back), q, 1e-14)


def test_matrices_round_trip_and_damask(q):
    R = C.quaternions_to_matrices(q)
    assert np.allclose(R, damask.Rotation(q).as_matrix(), atol=1e-14)
    assert np.allclose(np.einsum("nij,nkj->nik", R, R), np.eye(3), atol=1e-12)
    assert same_rotation(C.matrices_to_quaternions(R), q, 1e-12)
    with pytest.raises(ValueError, match="proper"):
        C.matrices_to_quaternions(-np.eye(3))


def test_quaternion_multiply_matches_damask(q):
    p = damask.Rotation.from_random(N, rng_seed=2).quaternion
    assert same_rotation(C.quaternion_multiply(q, p), (damask.Rotation(q) * damask.Rotation(p)).quaternion, 1e-14)


@pytest.mark.parametrize("lattice", LATTICES)
def test_symmetry_operators_form_group(lattice):
    ops = C.symmetry_operators(lattice)
    assert ops.shape == ({"hP": 12}.get(lattice, 24), 4)
    prod = C.quaternion_multiply(ops[:, None], ops[None, :]).reshape(-1, 4)
    # closure: every product is one of the operators (up to sign)
    d = np.minimum(np.abs(prod[:, None] - ops[None]).sum(-1), np.abs(prod[:, None] + ops[None]).sum(-1))
    assert d.min(1).max() < 1e-12


@pytest.mark.parametrize("lattice", LATTICES)
def test_reduce_to_fz_equals_damask(q, lattice):
    r = C.reduce_to_fz(q, lattice)
    assert np.abs(r - damask_reduced(q, lattice)).max() < 1e-12
    assert np.all(damask.Orientation(r, lattice=lattice).in_FZ)
    assert np.abs(C.reduce_to_fz(r, lattice) - r).max() < 1e-12  # idempotent
    # symmetrically equivalent inputs reduce to the same orientation
    ops = C.symmetry_operators(lattice)
    k = np.random.default_rng(0).integers(0, len(ops), N)
    assert same_rotation(C.reduce_to_fz(C.quaternion_multiply(ops[k], q), lattice), r, 1e-12)
    # batch shape preserved
    assert C.reduce_to_fz(q.reshape(10, -1, 4), lattice).shape == (10, N // 10, 4)


@pytest.mark.parametrize("lattice", LATTICES)
def test_disorientation_angle(q, lattice):
    p = damask.Rotation.from_random(N, rng_seed=3).quaternion
    a = C.disorientation_angle(q, p, lattice)
    o1, o2 = damask.Orientation(q, lattice=lattice), damask.Orientation(p, lattice=lattice)
    assert np.abs(a - o1.disorientation_angle(o2)).max() < 1e-10
    # and damask's full search over symmetry-operator pairs (slow: 300 pairs)
    ref = o1[:300].disorientation(o2[:300]).as_axis_angle(pair=True)[1]
    assert np.abs(a[:300] - ref).max() < 1e-10
    assert np.abs(C.disorientation_angle(p, q, lattice) - a).max() < 1e-10  # symmetric
    limit = 93.84 if lattice == "hP" else 62.80
    assert C.disorientation_angle(q, p, lattice, degrees=True).max() <= limit
    ops = C.symmetry_operators(lattice)
    qs = C.quaternion_multiply(ops[np.arange(N) % len(ops)], q)  # crystal symmetry
    assert np.abs(C.disorientation_angle(qs, p, lattice) - a).max() < 1e-10
    assert np.abs(C.disorientation_angle(q, q, lattice)).max() < 1e-7


def test_quaternion_misorientation(q):
    p = damask.Rotation.from_random(N, rng_seed=4).quaternion
    m = C.quaternion_misorientation(q, p)
    angle = damask.Rotation(q).misorientation_angle(damask.Rotation(p))
    assert np.allclose(m, 1.0 - np.cos(angle / 2.0), atol=1e-12)  # Huynh's Phi_3
    assert np.allclose(C.quaternion_misorientation(q, -q), 0.0, atol=1e-12)  # sign invariant
    assert np.all((m >= 0) & (m <= 1))


def test_normalise_eulers(q):
    eu = C.quaternions_to_eulers(C.reduce_to_fz(q, "cF"))
    x = C.normalise_eulers(eu)
    assert np.all((x >= 0) & (x <= 1))
    assert np.allclose(C.denormalise_eulers(x), eu, atol=1e-15)


def test_random_quaternions_uniform():
    """Uniform on SO(3): misorientation angle to identity has density (1 - cos w)/pi;
    binned chi^2 over 10 equal-probability bins below the 99.9 % point."""
    qq = C.random_quaternions(20000, np.random.default_rng(5))
    w = 2 * np.arccos(np.clip(qq[:, 0], -1, 1))
    cdf = (w - np.sin(w)) / np.pi
    hist = np.histogram(cdf, bins=10, range=(0, 1))[0]
    chi2 = ((hist - 2000) ** 2 / 2000).sum()
    assert chi2 < 27.9  # chi^2_9, p = 0.001


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        C.eulers_to_quaternions(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        C.eulers_to_quaternions([np.nan, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        C.reduce_to_fz([np.nan, 0, 0, 1], "cF")
    with pytest.raises(ValueError, match="crystal structure"):
        C.reduce_to_fz([1, 0, 0, 0], "tetragonal")
    with pytest.raises(ValueError, match="zero-length"):
        C.quaternions_to_eulers([0, 0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        C.torch_eulers_to_quaternions(torch.zeros(4, 4))


# ----------------------------------------------------------------------------- torch
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_torch_conversions(q, device, dtype, tol):
    eu = C.quaternions_to_eulers(q)
    t_eu = torch.tensor(eu, dtype=dtype, device=device).reshape(100, 100, 3)
    tq = C.torch_eulers_to_quaternions(t_eu)
    assert tq.shape == (100, 100, 4) and tq.dtype == dtype and tq.device.type == device
    assert same_rotation(tq.reshape(-1, 4).cpu().double().numpy(), q, 10 * tol)
    t_back = C.torch_quaternions_to_eulers(torch.tensor(q, dtype=dtype, device=device))
    e = t_back.cpu().double().numpy()
    assert np.all(e >= 0) and np.all(e[:, 0::2] < 2 * np.pi) and np.all(e[:, 1] <= np.pi + 1e-6)
    # compared as rotations (Phi ~ 0 / pi make triplets non-unique)
    assert same_rotation(C.eulers_to_quaternions(e), q, 100 * tol)
    if dtype == torch.float64:
        assert np.abs(e - eu).max() < 1e-12
    x = C.torch_normalise_eulers(t_back)
    assert torch.allclose(C.torch_denormalise_eulers(x), t_back)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lattice", LATTICES)
def test_torch_reduce_to_fz_equals_damask(q, lattice, device):
    ref = damask_reduced(q, lattice)
    r64 = C.torch_reduce_to_fz(torch.tensor(q, device=device).reshape(10, -1, 4), lattice)
    assert r64.shape == (10, N // 10, 4)
    assert np.abs(r64.reshape(-1, 4).cpu().numpy() - ref).max() < 1e-12
    r32 = C.torch_reduce_to_fz(torch.tensor(q, dtype=torch.float32, device=device), lattice)
    assert r32.dtype == torch.float32
    r32 = r32.cpu().double().numpy()
    # float32 can pick another equivalent on the FZ boundary: same orientation always,
    # and identical quaternion for all but boundary cases
    dis = C.disorientation_angle(r32, ref, lattice)
    assert dis.max() < 1e-3
    assert (np.abs(r32 - ref).max(1) < 1e-5).mean() > 0.999


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lattice", LATTICES)
def test_torch_disorientation_and_misorientation(q, lattice, device):
    p = damask.Rotation.from_random(N, rng_seed=6).quaternion
    ref = C.disorientation_angle(q, p, lattice)
    tq, tp = torch.tensor(q, device=device), torch.tensor(p, device=device)
    a = C.torch_disorientation_angle(tq, tp, lattice).cpu().numpy()
    assert np.abs(a - ref).max() < 1e-10
    a32 = C.torch_disorientation_angle(tq.float(), tp.float(), lattice, degrees=True).cpu().numpy()
    assert np.abs(a32 - np.degrees(ref)).max() < 1e-3
    m = C.torch_quaternion_misorientation(tq, tp).cpu().numpy()
    assert np.abs(m - C.quaternion_misorientation(q, p)).max() < 1e-15
    # broadcasting over a leading batch
    b = C.torch_disorientation_angle(tq[:10, None], tp[None, :7], lattice)
    assert b.shape == (10, 7)
    assert np.abs(b.cpu().numpy() - C.disorientation_angle(q[:10, None], p[None, :7], lattice)).max() < 1e-10


def test_torch_gradients_finite(q):
    t = torch.tensor(q[:100], requires_grad=True)
    p = torch.tensor(q[100:200])
    loss = C.torch_quaternion_misorientation(t, p).sum() + C.torch_disorientation_angle(t, p, "cF").sum()
    loss = loss + C.torch_quaternions_to_eulers(t).sum()
    loss.backward()
    assert torch.isfinite(t.grad).all()
