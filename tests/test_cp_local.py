"""The local (material-point) update of the embedded CP solver and its sub-stepping.

Checks the implicit phenopowerlaw update against DAMASK's own residual evaluated
independently, its robustness far above the flow stress, the analytic derivatives
(d dot_state, consistent tangent) against automatic and finite differences, and the
solver's cutback / regrowth of time steps.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import jacfwd, vmap

from matflow_vae3d.cp import elasticity, spectral
from matflow_vae3d.cp.loadcase import LoadCase
from matflow_vae3d.cp.materials import get_phase
from matflow_vae3d.cp.phenopowerlaw import TorchLaw, from_phase
from matflow_vae3d.cp.spectral import _fit_level, solve

REF = Path(__file__).parent / "data" / "damask_ref"


def _law(material):
    return from_phase(get_phase(material) if isinstance(material, str) else material).to()


def _mg_with_exponents():
    """Mg with the optional hardening exponents switched on (c_1..c_4 non-default)."""
    p = get_phase("Mg")
    pl = p["mechanical"]["plastic"]
    pl.update({"c_1": [0.5] * 5, "c_2": [0.7] * 5, "c_3": [1.3] * 3, "c_4": [0.6] * 3})
    return p


def _random_points(law, M, seed, strain=1e-3):
    """Random orientations, F = R-rotated stretch of size ``strain``, a hardened random state."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(M, 4, generator=g, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    R = torch.as_tensor(elasticity.quaternion_to_matrix(q.numpy()))
    F = torch.eye(3, dtype=torch.float64) + strain * torch.randn(M, 3, 3, generator=g, dtype=torch.float64)
    n = law.ns + law.nt
    state = law.state0.expand(M, -1).clone()
    state[:, :n] *= 1 + 0.3 * torch.rand(M, n, generator=g, dtype=torch.float64)
    state[:, n:] = 1e-3 * torch.rand(M, n, generator=g, dtype=torch.float64)
    return F, R.transpose(1, 2).contiguous(), state


def _damask_residual(law, A, Lp, state, dt):
    """|L_p - sum_a gamma_dot_a(S(F_e(L_p))) P_a| (1/s), written out independently of the solver."""
    Fe = A @ (torch.eye(3, dtype=A.dtype) - dt * Lp)
    E = 0.5 * (Fe.transpose(1, 2) @ Fe - torch.eye(3, dtype=A.dtype))
    C = torch.as_tensor(elasticity.C66_to_3333(law.law.C66))
    S = torch.einsum("ijkl,mkl->mij", C, E)
    P = law.Pflat.reshape(-1, 3, 3)
    tau = torch.einsum("mij,aij->ma", S, P)
    ns = law.ns
    xi = state[:, : law.ns + law.nt]
    rate = torch.zeros_like(tau)
    rate[:, :ns] = (
        torch.as_tensor(law.law.dot_gamma_0_sl)
        * (tau[:, :ns].abs() / xi[:, :ns]) ** torch.as_tensor(law.law.n_sl)
        * torch.sign(tau[:, :ns])
    )
    if law.nt:
        f = (state[:, 2 * ns + law.nt :] / torch.as_tensor(law.law.gamma_char)).sum(-1, keepdim=True)
        rate[:, ns:] = (
            (1 - f)
            * torch.as_tensor(law.law.dot_gamma_0_tw)
            * (tau[:, ns:].clamp_min(0) / xi[:, ns:]) ** torch.as_tensor(law.law.n_tw)
        )
    Lpc = torch.einsum("ma,aij->mij", rate, P)
    return (Lp - Lpc).flatten(1).norm(dim=-1)


# ------------------------------------------------------------------------- L_p solve
@pytest.mark.parametrize("material", ["Cu", "Mg"])
def test_flow_solve_far_above_flow_stress_converges_to_damask_residual(material):
    """Trial stresses far above xi_0 (Cu: ~100x at 1e-3 strain) converge, and the result
    satisfies DAMASK's residual with the true (uncapped) power law."""
    law = _law(material)
    F, invFp0, _ = _random_points(law, 200, seed=1)
    state = law.state0.expand(200, -1).clone()  # virgin state: xi = xi_0
    A = F @ invFp0
    dt = 0.5
    x_trial = law.flow_ratio(law.stress_voigt(A), state)[2].amax(-1)
    if material == "Cu":
        assert x_trial.median() > 30
    Lp, S, Sv, Fe, rate, k, ok = law.solve_Lp(A, state, torch.zeros_like(A), dt, max_iter=25)
    assert ok.all()
    # DAMASK's criterion at the solver's tolerances (rtol 1e-8, atol 1e-11 /s), with margin
    tol = torch.clamp(1e-8 * Lp.flatten(1).norm(dim=-1), min=1e-11)
    assert (_damask_residual(law, A, Lp, state, dt) < 2 * tol).all()
    assert (Lp.flatten(1).norm(dim=-1) > 1e-5).sum() > 100  # most points flow plastically
    # S is the stress of the returned L_p
    np.testing.assert_allclose(S, law.stress(A @ (torch.eye(3, dtype=A.dtype) - dt * Lp))[0], rtol=0, atol=1e-3)


def test_flow_solve_lifts_the_cap_where_the_solution_lies_beyond_it(monkeypatch):
    """With a cap below the solution, the point goes on uncapped and ends on the true law.
    (The default cap, 10 |E_tr| of shear per step, lies 30x above this test's 0.3, where
    every point's solution is beyond the cap.)"""
    law = _law("Cu")
    F, invFp0, _ = _random_points(law, 50, seed=2)
    state = law.state0.expand(50, -1).clone()
    A = F @ invFp0
    ref = law.solve_Lp(A, state, torch.zeros_like(A), 0.5)
    monkeypatch.setattr(TorchLaw, "CAP_FACTOR", 0.3)
    low = law.rate_cap(A, 0.5, factor=0.3)[0]
    assert (law.flow_ratio(ref[2], state)[2] > low).any(-1).all()  # every solution beyond the cap
    out = law.solve_Lp(A, state, torch.zeros_like(A), 0.5, max_iter=40)
    assert out[-1].all()
    np.testing.assert_allclose(out[0], ref[0], rtol=0, atol=1e-9 * ref[0].abs().max().item())


# ----------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("phase", ["Cu", "Mg", "Mg-exponents"])
def test_dot_state_jacobian_equals_automatic_differentiation(phase):
    law = _law(_mg_with_exponents() if phase == "Mg-exponents" else phase)
    M = 64
    _, _, state = _random_points(law, M, seed=3)
    g = torch.Generator().manual_seed(4)
    rate = 1e-3 * torch.randn(M, law.ns + law.nt, generator=g, dtype=torch.float64)
    rate[:, law.ns :] = rate[:, law.ns :].abs()
    Dr_ad, Ds_ad = vmap(jacfwd(law.dot_state, argnums=(0, 1)))(rate, state)
    Dr, Ds = law.dot_state_jacobian(rate, state)
    np.testing.assert_allclose(Dr, Dr_ad, rtol=1e-12, atol=1e-12 * Dr_ad.abs().max().item())
    np.testing.assert_allclose(Ds, Ds_ad, rtol=1e-12, atol=1e-12 * Ds_ad.abs().max().item())


@pytest.mark.parametrize("material", ["Cu", "Mg"])
def test_consistent_tangent_equals_finite_differences_of_the_update(material):
    """The coupled (L_p, state) tangent is the derivative of the whole implicit update; the
    frozen-state one is not (for these hardening rates it is off by ~1e-2)."""
    law = _law(material)
    F, invFp0, _ = _random_points(law, 16, seed=5, strain=2e-3)
    state0 = law.state0.expand(16, -1).clone()
    dt = 0.5
    tight = dict(rtol_state=1e-12, rtol_Lp=1e-13)
    o = law.update(F, invFp0, state0, torch.zeros_like(F), state0.clone(), dt, **tight)
    assert o["ok"].all()
    K = law.tangent(F, invFp0, o["Lp"], o["state"], dt, state0=state0)
    K0 = law.tangent(F, invFp0, o["Lp"], o["state"], dt)
    eps = 1e-7
    fd = torch.zeros_like(K)
    for c in range(9):
        dF = torch.zeros(9, dtype=torch.float64)
        dF[c] = eps
        dF = dF.reshape(3, 3)
        Pp = law.update(F + dF, invFp0, state0, o["Lp"], o["state"], dt, **tight)["P"]
        Pm = law.update(F - dF, invFp0, state0, o["Lp"], o["state"], dt, **tight)["P"]
        fd[:, :, c] = ((Pp - Pm) / (2 * eps)).reshape(-1, 9)
    rel = lambda X: ((X - fd).flatten(1).norm(dim=-1) / fd.flatten(1).norm(dim=-1)).max().item()  # noqa: E731
    assert rel(K) < 2e-3
    assert rel(K0) > 3 * rel(K)


# ----------------------------------------------------------------------- sub-steps
def test_fit_level_picks_the_longest_fitting_sub_step():
    assert _fit_level(0, Fraction(1)) == 0
    assert _fit_level(-2, Fraction(1)) == 0
    assert _fit_level(1, Fraction(3, 8)) == 2  # 1/2 does not fit in 3/8, 1/4 does
    assert _fit_level(3, Fraction(1, 2)) == 3  # never longer than asked


def _spy_steps(monkeypatch):
    """Record (dt, converged) of every (sub-)increment solve."""
    steps = []
    orig = spectral._Batch.increment

    def spy(self, idx, Faim, Paim, mask, dt, give_up=False):
        out = orig(self, idx, Faim, Paim, mask, dt, give_up=give_up)
        steps.append((dt, bool(out[0][0])))
        return out

    monkeypatch.setattr(spectral._Batch, "increment", spy)
    return steps


def test_copper_first_increment_starts_on_sub_steps_that_grow_back(monkeypatch):
    """Cu at DAMASK's step (dt = 0.5 s, 5e-4 strain): the elastic predictor overshoots the
    flow stress ~16x, so the first increment starts on sub-steps overshooting ~2x; they
    double as they converge, and the later increments run at full step."""
    from matflow_vae3d.microstructure import generate_ve, get_preset

    steps = _spy_steps(monkeypatch)
    ve = generate_ve(get_preset("train", grid=8, lattice="cF"), seed=0)
    res = solve(ve.grain_map[None], [ve.quaternions], get_phase("Cu"), LoadCase.uniaxial(N=4, strain=2e-3))[0]
    assert res.converged, res.reason
    assert steps[0][0] == 0.5 / 8  # 16x overshoot: start at 2^-3
    done = np.cumsum([d if c else 0.0 for d, c in steps])
    inc1 = [d for (d, c), t in zip(steps, done) if c and t <= 0.5 + 1e-12]  # sub-steps of increment 1
    assert sum(inc1) == pytest.approx(0.5) and max(inc1) < 0.5
    assert max(inc1) >= 2 * min(inc1)  # sub-steps grew again ...
    assert steps[-1] == (0.5, True)  # ... and back at full step
    assert done[-1] == pytest.approx(2.0)  # converged sub-steps cover t
    assert np.all(np.diff(res.sigma[1:, 0, 0]) > 0)


def test_stagnating_newton_is_cut_back(monkeypatch):
    """Without the first-increment sub-steps, Cu's full step stagnates: given up after
    STALL_ITERS iterations, cut back, and the run still converges to the same curve."""
    from matflow_vae3d.microstructure import generate_ve, get_preset

    ve = generate_ve(get_preset("train", grid=8, lattice="cF"), seed=0)
    load = LoadCase.uniaxial(N=2, strain=1e-3)
    ref = solve(ve.grain_map[None], [ve.quaternions], get_phase("Cu"), load)[0]
    steps = _spy_steps(monkeypatch)
    monkeypatch.setattr(spectral, "TRIAL_OVERSHOOT", 1e9)  # no sub-steps up front
    res = solve(ve.grain_map[None], [ve.quaternions], get_phase("Cu"), load)[0]
    assert res.converged, res.reason
    assert steps[0] == (0.5, False) and min(d for d, _ in steps) < 0.5
    np.testing.assert_allclose(res.sigma[1:, 0, 0], ref.sigma[1:, 0, 0], rtol=5e-3)


def test_magnesium_reference_runs_at_full_step(monkeypatch):
    """The Mg reference VE's elastic predictor stays below the flow stress: no sub-steps
    (the DAMASK reference was integrated at full step too)."""
    d = np.load(REF / "mg16_rand_g20_s0.npz")
    gm = d["material_idx_xyz"][::2, ::2, ::2]
    steps = _spy_steps(monkeypatch)
    res = solve(gm[None], [d["quaternions"]], get_phase("Mg"), LoadCase.uniaxial(N=2, strain=1e-3))[0]
    assert res.converged and [d_ for d_, _ in steps] == [0.5, 0.5]


def test_chunked_update_and_tangent_equal_one_pass(monkeypatch):
    """Large batches are updated in chunks of points; the result is the same."""
    law = _law("Mg")
    F, invFp0, state0 = _random_points(law, 40, seed=6)
    Lp0 = torch.zeros_like(F)
    one = law.update(F, invFp0, state0, Lp0, state0.clone(), 0.5, F0=torch.eye(3).expand(40, 3, 3).double())
    K1 = law.tangent(F, invFp0, one["Lp"], one["state"], 0.5, state0=state0)
    monkeypatch.setattr(TorchLaw, "CHUNK", 16)
    chunked = law.update(F, invFp0, state0, Lp0, state0.clone(), 0.5, F0=torch.eye(3).expand(40, 3, 3).double())
    K2 = law.tangent(F, invFp0, one["Lp"], one["state"], 0.5, state0=state0)
    assert torch.equal(one["ok"], chunked["ok"]) and one["ok"].all()
    for k in ("P", "Lp", "state", "invFp", "S"):  # same up to round-off (GEMM blocking)
        np.testing.assert_allclose(chunked[k], one[k], rtol=1e-9, atol=1e-9 * one[k].abs().max().item(), err_msg=k)
    np.testing.assert_allclose(K2, K1, rtol=1e-9, atol=1e-9 * K1.abs().max().item())


# ------------------------------------------------------- coupled update, stress guesses
def _state_residual(law, state0, state, rate, dt):
    """|state - state0 - dt dot_state| relative to the solver's tolerance (1e-7 rel., 1 Pa / 1e-9)."""
    g = state0 + dt * law.dot_state(rate, state)
    atol = law._atol_state(state.device, state.dtype)
    return ((g - state).abs() / torch.maximum(1e-7 * g.abs(), atol)).amax(-1)


@pytest.mark.parametrize("material", ["Cu", "Mg", "Mg-exponents"])
@pytest.mark.parametrize("start", ["step", "virgin"])
def test_coupled_update_equals_nested_iteration(material, start, monkeypatch):
    """L_p and the state solved together give the nested iteration's solution (the same
    equations, DAMASK's residual and the state's fixed point at both tolerances). On a
    step like the solver's (a further 2e-4 of strain from a converged step, started on its
    L_p) it takes far fewer flow evaluations; from a virgin state 2e-3 away (Cu: ~100x
    above the flow stress, which the solver splits into sub-steps) the points whose state
    does not contract go on in the nested iteration."""
    law = _law(_mg_with_exponents() if material == "Mg-exponents" else material)
    F, invFp0, state0 = _random_points(law, 300, seed=11, strain=2e-3)
    Lp0, dt = torch.zeros_like(F), 0.5
    if start == "step":
        prev = law.update(F, invFp0, state0, Lp0, state0.clone(), dt)
        assert prev["ok"].all()
        invFp0, state0, Lp0 = prev["invFp"], prev["state"], prev["Lp"]
        F = F @ (torch.eye(3, dtype=F.dtype) + 2e-4 * torch.diag(torch.tensor([1.0, -0.5, -0.5], dtype=F.dtype)))
    calls = {"n": 0}
    flow = TorchLaw._flow

    def counting(self, A, *a, **k):
        calls["n"] += A.shape[0]
        return flow(self, A, *a, **k)

    monkeypatch.setattr(TorchLaw, "_flow", counting)
    runs = {}
    for coupled in (True, False):
        monkeypatch.setattr(TorchLaw, "COUPLED", coupled)
        calls["n"] = 0
        runs[coupled] = (law.update(F, invFp0, state0, Lp0, state0.clone(), dt), calls["n"])
    (c, n_c), (n, n_n) = runs[True], runs[False]
    assert c["ok"].all() and n["ok"].all()
    if start == "step":  # measured: Cu 24.8 vs 30.1 flows per point, Mg 18.1 vs 24.2
        assert n_c < 0.9 * n_n, (n_c, n_n)
    for k in ("P", "Lp", "state", "S"):
        scale = n[k].abs().max().item()
        np.testing.assert_allclose(c[k], n[k], rtol=0, atol=2e-6 * scale, err_msg=k)
    # the state is the fixed point of the rates of the returned stress (as nested: L_p is
    # converged at the last iterate of the state, the state returned is its map)
    A = F @ invFp0
    rate = law.kinetics(law.stress_voigt(A @ (torch.eye(3, dtype=A.dtype) - dt * c["Lp"])), c["state"])[0]
    assert (_state_residual(law, state0, c["state"], rate, dt) < 50).all()


def test_stress_guess_from_below_the_flow_stress_is_not_accepted():
    """A stress guess in the flat part of the power law (here: zero) makes the linearised
    residual vanish while S(F_e(L_p)) lies far above the flow stress: the exact check on
    DAMASK's residual rejects it and the solve goes on to the true solution."""
    law = _law("Mg")
    F, invFp0, state0 = _random_points(law, 100, seed=12, strain=3e-3)
    dt = 0.5
    ref = law.update(F, invFp0, state0, torch.zeros_like(F), state0.clone(), dt)
    bad = law.update(F, invFp0, state0, torch.zeros_like(F), state0.clone(), dt, S=torch.zeros_like(F))
    assert ref["ok"].all() and bad["ok"].all()
    assert (ref["Lp"].flatten(1).norm(dim=-1) > 1e-6).sum() > 50  # most points flow
    np.testing.assert_allclose(bad["Lp"], ref["Lp"], rtol=0, atol=1e-6 * ref["Lp"].abs().max().item())
    np.testing.assert_allclose(bad["S"], ref["S"], rtol=0, atol=1e-6 * ref["S"].abs().max().item())


def test_tangent_stress_derivative_predicts_the_update_at_a_nearby_F():
    """dS/dF of ``tangent(with_dS=True)`` (frozen state) is the derivative of the local
    solution: S(F + dF) - S(F) = dS/dF dF to first order."""
    law = _law("Mg")
    F, invFp0, state0 = _random_points(law, 50, seed=13, strain=2e-3)
    dt = 0.5
    kw = dict(rtol_state=1e-12, rtol_Lp=1e-12)
    one = law.update(F, invFp0, state0, torch.zeros_like(F), state0.clone(), dt, **kw)
    res = law.tangent(F, invFp0, one["Lp"], one["state"], dt, with_dS=True)
    K = law.tangent(F, invFp0, one["Lp"], one["state"], dt)
    assert torch.equal(res["K"], K) and res["dS"].shape == (50, 6, 9)
    dF = 1e-7 * torch.randn(50, 3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # frozen state: the L_p solve at F + dF with the converged state held fixed
    Lp2, S2 = law.solve_Lp((F + dF) @ invFp0, one["state"], one["Lp"], dt, rtol=1e-13)[:2]
    pred = law.matrix_to_voigt(one["S"]) + (res["dS"] @ dF.flatten(1)[..., None])[..., 0]
    err = (law.matrix_to_voigt(S2) - pred).norm(dim=-1)
    change = (law.matrix_to_voigt(S2) - law.matrix_to_voigt(one["S"])).norm(dim=-1)
    assert (err < 1e-2 * change + 1e-3).all()


def test_integer_power_by_squaring_equals_pow():
    from matflow_vae3d.cp.phenopowerlaw import _pow

    x = torch.rand(1000, dtype=torch.float64) * 3
    for n in (1.0, 2.0, 7.0, 20.0, 64.0, 2.25, 80.0):
        np.testing.assert_allclose(_pow(x, n), x**n, rtol=1e-14, atol=0)


def test_solve_reports_every_increment_to_a_progress_callable():
    d = np.load(REF / "mg16_rand_g20_s0.npz")
    gm = d["material_idx_xyz"][::4, ::4, ::4]
    seen = []
    res = solve(
        gm[None],
        [d["quaternions"]],
        get_phase("Mg"),
        LoadCase.uniaxial(N=3, strain=1e-3),
        progress=lambda done, n: seen.append((done, n)),
    )[0]
    assert res.converged and seen == [(1, 3), (2, 3), (3, 3)]
