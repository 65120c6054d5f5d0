"""DAMASK's phenomenological power law (``phenopowerlaw``) with Hooke elasticity, in torch.

The constitutive update follows DAMASK's ``phase_mechanical.f90`` and
``phase_mechanical_plastic_phenopowerlaw.f90`` (DAMASK 3.0, parameters per family):

- Multiplicative split F = F_e F_p; F_p starts as the orientation matrix R of the grain
  (DAMASK: "Fp reflects initial orientation"), so every stress below is in the lattice
  frame and the stiffness is never rotated.
- S = C : (F_e^T F_e - I)/2 (second Piola-Kirchhoff stress in the intermediate
  configuration); Mandel stress M_p = F_i^T F_i S = S (no F_i here);
  P = F F_p^-1 S F_p^-T.
- Slip: gamma_dot = dot_gamma_0 |tau/xi|^n sign(tau), tau = M_p : (d (x) n).
- Twinning (unidirectional, only in the untwinned volume):
  gamma_dot_tw = (1 - sum_tw gamma_tw/gamma_char) dot_gamma_0_tw (tau/xi_tw)^n_tw for tau > 0.
- L_p = sum gamma_dot_sl P_sl + sum gamma_dot_tw P_tw.
- Hardening (f_tw = sum gamma_tw/gamma_char, Gamma = sum gamma_sl):
  dot xi_sl = h_0_sl-sl (1 + c_1 f_tw^c_2) sgn|1 - xi_sl/(xi_inf_sl + f_sat_sl-tw sqrt(f_tw))|^a_sl
              h_sl-sl |gamma_dot_sl| + h_sl-tw gamma_dot_tw
  dot xi_tw = h_0_tw-sl Gamma^c_3 h_tw-sl |gamma_dot_sl| + h_0_tw-tw f_tw^c_4 h_tw-tw gamma_dot_tw
  dot gamma_sl = |gamma_dot_sl|, dot gamma_tw = gamma_dot_tw.
- Time integration per increment as DAMASK: implicit in L_p,
  F_p^-1(t+dt) = F_p^-1(t) (I - dt L_p), solved by Newton with DAMASK's backtracking, and a
  fixed-point iteration on the state, state = state_0 + dt dot_state(S(t+dt), state(t+dt))
  (DAMASK's default 'FPI' integrator), both converged tighter than DAMASK's defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from . import elasticity, lattice as lat

PHASE_KEYS = {"lattice", "c/a", "rho", "mechanical", "references"}
MECH_KEYS = {"output", "elastic", "plastic"}
SLIP_KEYS = {"N_sl", "xi_0_sl", "xi_inf_sl", "h_0_sl-sl", "dot_gamma_0_sl", "n_sl", "a_sl",
             "h_sl-sl", "c_1", "c_2", "f_sat_sl-tw"}
TWIN_KEYS = {"N_tw", "xi_0_tw", "dot_gamma_0_tw", "n_tw", "h_0_tw-tw", "h_tw-tw", "c_3", "c_4"}
SLIPTWIN_KEYS = {"h_0_tw-sl", "h_sl-tw", "h_tw-sl"}
OTHER_KEYS = {"type", "output", "references", "atol_xi", "atol_gamma"}

_VOIGT = elasticity.VOIGT
_DEBUG = False


def _family(pl, key, N, default=None, positive=False):
    """Per-family list (scalar broadcast) expanded to per-system values."""
    if key not in pl:
        if default is None:
            raise ValueError(f"phenopowerlaw: missing parameter {key!r}")
        v = np.full(len(N), float(default))
    else:
        v = np.atleast_1d(np.asarray(pl[key], dtype=float))
        if v.size == 1 and len(N) > 1:
            v = np.full(len(N), float(v[0]))
        if v.size != len(N):
            raise ValueError(f"phenopowerlaw: {key!r} needs {len(N)} values (one per family), got {v.size}")
    e = np.repeat(v, N)
    if not np.all(np.isfinite(e)):
        raise ValueError(f"phenopowerlaw: {key!r} must be finite")
    if positive and np.any(e <= 0):
        raise ValueError(f"phenopowerlaw: {key!r} must be > 0 for every active family")
    return e


@dataclasses.dataclass
class Phenopowerlaw:
    """Parsed phase: elasticity + phenopowerlaw parameters (numpy, per system).

    Build with :func:`from_phase`; move to torch with :meth:`to`.
    """

    lattice: str
    c_a: float | None
    C66: np.ndarray
    N_sl: list
    N_tw: list
    P_sl: np.ndarray          # (n_sl, 3, 3)
    P_tw: np.ndarray          # (n_tw, 3, 3)
    xi_0_sl: np.ndarray
    xi_inf_sl: np.ndarray
    h_0_sl_sl: np.ndarray
    dot_gamma_0_sl: np.ndarray
    n_sl: np.ndarray
    a_sl: np.ndarray
    c_1: np.ndarray
    c_2: np.ndarray
    f_sat_sl_tw: np.ndarray
    h_sl_sl: np.ndarray
    xi_0_tw: np.ndarray
    dot_gamma_0_tw: np.ndarray
    n_tw: np.ndarray
    h_0_tw_tw: np.ndarray
    c_3: np.ndarray
    c_4: np.ndarray
    gamma_char: np.ndarray
    h_tw_tw: np.ndarray
    h_0_tw_sl: np.ndarray
    h_sl_tw: np.ndarray
    h_tw_sl: np.ndarray

    @property
    def n_slip(self) -> int:
        return self.P_sl.shape[0]

    @property
    def n_twin(self) -> int:
        return self.P_tw.shape[0]

    @property
    def n_state(self) -> int:
        """State layout: xi_sl, xi_tw, gamma_sl, gamma_tw."""
        return 2 * (self.n_slip + self.n_twin)

    def initial_state(self) -> np.ndarray:
        return np.concatenate([self.xi_0_sl, self.xi_0_tw, np.zeros(self.n_slip + self.n_twin)])

    def to(self, device="cpu", dtype=torch.float64) -> "TorchLaw":
        return TorchLaw(self, device, dtype)


def from_phase(phase: dict[str, Any]) -> Phenopowerlaw:
    """Parse a DAMASK material.yaml phase entry (dict).

    Supported: lattice cF/cI/hP (+ c/a for hP), mechanical.elastic Hooke,
    mechanical.plastic phenopowerlaw (DAMASK 3.0 per-family parameters). Anything else
    (other plasticity types, eigenstrains, thermal/damage fields, non-Schmid terms, unknown
    keys) raises ValueError naming it.
    """
    if not isinstance(phase, dict):
        raise ValueError("phase must be a dict (one entry of material.yaml 'phase')")
    unknown = sorted(set(phase) - PHASE_KEYS)
    if unknown:
        raise ValueError(f"phase: unsupported keys {unknown} (supported: {sorted(PHASE_KEYS)})")
    lattice = phase.get("lattice")
    if lattice not in ("cF", "cI", "hP"):
        raise ValueError(f"phase: unsupported lattice {lattice!r} (cF, cI, hP)")
    c_a = phase.get("c/a")
    if lattice == "hP":
        if c_a is None:
            raise ValueError("phase: hP needs 'c/a'")
        c_a = float(c_a)
    mech = phase.get("mechanical")
    if not isinstance(mech, dict):
        raise ValueError("phase: missing 'mechanical'")
    unknown = sorted(set(mech) - MECH_KEYS)
    if unknown:
        raise ValueError(f"phase.mechanical: unsupported keys {unknown}")
    C66 = elasticity.stiffness_66(mech.get("elastic"), lattice)
    pl = mech.get("plastic")
    if not isinstance(pl, dict):
        raise ValueError("phase.mechanical: missing 'plastic'")
    if pl.get("type") != "phenopowerlaw":
        raise ValueError(f"unsupported plastic type {pl.get('type')!r}: only 'phenopowerlaw'")
    unknown = sorted(set(pl) - SLIP_KEYS - TWIN_KEYS - SLIPTWIN_KEYS - OTHER_KEYS)
    if unknown:
        raise ValueError(f"phenopowerlaw: unsupported keys {unknown}")

    N_sl = [int(n) for n in pl.get("N_sl", [])]
    N_tw = [int(n) for n in pl.get("N_tw", [])]
    data = lat.LATTICE_DATA[lattice]
    if sum(N_sl) == 0 and sum(N_tw) == 0:
        raise ValueError("phenopowerlaw: no active slip or twin system (N_sl, N_tw)")
    kw: dict[str, Any] = {}
    if sum(N_sl) > 0:
        lat._active(N_sl, data["nslip"], "N_sl", lattice)
        kw.update(
            P_sl=lat.schmid_slip(N_sl, lattice, c_a),
            dot_gamma_0_sl=_family(pl, "dot_gamma_0_sl", N_sl, positive=True),
            n_sl=_family(pl, "n_sl", N_sl, positive=True),
            a_sl=_family(pl, "a_sl", N_sl, positive=True),
            h_0_sl_sl=_family(pl, "h_0_sl-sl", N_sl),
            xi_0_sl=_family(pl, "xi_0_sl", N_sl, positive=True),
            xi_inf_sl=_family(pl, "xi_inf_sl", N_sl, positive=True),
            c_1=_family(pl, "c_1", N_sl, default=0.0),
            c_2=_family(pl, "c_2", N_sl, default=1.0),
            f_sat_sl_tw=_family(pl, "f_sat_sl-tw", N_sl, default=0.0),
            h_sl_sl=lat.interaction_slip_slip(N_sl, pl.get("h_sl-sl", []), lattice),
        )
    else:
        z = np.zeros(0)
        kw.update(P_sl=np.zeros((0, 3, 3)), dot_gamma_0_sl=z, n_sl=z, a_sl=z, h_0_sl_sl=z,
                  xi_0_sl=z, xi_inf_sl=z, c_1=z, c_2=z, f_sat_sl_tw=z, h_sl_sl=np.zeros((0, 0)))
    if sum(N_tw) > 0:
        lat._active(N_tw, data["ntwin"], "N_tw", lattice)
        kw.update(
            P_tw=lat.schmid_twin(N_tw, lattice, c_a),
            dot_gamma_0_tw=_family(pl, "dot_gamma_0_tw", N_tw, positive=True),
            n_tw=_family(pl, "n_tw", N_tw, positive=True),
            h_0_tw_tw=_family(pl, "h_0_tw-tw", N_tw),
            xi_0_tw=_family(pl, "xi_0_tw", N_tw, positive=True),
            c_3=_family(pl, "c_3", N_tw, default=1.0),
            c_4=_family(pl, "c_4", N_tw, default=0.0),
            gamma_char=lat.characteristic_shear_twin(N_tw, lattice, c_a),
            h_tw_tw=lat.interaction_twin_twin(N_tw, pl.get("h_tw-tw", []), lattice),
        )
    else:
        z = np.zeros(0)
        kw.update(P_tw=np.zeros((0, 3, 3)), dot_gamma_0_tw=z, n_tw=z, h_0_tw_tw=z, xi_0_tw=z,
                  c_3=z, c_4=z, gamma_char=z, h_tw_tw=np.zeros((0, 0)))
    ns, nt = kw["P_sl"].shape[0], kw["P_tw"].shape[0]
    if ns > 0 and nt > 0:
        kw.update(
            h_0_tw_sl=_family(pl, "h_0_tw-sl", N_tw),
            h_sl_tw=lat.interaction_slip_twin(N_sl, N_tw, pl.get("h_sl-tw", []), lattice),
            h_tw_sl=lat.interaction_twin_slip(N_tw, N_sl, pl.get("h_tw-sl", []), lattice),
        )
    else:
        kw.update(h_0_tw_sl=np.zeros(nt), h_sl_tw=np.zeros((ns, nt)), h_tw_sl=np.zeros((nt, ns)))
    return Phenopowerlaw(lattice=lattice, c_a=c_a, C66=C66, N_sl=N_sl, N_tw=N_tw, **kw)


def _voigt_vec(P: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6) with X : P = X_voigt . p for symmetric X."""
    out = np.stack([P[..., i, j] + (P[..., j, i] if i != j else 0.0) for i, j in _VOIGT], -1)
    return out


class TorchLaw:
    """Torch tensors of a :class:`Phenopowerlaw` and the vectorised constitutive update."""

    def __init__(self, law: Phenopowerlaw, device, dtype):
        self.law = law
        self.device, self.dtype = torch.device(device), dtype
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=float), device=self.device, dtype=dtype)  # noqa: E731
        self.ns, self.nt = law.n_slip, law.n_twin
        P = np.concatenate([law.P_sl, law.P_tw], 0)                     # (n, 3, 3)
        self.P = t(P)
        self.Pflat = t(P.reshape(-1, 9))                                  # (n, 9)
        self.pv = t(_voigt_vec(P))                                        # (n, 6): tau = S_v . pv
        self.C66 = t(law.C66)
        C = elasticity.C66_to_3333(law.C66)
        self.C3333 = t(C)
        Psym = 0.5 * (P + np.swapaxes(P, 1, 2))
        self.Q = t(np.einsum("ijkl,akl->aij", C, Psym))                  # (n, 3, 3) = C : sym(P)
        for name in ("dot_gamma_0_sl", "n_sl", "a_sl", "h_0_sl_sl", "xi_inf_sl", "c_1", "c_2",
                     "f_sat_sl_tw", "h_sl_sl", "dot_gamma_0_tw", "n_tw", "h_0_tw_tw", "c_3", "c_4",
                     "gamma_char", "h_tw_tw", "h_0_tw_sl", "h_sl_tw", "h_tw_sl"):
            setattr(self, name, t(getattr(law, name)))
        self.state0 = t(law.initial_state())
        for name in ("n_sl", "n_tw", "a_sl", "c_2", "c_3", "c_4"):
            v = np.asarray(getattr(law, name), dtype=float)
            if v.size and np.all(v == v.flat[0]):
                setattr(self, name, float(v.flat[0]))       # scalar exponent: faster pow
        self.eye = torch.eye(3, device=self.device, dtype=dtype)
        self.I9 = torch.eye(9, device=self.device, dtype=dtype)
        Qflat = np.einsum("ijkl,akl->aij", C, Psym).reshape(-1, 9)
        self.PQ = t(np.einsum("ai,aj->aij", P.reshape(-1, 9), Qflat).reshape(len(P), 81))

    # ------------------------------------------------------------------ elasticity
    def stress(self, Fe: torch.Tensor) -> torch.Tensor:
        """S (..., 3, 3) Pa from Fe (..., 3, 3): S = C : (Fe^T Fe - I)/2."""
        E = 0.5 * (Fe.transpose(-1, -2) @ Fe - self.eye)
        Ev = torch.stack([E[..., 0, 0], E[..., 1, 1], E[..., 2, 2],
                          2 * E[..., 1, 2], 2 * E[..., 0, 2], 2 * E[..., 0, 1]], -1)
        Sv = Ev @ self.C66.T
        S = torch.stack([Sv[..., 0], Sv[..., 5], Sv[..., 4],
                         Sv[..., 5], Sv[..., 1], Sv[..., 3],
                         Sv[..., 4], Sv[..., 3], Sv[..., 2]], -1)
        return S.reshape(Sv.shape[:-1] + (3, 3)), Sv

    # ------------------------------------------------------------------ kinetics
    def kinetics(self, Sv, state):
        """Shear rates (M, n) and d rate / d tau (M, n) of slip and twin systems."""
        ns, nt = self.ns, self.nt
        tau = Sv @ self.pv.T                                               # (M, n)
        xi = state[:, : ns + nt]
        rate = torch.zeros_like(tau)
        k = torch.zeros_like(tau)
        if ns:
            ts, xs = tau[:, :ns], xi[:, :ns]
            r = self.dot_gamma_0_sl * (ts.abs() / xs) ** self.n_sl
            rate[:, :ns] = torch.sign(ts) * r
            k[:, :ns] = torch.where(r > 0, self.n_sl * r / ts.abs().clamp_min(1e-300), torch.zeros_like(r))
        if nt:
            tt, xt = tau[:, ns:], xi[:, ns:]
            f = self.twin_fraction(state)
            pos = tt > 0
            r = (1.0 - f)[:, None] * self.dot_gamma_0_tw * (tt.clamp_min(0.0) / xt) ** self.n_tw
            r = torch.where(pos, r, torch.zeros_like(r))
            rate[:, ns:] = r
            k[:, ns:] = torch.where(pos & (r != 0), self.n_tw * r / tt.clamp_min(1e-300), torch.zeros_like(r))
        return rate, k

    def twin_fraction(self, state):
        ns, nt = self.ns, self.nt
        if nt == 0:
            return torch.zeros(state.shape[0], device=state.device, dtype=state.dtype)
        g_tw = state[:, 2 * ns + nt:]
        return (g_tw / self.gamma_char).sum(-1)

    def dot_state(self, rate, state):
        """(M, n_state) rate of xi_sl, xi_tw, gamma_sl, gamma_tw."""
        ns, nt = self.ns, self.nt
        out = torch.zeros_like(state)
        f = self.twin_fraction(state)
        r_sl = rate[:, :ns].abs()
        r_tw = rate[:, ns:]
        if ns:
            xi_sl = state[:, :ns]
            sat = self.xi_inf_sl + self.f_sat_sl_tw * f.clamp_min(0.0).sqrt()[:, None]
            x = 1.0 - xi_sl / sat
            left = torch.sign(x) * x.abs() ** self.a_sl
            d = self.h_0_sl_sl * (1.0 + self.c_1 * f[:, None] ** self.c_2) * left * (r_sl @ self.h_sl_sl.T)
            if nt:
                d = d + r_tw @ self.h_sl_tw.T
            out[:, :ns] = d
            out[:, ns + nt: 2 * ns + nt] = r_sl
        if nt:
            G = state[:, ns + nt: 2 * ns + nt].sum(-1)
            d = self.h_0_tw_tw * f[:, None] ** self.c_4 * (r_tw @ self.h_tw_tw.T)
            if ns:
                d = d + self.h_0_tw_sl * G[:, None] ** self.c_3 * (r_sl @ self.h_tw_sl.T)
            out[:, ns: ns + nt] = d
            out[:, 2 * ns + nt:] = r_tw
        return out

    # ------------------------------------------------------------------ L_p solve
    def _jacobian(self, B, CA, k, dt):
        """dR/dLp (M, 9, 9) = I + dt H kron(M, I), H = sum_a k_a vec(P_a) vec(Q_a)^T,
        M = B^T A^T A (row-major vec)."""
        Mm = B.transpose(-1, -2) @ CA
        H = (k @ self.PQ).reshape(-1, 9, 3, 3)                                   # [i, (k, l)]
        # (H kron(M, I))[i, (m, l)] = sum_k H[i, (k, l)] M[k, m]
        HM = torch.matmul(Mm.transpose(-1, -2)[:, None], H).reshape(-1, 9, 9)
        return self.I9 + dt * HM

    def _Lp_residual(self, A, state, Lp, dt):
        M = A.shape[0]
        B = self.eye - dt * Lp
        Fe = A @ B
        S, Sv = self.stress(Fe)
        rate, k = self.kinetics(Sv, state)
        Lpc = (rate @ self.Pflat).reshape(M, 3, 3)
        return B, Fe, S, Sv, rate, k, Lp - Lpc, Lpc

    def solve_Lp(self, A, state, Lp, dt, *, rtol=1e-8, atol=1e-11, max_iter=60):
        """Newton on L_p (fixed state) with DAMASK's residual L_p - L_p(S(F_e(L_p))) and its
        backtracking (halve the step while the residual norm does not decrease).

        Only points that have not converged are iterated. A = F F_p0^-1 (M, 3, 3).
        Returns Lp, S, Sv, Fe, rate, k (all at the returned Lp) and ok (M,) bool.
        """
        M = A.shape[0]
        dev, dty = A.device, A.dtype
        B, Fe, S, Sv, rate, k, R, Lpc = self._Lp_residual(A, state, Lp, dt)
        Lp = Lp.clone()
        out = [Fe, S, Sv, rate, k]                      # filled in for points as they converge
        ok = torch.zeros(M, dtype=torch.bool, device=dev)
        act = torch.arange(M, device=dev)
        a_A, a_st, a_Lp = A, state, Lp
        a_R, a_Lpc, a_k, a_B = R, Lpc, k, B
        a_out = out
        step = torch.ones(M, device=dev, dtype=dty)
        Lp_good = Lp.clone()
        res_good = torch.full((M,), float("inf"), device=dev, dtype=dty)
        delta = torch.zeros_like(Lp)
        first = True
        for it in range(max_iter):
            rn = a_R.flatten(1).norm(dim=-1)
            tol = torch.clamp(rtol * torch.maximum(a_Lp.flatten(1).norm(dim=-1), a_Lpc.flatten(1).norm(dim=-1)), min=atol)
            finite = torch.isfinite(rn)
            conv = (rn < tol) & finite
            last = it == max_iter - 1
            if bool(conv.any()) or last:
                sel = conv | last if last else conv
                ci = act[sel]
                ok[ci] = conv[sel]
                Lp[ci] = a_Lp[sel]
                if not first:
                    for o, ao in zip(out, a_out):
                        o[ci] = ao[sel]
            keep = ~conv
            if not bool(keep.any()) or last:
                break
            # compact to the points still iterating
            act, a_A, a_st, a_Lp = act[keep], a_A[keep], a_st[keep], a_Lp[keep]
            a_R, a_k, a_B, rn, finite = a_R[keep], a_k[keep], a_B[keep], rn[keep], finite[keep]
            step, Lp_good, res_good, delta = step[keep], Lp_good[keep], res_good[keep], delta[keep]
            m = act.numel()
            improved = finite & (rn < res_good)
            CA = a_A.transpose(-1, -2) @ a_A
            J = self._jacobian(a_B, CA, a_k, dt)
            sol, info = torch.linalg.solve_ex(J, a_R.reshape(m, 9, 1))
            new_delta = torch.where((info == 0)[:, None, None], -sol.reshape(m, 3, 3),
                                    torch.full_like(a_Lp, float("nan")))
            Lp_good = torch.where(improved[:, None, None], a_Lp, Lp_good)
            res_good = torch.where(improved, rn, res_good)
            delta = torch.where(improved[:, None, None], new_delta, delta)
            step = torch.where(improved, torch.ones_like(step), 0.5 * step)
            a_Lp = Lp_good + step[:, None, None] * delta
            a_B, a_Fe, a_S, a_Sv, a_rate, a_k, a_R, a_Lpc = self._Lp_residual(a_A, a_st, a_Lp, dt)
            a_out = [a_Fe, a_S, a_Sv, a_rate, a_k]
            if first:
                out = [o.clone() for o in out]
                first = False
        Fe, S, Sv, rate, k = out
        return Lp, S, Sv, Fe, rate, k, ok

    def update(self, F, invFp0, state0, Lp, state, dt, *, F0=None, tangent=False, rtol_state=1e-7,
               rtol_Lp=1e-8, max_state_iter=40, substeps=(4, 16)):
        """Implicit constitutive update of all points for one time step dt (s).

        Points whose update fails are integrated again in sub-steps (DAMASK's crystallite
        cutback): F interpolated linearly from F0 (F at t, required for this) to F in
        ``substeps[i]`` equal steps, each implicit as below.
        """
        out = self._update(F, invFp0, state0, Lp, state, dt, rtol_state=rtol_state, rtol_Lp=rtol_Lp,
                           max_state_iter=max_state_iter)
        bad = ~out["ok"]
        if F0 is not None and bool(bad.any()):
            for nsub in substeps:
                bi = torch.nonzero(bad).flatten()
                if bi.numel() == 0:
                    break
                iFp, st, lp = invFp0[bi], state0[bi], torch.zeros_like(Lp[bi])
                ok = torch.ones(bi.numel(), dtype=torch.bool, device=F.device)
                for j in range(1, nsub + 1):
                    Fj = F0[bi] + (F[bi] - F0[bi]) * (j / nsub)
                    o = self._update(Fj, iFp, st, lp, st, dt / nsub, rtol_state=rtol_state, rtol_Lp=rtol_Lp,
                                     max_state_iter=max_state_iter)
                    ok = ok & o["ok"]
                    iFp, st, lp = o["invFp"], o["state"], o["Lp"]
                good = ok
                if bool(good.any()):
                    gi = bi[good]
                    for key in ("P", "Lp", "state", "invFp", "S"):
                        out[key][gi] = o[key][good]
                    out["ok"][gi] = True
                bad = ~out["ok"]
        if tangent:
            out["K"] = self.tangent(F, invFp0, out["Lp"], out["state"], dt)
        return out

    def _update(self, F, invFp0, state0, Lp, state, dt, *, rtol_state=1e-7, rtol_Lp=1e-8, max_state_iter=40):
        """One implicit step for all points (see :meth:`update`).

        F, invFp0: (M, 3, 3) deformation gradient at t+dt and F_p^-1 at t; state0 (M, n_state)
        at t; Lp, state: initial guesses. L_p by Newton at fixed state, the state by DAMASK's
        fixed-point iteration state = state0 + dt dot_state(S, state), alternating until the
        state converges. Returns dict with P (M, 3, 3), K = dP/dF (M, 9, 9) (at frozen
        state; None if not tangent), Lp, state, invFp, S, ok (M,) bool.
        """
        A = F @ invFp0
        n = self.ns + self.nt
        Mtot = F.shape[0]
        atol_state = torch.cat([torch.full((n,), 1.0), torch.full((n,), 1e-9)]).to(device=F.device, dtype=F.dtype)
        Lp, state = Lp.clone(), state.clone()
        S = torch.empty_like(F)
        ok = torch.zeros(Mtot, dtype=torch.bool, device=F.device)
        conv = torch.zeros(Mtot, dtype=torch.bool, device=F.device)
        act = torch.arange(Mtot, device=F.device)
        a_A, a_s0, a_st, a_Lp = A, state0, state, Lp
        r_prev = g_prev = None
        for it in range(max_state_iter):
            a_Lp, a_S, _, _, a_rate, _, a_ok = self.solve_Lp(a_A, a_st, a_Lp, dt, rtol=rtol_Lp)
            g = a_s0 + dt * self.dot_state(a_rate, a_st)          # fixed-point map of the state
            r = g - a_st
            a_conv = (r.abs() <= torch.maximum(rtol_state * g.abs(), atol_state)).all(-1)
            # Anderson(1) acceleration of the fixed point (per point, scaled)
            new = g
            if r_prev is not None:
                w = 1.0 / torch.maximum(g.abs(), atol_state)
                dr = (r - r_prev) * w
                den = (dr * dr).sum(-1)
                theta = torch.where(den > 0, (r * w * dr).sum(-1) / torch.where(den > 0, den, torch.ones_like(den)),
                                    torch.zeros_like(den)).clamp(-0.9, 0.9)
                new = g - theta[:, None] * (g - g_prev)
            new = torch.where(a_conv[:, None], g, new)
            last = it == max_state_iter - 1
            # points whose state converged (or at the last iteration, all) are written back
            sel = torch.ones_like(a_conv) if last else a_conv
            gi = act[sel]
            Lp[gi], state[gi], S[gi] = a_Lp[sel], g[sel], a_S[sel]
            ok[gi], conv[gi] = a_ok[sel], a_conv[sel]
            keep = ~sel
            if not bool(keep.any()):
                break
            act, a_A, a_s0, a_st, a_Lp = act[keep], a_A[keep], a_s0[keep], new[keep], a_Lp[keep]
            r_prev, g_prev = r[keep], g[keep]
        ok_all = ok & conv & torch.isfinite(Lp).flatten(1).all(-1)
        B = self.eye - dt * Lp
        invFp = invFp0 @ B
        P = F @ invFp @ S @ invFp.transpose(-1, -2)
        # DAMASK stores F_p / det(F_p)^(1/3) ("regularize") after computing P with the raw F_p
        invFp_reg = invFp * torch.linalg.det(invFp)[:, None, None].abs().pow(-1.0 / 3.0)
        return dict(P=P, Lp=Lp, state=state, invFp=invFp_reg, S=S, ok=ok_all, K=None)

    def tangent(self, F, invFp0, Lp, state, dt):
        """dP/dF (M, 9, 9) at the converged L_p and state (state held fixed)."""
        A = F @ invFp0
        B = self.eye - dt * Lp
        Fe = A @ B
        S, Sv = self.stress(Fe)
        _, k = self.kinetics(Sv, state)
        invFp = invFp0 @ B
        return self._tangent(F, A, invFp0, invFp, B, Fe, S, k, dt)

    def tangent_full(self, F, invFp0, state0, Lp, state, dt):
        """dP/dF (M, 9, 9) (row: P_ij, col: F_kl) of the converged implicit update including
        the state's dependence on F (consistent tangent of the coupled L_p / state system).

        Unknowns x = (L_p, state), residual R(x, F) = (L_p - L_p(S, state),
        state - state0 - dt dot_state(S, state)); dx/dF = -(dR/dx)^-1 dR/dF by the implicit
        function theorem, derivatives by reverse-mode autograd (one pass per component).
        Points whose system is singular fall back to the frozen-state tangent.
        """
        M = F.shape[0]
        ns = state.shape[-1]
        with torch.enable_grad():
            Fv = F.detach().clone().requires_grad_(True)
            Lv = Lp.detach().clone().requires_grad_(True)
            sv = state.detach().clone().requires_grad_(True)
            A = Fv @ invFp0
            B = self.eye - dt * Lv
            S, Sv = self.stress(A @ B)
            rate, _ = self.kinetics(Sv, sv)
            R1 = (Lv - (rate @ self.Pflat).reshape(M, 3, 3)).reshape(M, 9)
            R2 = sv - state0 - dt * self.dot_state(rate, sv)
            invFp = invFp0 @ B
            P = (Fv @ invFp @ S @ invFp.transpose(-1, -2)).reshape(M, 9)
            outs = torch.cat([R1, R2, P], -1)                                   # (M, 18 + ns)
            n_out = outs.shape[-1]
            gF = torch.empty(M, n_out, 9, dtype=F.dtype, device=F.device)
            gL = torch.empty(M, n_out, 9, dtype=F.dtype, device=F.device)
            gs = torch.empty(M, n_out, ns, dtype=F.dtype, device=F.device)
            for c in range(n_out):
                a, b, d = torch.autograd.grad(outs[:, c].sum(), (Fv, Lv, sv), retain_graph=c < n_out - 1,
                                              allow_unused=True)
                gF[:, c] = a.reshape(M, 9) if a is not None else 0.0
                gL[:, c] = b.reshape(M, 9) if b is not None else 0.0
                gs[:, c] = d if d is not None else 0.0
        nx = 9 + ns
        Jx = torch.cat([gL[:, :nx], gs[:, :nx]], -1)                            # (M, nx, nx)
        JF = gF[:, :nx]                                                          # (M, nx, 9)
        # scale the state rows/cols to O(1) for a well-conditioned solve
        sc = torch.cat([torch.ones(M, 9, dtype=F.dtype, device=F.device),
                        state.abs().clamp_min(1e-6)], -1)                         # (M, nx)
        Jxs = Jx * sc[:, None, :]
        sol, info = torch.linalg.solve_ex(Jxs, JF)
        dx = -sol * sc[:, :, None]                                               # (M, nx, 9)
        K = gF[:, nx:] + gL[:, nx:] @ dx[:, :9]
        bad = (info != 0) | ~torch.isfinite(K).flatten(1).all(-1)
        if bool(bad.any()):
            K[bad] = self.tangent(F[bad], invFp0[bad], Lp[bad], state[bad], dt)
        return K.detach()

    def _tangent(self, F, A, invFp0, invFp, B, Fe, S, k, dt):
        """dP/dF (M, 9, 9) of the converged update at frozen state (row: P_ij, col: F_kl)."""
        M = F.shape[0]
        dev, dt_ = F.device, F.dtype
        E9 = torch.eye(9, device=dev, dtype=dt_).reshape(9, 3, 3)                  # basis dF
        # implicit dLp/dF: J dLp = sum_a k_a P_a (W_a : dF), W_a = Fe Q_a invFp^T
        CA = A.transpose(-1, -2) @ A
        J = self._jacobian(B, CA, k, dt)
        # rhs[i, (p, q)] = sum_a k_a P_a,i (Fe Q_a invFp^T)_pq = sum_kl H[i,(k,l)] Fe_pk invFp_ql
        H = (k @ self.PQ).reshape(M, 9, 3, 3)
        rhs = torch.einsum("nikl,npk,nql->nipq", H, Fe, invFp).reshape(M, 9, 9)
        dLp = torch.linalg.solve(J, rhs)                                             # (M, 9[Lp], 9[F])
        dLp = dLp.permute(0, 2, 1).reshape(M, 9, 3, 3)                              # (M, dir, 3, 3)
        dF = E9.expand(M, 9, 3, 3)
        dFe = dF @ invFp[:, None] - dt * A[:, None] @ dLp
        FeT = Fe.transpose(-1, -2)[:, None]
        dE = FeT @ dFe
        dE = 0.5 * (dE + dE.transpose(-1, -2))
        dS = torch.einsum("ijkl,mdkl->mdij", self.C3333, dE)
        dinvFp = -dt * invFp0[:, None] @ dLp
        Sref = invFp @ S @ invFp.transpose(-1, -2)
        Fi = F[:, None] @ invFp[:, None]
        dP = (dF @ Sref[:, None]
              + F[:, None] @ (dinvFp @ (S @ invFp.transpose(-1, -2))[:, None])
              + Fi @ dS @ invFp.transpose(-1, -2)[:, None]
              + Fi @ S[:, None] @ dinvFp.transpose(-1, -2))
        return dP.reshape(M, 9, 9).transpose(1, 2)                                   # (M, P_ij, F_kl)
