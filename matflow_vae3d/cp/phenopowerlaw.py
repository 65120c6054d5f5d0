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

from . import elasticity
from . import lattice as lat
from .materials import check_builtin_supported, validate_phase

_VOIGT = elasticity.VOIGT


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
    P_sl: np.ndarray  # (n_sl, 3, 3)
    P_tw: np.ndarray  # (n_tw, 3, 3)
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

    def to(self, device="cpu", dtype=torch.float64) -> TorchLaw:
        return TorchLaw(self, device, dtype)


def from_phase(phase: dict[str, Any]) -> Phenopowerlaw:
    """Parse a DAMASK material.yaml phase entry (dict).

    Supported: lattice cF/cI/hP (+ c/a for hP), mechanical.elastic Hooke,
    mechanical.plastic phenopowerlaw (DAMASK 3.0 per-family parameters). Anything else
    (other plasticity types, eigenstrains, thermal/damage fields, non-Schmid terms, unknown
    keys) raises ValueError naming it.
    """
    phase = validate_phase(phase)  # the one phase schema (cp/materials.py), mapping check included
    check_builtin_supported(phase)  # what this law models
    lattice = phase["lattice"]
    c_a = float(phase["c/a"]) if lattice == "hP" else None
    mech = phase["mechanical"]
    C66 = elasticity.stiffness_66(mech["elastic"], lattice)
    pl = mech["plastic"]

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
        kw.update(
            P_sl=np.zeros((0, 3, 3)),
            dot_gamma_0_sl=z,
            n_sl=z,
            a_sl=z,
            h_0_sl_sl=z,
            xi_0_sl=z,
            xi_inf_sl=z,
            c_1=z,
            c_2=z,
            f_sat_sl_tw=z,
            h_sl_sl=np.zeros((0, 0)),
        )
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
        kw.update(
            P_tw=np.zeros((0, 3, 3)),
            dot_gamma_0_tw=z,
            n_tw=z,
            h_0_tw_tw=z,
            xi_0_tw=z,
            c_3=z,
            c_4=z,
            gamma_char=z,
            h_tw_tw=np.zeros((0, 0)),
        )
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


def _kron(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """(M, 9, 9) matrix of Z -> X Z Y on row-major vec(Z), X, Y (M, 3, 3): [(i, j), (a, b)] =
    X_ia Y_bj."""
    return (X[:, :, None, :, None] * Y.transpose(-1, -2)[:, None, :, None, :]).reshape(X.shape[0], 9, 9)


def _pow(x: torch.Tensor, n) -> torch.Tensor:
    """x ** n; by repeated squaring for a scalar integer n in [1, 64] (x ** 20.0 costs 5
    multiplications, 5x faster than torch.pow on CPU, and exact to rounding)."""
    if isinstance(n, float) and n.is_integer() and 1 <= n <= 64:
        k, sq = int(n), x
        while not k & 1:  # the lowest set bit first, so that out starts as a tensor
            sq, k = sq * sq, k >> 1
        out, k = sq, k >> 1
        while k:
            sq = sq * sq
            if k & 1:
                out = out * sq
            k >>= 1
        return out
    return x**n


def _voigt_vec(P: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6) with X : P = X_voigt . p for symmetric X."""
    out = np.stack([P[..., i, j] + (P[..., j, i] if i != j else 0.0) for i, j in _VOIGT], -1)
    return out


class TorchLaw:
    """Torch tensors of a :class:`Phenopowerlaw` and the vectorised constitutive update."""

    #: local Newton globalisation (see :meth:`solve_Lp`): power-law cap at CAP_FACTOR |E_tr|
    #: of shear per step, largest change of any tau/xi per Newton step
    CAP_FACTOR = 10.0
    ETA = 0.2
    #: coupled update (:meth:`solve_Lp` with state0): the state iterates with the stress once
    #: |dL_p/dS G| < COUPLE_AT |L_p|
    COUPLE_AT = 1e-2
    #: points per chunk of :meth:`update` and :meth:`tangent` on the CPU: the local solve's
    #: temporaries (~20 kB per point) stay in cache and out of the peak memory (32^3 Mg:
    #: 20.8 -> 8.1 kB per voxel, no slower); CHUNK_GPU on a GPU (memory of 1,000-VE batches)
    CHUNK = 1 << 12
    CHUNK_GPU = 1 << 20
    #: :meth:`_update` solves L_p and the state together first (False: nested only)
    COUPLED = True
    COUPLED_MAX_ITER = 30

    def __init__(self, law: Phenopowerlaw, device, dtype):
        self.law = law
        self.device, self.dtype = torch.device(device), dtype
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=float), device=self.device, dtype=dtype)  # noqa: E731
        self.ns, self.nt = law.n_slip, law.n_twin
        P = np.concatenate([law.P_sl, law.P_tw], 0)  # (n, 3, 3)
        self.Pflat = t(P.reshape(-1, 9))  # (n, 9)
        self.pv = t(_voigt_vec(P))  # (n, 6): tau = S_v . pv
        self.C66 = t(law.C66)
        for name in (
            "dot_gamma_0_sl",
            "n_sl",
            "a_sl",
            "h_0_sl_sl",
            "xi_inf_sl",
            "c_1",
            "c_2",
            "f_sat_sl_tw",
            "h_sl_sl",
            "dot_gamma_0_tw",
            "n_tw",
            "h_0_tw_tw",
            "c_3",
            "c_4",
            "gamma_char",
            "h_tw_tw",
            "h_0_tw_sl",
            "h_sl_tw",
            "h_tw_sl",
        ):
            setattr(self, name, t(getattr(law, name)))
        self.state0 = t(law.initial_state())
        for name in ("n_sl", "n_tw", "a_sl", "c_2", "c_3", "c_4"):
            v = np.asarray(getattr(law, name), dtype=float)
            if v.size and np.all(v == v.flat[0]):
                setattr(self, name, float(v.flat[0]))  # scalar exponent: faster pow
        # per-system (slip then twin) reference rate and exponent for :meth:`kinetics`
        self.g0 = t(np.concatenate([law.dot_gamma_0_sl, law.dot_gamma_0_tw]))
        n_exp = np.concatenate([law.n_sl, law.n_tw])
        self.n_exp = float(n_exp[0]) if np.all(n_exp == n_exp[0]) else t(n_exp)
        self.eye = torch.eye(3, device=self.device, dtype=dtype)
        # V: vec(X) (row-major 3x3) -> Voigt vector X_11, X_22, X_33, X_23 + X_32, X_13 + X_31,
        # X_12 + X_21 (the engineering strain of sym(X), and S : X = S_v . voigt(X) for symmetric S)
        V = np.zeros((9, 6))
        for col, (i, j) in enumerate(_VOIGT):
            V[3 * i + j, col] = V[3 * j + i, col] = 1.0
        # stress as linear maps: Sv = vec(Fe^T Fe) @ _CE + _Sv0 (E = (Fe^T Fe - I)/2), S = Sv @ _V2M
        CE = 0.5 * V @ law.C66.T
        self._CE = t(CE)
        self._Sv0 = t(-np.eye(3).reshape(9) @ CE)
        self._V2M = t(V.T)
        self._VC = t(V @ law.C66.T)  # vec(X) -> C66 voigt(X)
        # Zv[(i, k), a, v]: voigt(M P_a) = vec(M) @ Zv[:, a] (M P_a)_ij = M_ik P_a,kj
        Zv = np.einsum("akj,ijv->ikav", P, V.reshape(3, 3, 6)).reshape(9, len(P), 6)
        self.Zv = t(Zv.reshape(9, -1))
        # _ZC[(x, a), (i, j)] = (C66 Zv[x, a])_i pv_a,j, so that
        # sum_a k_a C66 voigt(M P_a) pv_a^T = (vec(M) outer k) @ _ZC (the local Jacobian)
        self._ZC = t(np.einsum("iv,xav,aj->xaij", law.C66, Zv, _voigt_vec(P)).reshape(9 * len(P), 36))
        self._I6flat = t(np.eye(6).reshape(1, 36))
        # C66 voigt(P_a) (n, 6): the stress change per unit of plastic shear of system a, to
        # first order in the elastic strain (the state coupling of :meth:`solve_Lp`)
        self._pvC = t(_voigt_vec(P) @ law.C66.T)

    # ------------------------------------------------------------------ elasticity
    def stress(self, Fe: torch.Tensor):
        """S (..., 3, 3) Pa and its Voigt vector Sv (..., 6) from Fe (..., 3, 3):
        S = C : (Fe^T Fe - I)/2."""
        Sv = self.stress_voigt(Fe)
        return self.voigt_to_matrix(Sv), Sv

    def stress_voigt(self, Fe: torch.Tensor) -> torch.Tensor:
        """Sv (..., 6) Pa, Voigt order 11, 22, 33, 23, 13, 12, of S = C : (Fe^T Fe - I)/2."""
        C = (Fe.transpose(-1, -2) @ Fe).flatten(-2)
        return torch.addmm(self._Sv0, C.reshape(-1, 9), self._CE).reshape(C.shape[:-1] + (6,))

    @staticmethod
    def matrix_to_voigt(S: torch.Tensor) -> torch.Tensor:
        """Symmetric (..., 3, 3) -> (..., 6) Voigt vector, order 11, 22, 33, 23, 13, 12."""
        return torch.stack([S[..., i, j] for i, j in _VOIGT], -1)

    def voigt_to_matrix(self, Sv: torch.Tensor) -> torch.Tensor:
        """(..., 6) Voigt vector -> symmetric (..., 3, 3)."""
        return (Sv @ self._V2M).unflatten(-1, (3, 3))

    # ------------------------------------------------------------------ kinetics
    def kinetics(self, Sv, state, cap=None):
        """Shear rates (M, n) of the slip then twin systems, d rate / d tau (M, n), and
        (with ``cap``) which points (M,) have a system beyond its cap.

        gamma_dot = dot_gamma_0 x^n sign(tau), x = |tau|/xi (slip); (1 - f) dot_gamma_0 x^n
        for tau > 0, x = tau/xi, else 0 (twins). cap: None, or (x_c (M, n), g_c (M, 1)) from
        :meth:`rate_cap`, the ratios x above which
        the power law is continued by its tangent line (C1): a regularisation for the local
        Newton iterations only, where far above the flow stress the power law makes Newton
        converge linearly, by a factor (1 - 1/n) per step.
        """
        ns = self.ns
        tau, tau_eff, x = self.flow_ratio(Sv, state)
        xi = state[:, : self.ns + self.nt]
        pl = self.g0 * _pow(x, self.n_exp)
        over = None
        if cap is not None:
            cap, pl_c = cap  # pl_c = dot_gamma_0 x_c^n, the same for all systems
            beyond = x > cap
            pl = torch.where(beyond, pl_c * (1.0 + self.n_exp * (x / cap - 1.0)), pl)
            dpl = torch.where(beyond, self.n_exp * pl_c / (cap * xi), self.n_exp * pl / tau_eff.clamp_min(1e-300))
            over = beyond.any(-1)
        else:
            dpl = self.n_exp * pl / tau_eff.clamp_min(1e-300)
        dpl = torch.where(tau_eff > 0, dpl, torch.zeros_like(dpl))
        if self.nt:
            scale = torch.cat(
                [
                    torch.sign(tau[:, :ns]),
                    (1.0 - self.twin_fraction(state))[:, None].expand(-1, self.nt) * (tau[:, ns:] > 0),
                ],
                -1,
            )
            rate, k = scale * pl, scale.abs() * dpl
        else:
            rate, k = torch.sign(tau) * pl, dpl
        return rate, k, over

    def flow_ratio(self, Sv, state):
        """Resolved shear stress tau (M, n) of the slip then twin systems for the Voigt stress
        Sv (M, 6), the driving stress |tau| (slip) or max(tau, 0) (twins), and the ratio
        x = driving / xi to the current resistance (x ~ 1 at the flow stress)."""
        tau = Sv @ self.pv.T
        if self.nt:
            tau_eff = torch.cat([tau[:, : self.ns].abs(), tau[:, self.ns :].clamp_min(0.0)], -1)
        else:
            tau_eff = tau.abs()
        return tau, tau_eff, tau_eff / state[:, : self.ns + self.nt]

    def rate_cap(self, A, dt, factor=10.0):
        """(M, n) ratios |tau|/xi at which a system would shear by ``factor`` times the trial
        strain |E_tr| = |(A^T A - I)/2| in dt (no converged step comes near them), and that
        shear rate (M, 1) 1/s."""
        E = 0.5 * (A.transpose(-1, -2) @ A - self.eye)
        g = factor * E.flatten(1).norm(dim=-1).clamp_min(1e-12)[:, None] / dt  # (M, 1)
        return (g / self.g0) ** (1.0 / self.n_exp), g

    def twin_fraction(self, state):
        """(...,) twinned volume fraction f = sum_tw gamma_tw / gamma_char."""
        ns, nt = self.ns, self.nt
        if nt == 0:
            return torch.zeros(state.shape[:-1], device=state.device, dtype=state.dtype)
        return (state[..., 2 * ns + nt :] / self.gamma_char).sum(-1)

    def dot_state(self, rate, state):
        """(..., n_state) rate of xi_sl, xi_tw, gamma_sl, gamma_tw from the shear rates
        (..., n) and the state (..., n_state) (also for single points, as torch.func needs)."""
        ns, nt = self.ns, self.nt
        f = self.twin_fraction(state)[..., None]
        r_sl = rate[..., :ns].abs()
        r_tw = rate[..., ns:]
        parts = []
        if ns:
            xi_sl = state[..., :ns]
            sat = self.xi_inf_sl + self.f_sat_sl_tw * f.clamp_min(0.0).sqrt()
            x = 1.0 - xi_sl / sat
            left = torch.sign(x) * x.abs() ** self.a_sl
            d = self.h_0_sl_sl * (1.0 + self.c_1 * f**self.c_2) * left * (r_sl @ self.h_sl_sl.T)
            if nt:
                d = d + r_tw @ self.h_sl_tw.T
            parts.append(d)
        if nt:
            G = state[..., ns + nt : 2 * ns + nt].sum(-1, keepdim=True)
            d = self.h_0_tw_tw * f**self.c_4 * (r_tw @ self.h_tw_tw.T)
            if ns:
                d = d + self.h_0_tw_sl * G**self.c_3 * (r_sl @ self.h_tw_sl.T)
            parts.append(d)
        return torch.cat(parts + [r_sl, r_tw], -1)

    def dot_state_jacobian(self, rate, state):
        """d dot_state / d rate (M, n_state, n) and d dot_state / d state at fixed rates
        (M, n_state, n_state), analytic (see :meth:`dot_state`). Where f = 0, the derivative of
        sqrt(f) (f_sat_sl-tw) and of f^c with c < 1 is taken as 0 (f cannot decrease)."""
        ns, nt = self.ns, self.nt
        n = ns + nt
        M = rate.shape[0]
        dev, dty = rate.device, rate.dtype
        Dr = torch.zeros(M, 2 * n, n, device=dev, dtype=dty)
        Ds = torch.zeros(M, 2 * n, 2 * n, device=dev, dtype=dty)
        f = self.twin_fraction(state)[:, None]
        pos = f > 0

        def dpow(x, c):  # d x^c / dx, 0 where c = 0 or (x = 0 and c < 1)
            c = torch.as_tensor(c, device=dev, dtype=dty)
            return torch.where(
                (c == 0) | ((x <= 0) & (c < 1)), torch.zeros_like(x * c), c * x.clamp_min(1e-300) ** (c - 1.0)
            )

        sg = torch.sign(rate[:, :ns])
        r_sl = rate[:, :ns].abs()
        r_tw = rate[:, ns:]
        if ns:
            xi = state[:, :ns]
            sq = f.clamp_min(0.0).sqrt()
            sat = self.xi_inf_sl + self.f_sat_sl_tw * sq
            x = 1.0 - xi / sat
            left = torch.sign(x) * x.abs() ** self.a_sl
            dleft = self.a_sl * x.abs() ** (self.a_sl - 1.0)  # d left / d x
            A = self.h_0_sl_sl * (1.0 + self.c_1 * f**self.c_2)
            hsum = r_sl @ self.h_sl_sl.T
            Dr[:, :ns, :ns] = (A * left)[:, :, None] * self.h_sl_sl * sg[:, None, :]
            Ds[:, range(ns), range(ns)] = A * hsum * dleft * (-1.0 / sat)
            Dr[:, range(n, n + ns), range(ns)] = sg  # gamma_sl = |rate|
            if nt:
                Dr[:, :ns, ns:] = self.h_sl_tw
                # through f (gamma_tw): A(f) and sat(f)
                dsq = torch.where(pos, 0.5 / sq.clamp_min(1e-300), torch.zeros_like(sq))
                d_f = (
                    self.h_0_sl_sl * self.c_1 * dpow(f, self.c_2) * left * hsum
                    + A * hsum * dleft * xi / sat**2 * self.f_sat_sl_tw * dsq
                )  # (M, ns)
                Ds[:, :ns, 2 * ns + nt :] = d_f[:, :, None] / self.gamma_char
        if nt:
            htw = r_tw @ self.h_tw_tw.T
            Dr[:, ns:n, ns:] = (self.h_0_tw_tw * f**self.c_4)[:, :, None] * self.h_tw_tw
            Ds[:, ns:n, 2 * ns + nt :] = (self.h_0_tw_tw * dpow(f, self.c_4) * htw)[:, :, None] / self.gamma_char
            Dr[:, range(n + ns, 2 * n), range(ns, n)] = 1.0
            if ns:
                G = state[:, n : n + ns].sum(-1, keepdim=True)
                hts = r_sl @ self.h_tw_sl.T
                Dr[:, ns:n, :ns] = (self.h_0_tw_sl * G**self.c_3)[:, :, None] * self.h_tw_sl * sg[:, None, :]
                Ds[:, ns:n, n : n + ns] = (self.h_0_tw_sl * dpow(G, self.c_3) * hts)[:, :, None]
        return Dr, Ds

    # ------------------------------------------------------------------ L_p solve
    def _flow(self, A, state, Sv, dt, cap):
        """Plastic flow at the stress iterate Sv (M, 6): rates, L_p = sum gamma_dot_a P_a,
        B = I - dt L_p, F_e = A B and the stress S' (Voigt) that F_e gives."""
        M = A.shape[0]
        rate, k, over = self.kinetics(Sv, state, cap)
        Lp = (rate @ self.Pflat).reshape(M, 3, 3)
        B = self.eye - dt * Lp
        Fe = A @ B
        return dict(rate=rate, k=k, over=over, Lp=Lp, B=B, Fe=Fe, Sv2=self.stress_voigt(Fe))

    def _stress_jacobian(self, Mm, k, dt):
        """dG/dS (M, 6, 6) of the local residual G(S) = S - S(F_e(L_p(S))):
        I + dt sum_a k_a C66 voigt(M P_a) pv_a^T with M = B^T A^T A (M, 3, 3) and
        k = d rate / d tau (M, n); one GEMM."""
        m = Mm.shape[0]
        X = (Mm.reshape(m, 9, 1) * k[:, None, :]).reshape(m, -1)
        return torch.addmm(self._I6flat, X, self._ZC, alpha=dt).reshape(m, 6, 6)

    def solve_Lp(self, A, state, Lp, dt, *, rtol=1e-8, atol=1e-11, max_iter=60, state0=None, rtol_state=1e-7, S=None):
        """Implicit plastic flow at fixed state: L_p with DAMASK's residual
        R = L_p - L_p(S(F_e(L_p))) below rtol |L_p| (atol).

        Solved by Newton on the 2nd Piola-Kirchhoff stress (6 unknowns), residual
        G(S) = S - S(F_e(L_p(S))), whose solutions are DAMASK's (L_p = L_p(S)); R is
        measured as its linearisation dL_p/dS G. Newton on L_p itself (9 unknowns) converges
        slowly far above the flow stress: the skew part of L_p has almost no effect on S, so
        Newton sets it to the plastic spin of the overshooting trial stress. Globalisation:
        a guess far above the flow stress starts on the trial stress scaled down to the
        ratio tau/xi where one step would shear by |E_tr| (:meth:`rate_cap`); no Newton
        step changes any tau/xi by more than ``ETA`` (0.2); the step is halved while |G| does not
        decrease; the iterations use the power law capped (linearly continued) far above the
        flow stress, and a point counts as converged only below the cap (true law).
        Only points that have not converged are iterated. A = F F_p0^-1 (M, 3, 3); Lp:
        (M, 3, 3) initial guess. Returns Lp, S, Sv, Fe, rate, k (at the returned Lp) and ok (M,).

        state0 (M, n_state), the state at t: the state is solved together with L_p (the
        coupled update; ``state`` is then its initial guess). Once a point's stress is near
        its solution (|dL_p/dS G| < ``COUPLE_AT`` |L_p|, below the cap), every Newton step
        also takes the state's fixed-point step state = state0 + dt dot_state(rate, state)
        and corrects the stress step for it to first order; a point converges when L_p meets
        ``rtol`` and the state ``rtol_state`` at the same iterate (:meth:`_update`'s test).
        One Newton iteration per state iteration instead of a converged L_p solve per state
        iteration. Returns the same and the state (M, n_state); ok then means both converged.
        """
        M = A.shape[0]
        dev, dty = A.device, A.dtype
        n = self.ns + self.nt
        CA = A.transpose(-1, -2) @ A
        cap = self.rate_cap(A, dt, factor=self.CAP_FACTOR)
        # initial stress: the guess S (M, 3, 3), else the stress of the guessed L_p
        Sv = self.stress_voigt(A @ (self.eye - dt * Lp)) if S is None else self.matrix_to_voigt(S)
        x0 = self.flow_ratio(Sv, state)[2]
        far = (x0 > cap[0]).any(-1)
        if bool(far.any()):
            x_start = self.rate_cap(A, dt, factor=1.0)[0]
            sc = (x_start / x0.clamp_min(1e-300)).amin(-1).clamp(max=1.0)
            Sv = torch.where(far[:, None], Sv * sc[:, None], Sv)
        f = self._flow(A, state, Sv, dt, cap)
        keys = ("Lp", "Sv2", "Fe", "rate", "k")
        out = {key: f[key].clone() for key in keys}  # filled in as points converge
        ok = torch.zeros(M, dtype=torch.bool, device=dev)
        act = torch.arange(M, device=dev)
        a_A, a_CA, a_st, a_cap, a_Sv = A, CA, state, cap, Sv
        step = torch.ones(M, device=dev, dtype=dty)
        Sv_good = Sv.clone()
        res_good = torch.full((M,), float("inf"), device=dev, dtype=dty)
        delta = torch.zeros_like(Sv)
        coupled = state0 is not None
        if coupled:
            out["state"] = state.clone()
            a_s0, atol_state = state0, self._atol_state(dev, dty)
            n_near = torch.zeros(M, dtype=torch.long, device=dev)
            sres_prev = torch.full((M,), float("inf"), device=dev, dtype=dty)
        for it in range(max_iter):
            G = a_Sv - f["Sv2"]
            gn = G.norm(dim=-1)
            R = ((G @ self.pv.T) * f["k"]) @ self.Pflat  # dL_p/dS G (M, 9)
            rn = R.norm(dim=-1)
            Lpn = f["Lp"].flatten(1).norm(dim=-1)
            tol = torch.clamp(rtol * Lpn, min=atol)
            finite = torch.isfinite(rn) & torch.isfinite(gn)
            conv = (rn < tol) & finite & ~f["over"]
            if coupled:
                g = a_s0 + dt * self.dot_state(f["rate"], a_st)  # the state's fixed-point map
                sres = ((g - a_st).abs() / torch.maximum(rtol_state * g.abs(), atol_state)).amax(-1)
                conv = conv & (sres <= 1.0)
                near = finite & ~f["over"] & (rn < self.COUPLE_AT * Lpn.clamp_min(atol))
                # a state that does not contract by 2x per coupled step (fast hardening far
                # above the flow stress): the nested iteration (Anderson-accelerated) takes it
                n_near = torch.where(near, n_near + 1, n_near)
                stop = ~conv & (n_near >= 3) & ~(sres < 0.5 * sres_prev)
                sres_prev = torch.where(near, sres, torch.full_like(sres, float("inf")))
            if bool(conv.any()):
                # R linearises DAMASK's residual L_p - L_p(S(F_e(L_p))) at the iterate, which
                # a stress far from S(F_e(L_p)) in a flat part of the power law (a start below
                # the flow stress whose S(F_e) is above it) passes: check it exactly
                cand = torch.nonzero(conv).flatten()
                rate2 = self.kinetics(f["Sv2"][cand], a_st[cand])[0]
                exact = ((f["rate"][cand] - rate2) @ self.Pflat).norm(dim=-1) < tol[cand]
                conv[cand[~exact]] = False
            # points that leave the loop: converged, or (coupled) given up to the nested iteration
            done = conv | stop if coupled else conv
            last = it == max_iter - 1
            if bool(done.any()) or last:
                sel = done | last if last else done
                ci = act[sel]
                ok[ci] = conv[sel]
                for key in keys:
                    out[key][ci] = f[key][sel]
                if coupled:
                    out["state"][ci] = g[sel]
            keep = ~done
            if not bool(keep.any()) or last:
                break
            # compact to the points still iterating
            act, a_A, a_CA, a_st, a_Sv = act[keep], a_A[keep], a_CA[keep], a_st[keep], a_Sv[keep]
            a_cap = (a_cap[0][keep], a_cap[1][keep])
            f = {key: v[keep] for key, v in f.items()}
            G, gn, finite = G[keep], gn[keep], finite[keep]
            step, Sv_good, res_good, delta = step[keep], Sv_good[keep], res_good[keep], delta[keep]
            # converged on the capped law beyond the cap: go on with the true law
            lift = f["over"] & (gn <= 1e-6 * a_Sv.norm(dim=-1))
            improved = finite & (gn < res_good) & ~lift
            rhs = G
            if coupled:
                a_s0, g, near, n_near, sres_prev = a_s0[keep], g[keep], near[keep], n_near[keep], sres_prev[keep]
                if bool(near.any()):
                    # state step where the stress is near its solution, and the stress step
                    # for G at the new state: G + dt sum_a C66 voigt(P_a) d rate_a
                    new_st = torch.where(near[:, None], g, a_st)
                    d_rate = self._rate_change(f["rate"], a_st, new_st - a_st)
                    rhs = G + dt * (d_rate @ self._pvC)
                    a_st = new_st
                    improved = improved | near  # the residual moved with the state: no halving
            J = self._stress_jacobian(f["B"].transpose(-1, -2) @ a_CA, f["k"], dt)
            sol, info = torch.linalg.solve_ex(J, rhs[:, :, None])
            new_delta = torch.where((info == 0)[:, None], -sol[:, :, 0], torch.full_like(G, float("nan")))
            # no system's tau/xi changes by more than ETA in one step
            dx = ((new_delta @ self.pv.T).abs() / a_st[:, :n]).amax(-1)
            new_delta = new_delta * (self.ETA / dx.clamp_min(self.ETA))[:, None]
            Sv_good = torch.where(improved[:, None], a_Sv, Sv_good)
            res_good = torch.where(improved, gn, res_good)
            if coupled:  # a point whose state moved starts a new baseline at its next iterate
                res_good = torch.where(near, torch.full_like(res_good, float("inf")), res_good)
            delta = torch.where(improved[:, None], new_delta, delta)
            step = torch.where(improved, torch.ones_like(step), 0.5 * step)
            if bool(lift.any()):
                a_cap = tuple(torch.where(lift[:, None], torch.full_like(c, float("inf")), c) for c in a_cap)
                Sv_good = torch.where(lift[:, None], a_Sv, Sv_good)
                res_good = torch.where(lift, torch.full_like(res_good, float("inf")), res_good)
                delta = torch.where(lift[:, None], torch.zeros_like(delta), delta)
                step = torch.where(lift, torch.ones_like(step), step)
            a_Sv = Sv_good + step[:, None] * delta
            f = self._flow(a_A, a_st, a_Sv, dt, a_cap)
        Sv2 = out["Sv2"]
        res = (out["Lp"], self.voigt_to_matrix(Sv2), Sv2, out["Fe"], out["rate"], out["k"], ok)
        return res + (out["state"],) if coupled else res

    def _atol_state(self, device, dtype):
        """(n_state,) absolute tolerance of the state: 1 Pa on xi, 1e-9 on gamma."""
        n = self.ns + self.nt
        return torch.cat([torch.full((n,), 1.0), torch.full((n,), 1e-9)]).to(device=device, dtype=dtype)

    def _rate_change(self, rate, state, dstate):
        """(M, n) first-order change of the shear rates (M, n) at fixed stress for a change
        dstate (M, n_state) of the state: rate ~ xi^-n, twins also ~ (1 - f)."""
        n = self.ns + self.nt
        d = -self.n_exp * rate * dstate[:, :n] / state[:, :n]
        if self.nt:
            df = (dstate[:, 2 * self.ns + self.nt :] / self.gamma_char).sum(-1)
            f = self.twin_fraction(state)
            d = torch.cat(
                [d[:, : self.ns], d[:, self.ns :] - rate[:, self.ns :] * (df / (1.0 - f).clamp_min(1e-12))[:, None]], -1
            )
        return d

    @property
    def _chunk(self) -> int:
        return self.CHUNK if self.device.type == "cpu" else self.CHUNK_GPU

    def _in_chunks(self, fn, *arrays):
        """fn on consecutive chunks of CHUNK points of ``arrays`` (None passes through),
        the results (tensors, or dicts of tensors / None) written into one output each
        (allocated from the first chunk's, so that a result is never held twice)."""
        M = arrays[0].shape[0]
        out = None
        for i in range(0, M, self._chunk):
            part = fn(*(None if a is None else a[i : i + self._chunk] for a in arrays))
            d = part if isinstance(part, dict) else {"": part}
            if out is None:
                out = {k: (None if v is None else v.new_empty((M,) + v.shape[1:])) for k, v in d.items()}
            for k, v in d.items():
                if v is not None:
                    out[k][i : i + v.shape[0]] = v
        return out if isinstance(part, dict) else out[""]

    def update(
        self,
        F,
        invFp0,
        state0,
        Lp,
        state,
        dt,
        *,
        F0=None,
        S=None,
        tangent=False,
        rtol_state=1e-7,
        rtol_Lp=1e-8,
        max_state_iter=40,
        substeps=(4, 16),
    ):
        """Implicit constitutive update of all points for one time step dt (s).

        Lp, state (and S (M, 3, 3) Pa, optional): initial guesses; the local Newton starts
        on S where given (a converged stress of a nearby F is a much closer start than the
        stress of a nearby L_p under the power law's n = 20), else on the stress of Lp.

        Points whose update fails are integrated again in sub-steps (DAMASK's crystallite
        cutback): F interpolated linearly from F0 (F at t, required for this) to F in
        ``substeps[i]`` equal steps, each implicit as below. More than ``CHUNK`` points are
        updated in chunks (the points are independent; this bounds the memory of large
        batches, e.g. 1,000 VEs on a GPU).
        """
        if F.shape[0] > self._chunk:
            return self._in_chunks(
                lambda F, invFp0, state0, Lp, state, F0, S: self.update(
                    F,
                    invFp0,
                    state0,
                    Lp,
                    state,
                    dt,
                    F0=F0,
                    S=S,
                    tangent=tangent,
                    rtol_state=rtol_state,
                    rtol_Lp=rtol_Lp,
                    max_state_iter=max_state_iter,
                    substeps=substeps,
                ),
                F,
                invFp0,
                state0,
                Lp,
                state,
                F0,
                S,
            )
        out = self._update(
            F, invFp0, state0, Lp, state, dt, S=S, rtol_state=rtol_state, rtol_Lp=rtol_Lp, max_state_iter=max_state_iter
        )
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
                    o = self._update(
                        Fj,
                        iFp,
                        st,
                        lp,
                        st,
                        dt / nsub,
                        rtol_state=rtol_state,
                        rtol_Lp=rtol_Lp,
                        max_state_iter=max_state_iter,
                    )
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

    def _update(self, F, invFp0, state0, Lp, state, dt, *, S=None, rtol_state=1e-7, rtol_Lp=1e-8, max_state_iter=40):
        """One implicit step for all points (see :meth:`update`).

        F, invFp0: (M, 3, 3) deformation gradient at t+dt and F_p^-1 at t; state0 (M, n_state)
        at t; Lp, state: initial guesses. L_p at fixed state by :meth:`solve_Lp`, the state by
        DAMASK's fixed-point iteration state = state0 + dt dot_state(S, state) (Anderson(1)),
        alternating until the state converges. Returns dict with P (M, 3, 3), K = None (the
        tangent is :meth:`tangent`), Lp, state, invFp (regularised), S, ok (M,) bool.
        """
        A = F @ invFp0
        Mtot = F.shape[0]
        atol_state = self._atol_state(F.device, F.dtype)
        S_guess, Lp, state = S, Lp.clone(), state.clone()
        S = torch.empty_like(F)
        ok = torch.zeros(Mtot, dtype=torch.bool, device=F.device)
        conv = torch.zeros(Mtot, dtype=torch.bool, device=F.device)
        act = torch.arange(Mtot, device=F.device)
        if self.COUPLED:
            # L_p and state together; the points it does not converge take the nested iteration
            c_Lp, c_S, _, _, _, _, c_ok, c_st = self.solve_Lp(
                A,
                state,
                Lp,
                dt,
                rtol=rtol_Lp,
                state0=state0,
                rtol_state=rtol_state,
                max_iter=self.COUPLED_MAX_ITER,
                S=S_guess,
            )
            Lp[c_ok], state[c_ok], S[c_ok] = c_Lp[c_ok], c_st[c_ok], c_S[c_ok]
            ok[c_ok] = conv[c_ok] = True
            act = act[~c_ok]
        a_A, a_s0, a_st, a_Lp = A[act], state0[act], state[act], Lp[act]
        r_prev = g_prev = None
        for it in range(max_state_iter if len(act) else 0):
            a_Lp, a_S, _, _, a_rate, _, a_ok = self.solve_Lp(a_A, a_st, a_Lp, dt, rtol=rtol_Lp)
            g = a_s0 + dt * self.dot_state(a_rate, a_st)  # fixed-point map of the state
            r = g - a_st
            a_conv = (r.abs() <= torch.maximum(rtol_state * g.abs(), atol_state)).all(-1)
            # Anderson(1) acceleration of the fixed point (per point, scaled)
            new = g
            if r_prev is not None:
                w = 1.0 / torch.maximum(g.abs(), atol_state)
                dr = (r - r_prev) * w
                den = (dr * dr).sum(-1)
                theta = torch.where(
                    den > 0,
                    (r * w * dr).sum(-1) / torch.where(den > 0, den, torch.ones_like(den)),
                    torch.zeros_like(den),
                ).clamp(-0.9, 0.9)
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

    def tangent(self, F, invFp0, Lp, state, dt, state0=None, with_dS=False):
        """dP/dF (M, 9, 9) (row: P_ij, col: F_kl) of the converged implicit update.

        Differentiates the local equations of :meth:`solve_Lp`, G(S) = S - S(F_e(L_p(S))) = 0
        (implicit function theorem). state0 None: at frozen state (the L_p solve only);
        otherwise the consistent tangent of the coupled L_p / state system, with
        state = state0 + dt dot_state(S, state) among the unknowns. The frozen tangent makes
        Newton crawl on fast-hardening materials (Cu: h_0/xi_0 = 160), where the state
        changes as much as the stress within an increment. Evaluated in chunks of ``CHUNK``
        points. with_dS: return dict(K=K, dS=dS/dF (M, 6, 9), Voigt S per F_kl), the
        derivative that predicts the local solution at a nearby F (:meth:`update`'s S guess).
        """
        M = F.shape[0]
        if M > self._chunk:
            return self._in_chunks(
                lambda F, invFp0, Lp, state, state0: self.tangent(F, invFp0, Lp, state, dt, state0, with_dS),
                F,
                invFp0,
                Lp,
                state,
                state0,
            )
        n = self.ns + self.nt
        A = F @ invFp0
        B = self.eye - dt * Lp
        Fe = A @ B
        invFp = invFp0 @ B
        Sv = self.stress_voigt(Fe)
        S = self.voigt_to_matrix(Sv)
        rate, k, _ = self.kinetics(Sv, state)
        Mm = B.transpose(-1, -2) @ (A.transpose(-1, -2) @ A)
        J = self._stress_jacobian(Mm, k, dt)
        # d S(F_e)/dF at fixed L_p: C66 voigt(F_e^T dF F_p^-1), rows Voigt, cols F_kl
        Y = (Fe[:, :, None, :, None] * invFp[:, None, :, None, :]).reshape(M, 9, 9)  # [(k,l),(i,j)]
        dPhi = (Y @ self._VC).transpose(1, 2)  # (M, 6, 9)
        dr_dS = k[:, :, None] * self.pv  # (M, n, 6)
        if state0 is None:
            dS = torch.linalg.solve(J, dPhi)
            dr = dr_dS @ dS
        else:
            # unknowns (S, state); only the state that feeds back: xi, and with twins also gamma
            ns_ = n if self.nt == 0 else 2 * n
            dr_ds = self._rate_state_jacobian(rate, state)[:, :, :ns_]  # (M, n, ns_)
            Dr, Ds = self.dot_state_jacobian(rate, state)
            Dr, Ds = Dr[:, :ns_], Ds[:, :ns_, :ns_]
            EV = (Mm.reshape(M, 9) @ self.Zv).reshape(M, n, 6) @ self.C66.T  # C66 voigt(M P_a)
            sc = state[:, :ns_].abs().clamp_min(1e-6)  # O(1) state unknowns
            J12 = dt * (EV.transpose(1, 2) @ dr_ds) * sc[:, None, :]
            J21 = -dt * (Dr @ dr_dS) / sc[:, :, None]
            J22 = (
                torch.eye(ns_, device=F.device, dtype=F.dtype)
                - dt * (Ds + Dr @ dr_ds) * sc[:, None, :] / sc[:, :, None]
            )
            Jf = torch.cat([torch.cat([J, J12], -1), torch.cat([J21, J22], -1)], 1)
            rhs = torch.cat([dPhi, torch.zeros(M, ns_, 9, device=F.device, dtype=F.dtype)], 1)
            sol, info = torch.linalg.solve_ex(Jf, rhs)
            bad = (info != 0) | ~torch.isfinite(sol).flatten(1).all(-1)
            if bool(bad.any()):  # singular: frozen state there
                sol[bad] = torch.cat(
                    [
                        torch.linalg.solve(J[bad], dPhi[bad]),
                        torch.zeros(int(bad.sum()), ns_, 9, device=F.device, dtype=F.dtype),
                    ],
                    1,
                )
            dS = sol[:, :6]
            dr = dr_dS @ dS + dr_ds @ (sol[:, 6:] * sc[:, :, None])
        # P = F F_p^-1 S F_p^-T with F_p^-1 = F_p0^-1 (I - dt L_p), as 9x9 maps of vec(dF),
        # vec(dL_p) and vec(dS) (row-major vec: vec(X Z Y) = _kron(X, Y) vec(Z))
        dLp = self.Pflat.T @ dr  # (M, 9 L_p, 9 F)
        dLpT = dLp.reshape(M, 3, 3, 9).transpose(1, 2).reshape(M, 9, 9)  # d vec(L_p^T)
        dSv, dS = dS, self._V2M.T @ dS  # (M, 9 S, 9 F)
        SiT = S @ invFp.transpose(-1, -2)
        Fi = F @ invFp
        K = (
            _kron(self.eye.expand(M, 3, 3), invFp @ SiT)
            + _kron(Fi, invFp.transpose(-1, -2)) @ dS
            - dt * (_kron(A, SiT) @ dLp + _kron(Fi @ S, invFp0.transpose(-1, -2)) @ dLpT)
        )
        return dict(K=K, dS=dSv) if with_dS else K

    def _rate_state_jacobian(self, rate, state):
        """d rate / d state (M, n, n_state) at fixed stress: -n rate / xi on the diagonal of the
        xi block; twin rates through (1 - f), f = sum gamma_tw / gamma_char."""
        ns, nt = self.ns, self.nt
        n = ns + nt
        M = rate.shape[0]
        D = torch.zeros(M, n, 2 * n, device=rate.device, dtype=rate.dtype)
        D[:, range(n), range(n)] = -self.n_exp * rate / state[:, :n]
        if nt:
            f = self.twin_fraction(state)
            D[:, ns:, n + ns :] = (-rate[:, ns:] / (1.0 - f)[:, None].clamp_min(1e-12))[:, :, None] / self.gamma_char
        return D
