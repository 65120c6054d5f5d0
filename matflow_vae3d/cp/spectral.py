"""Full-field spectral (FFT) crystal-plasticity solver, batched over volume elements.

Solves what DAMASK_grid's ``spectral_basic`` solves - periodic mechanical equilibrium
div P = 0 on a regular grid, finite strain, mixed boundary conditions on the mean
deformation gradient / mean first Piola-Kirchhoff stress - with the same discretisation:
gradients are Fourier ("continuous") derivatives whose Nyquist component is set to zero
on even grids (DAMASK's ``xi1st``), and the same constitutive update per cell (see
:mod:`.phenopowerlaw`). The algorithm differs (DAMASK: fixed point on the Green operator
with a reference stiffness, accelerated by PETSc's NGMRES); here a Newton iteration on the
compatible deformation-gradient field with the algorithmic tangent, each linear step solved
by conjugate gradients on the Galerkin-projected problem (Zeman et al. 2017, de Geus et
al. 2017) with the mean stress components of the mixed boundary conditions as extra
unknowns. Both converge to the same discrete solution; tolerances here are tighter than
DAMASK's defaults (``eps_rel_div`` 5e-4, ``eps_rel_P`` 1e-3).

Entry point: :func:`solve`.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
from tqdm.auto import tqdm

from . import elasticity
from .loadcase import LoadCase
from .phenopowerlaw import from_phase
from .results import SimulationRecord

DEFAULT_NUMERICS = dict(
    tol_div=1e-4,  # rms of the non-equilibrated (compatible) part of P / |mean P|
    tol_div_abs=1.0,  # Pa, floor of the above
    tol_bc=1e-4,  # |mean P - P_aim| on stress components / max|mean P|
    tol_bc_abs=1.0,  # Pa
    max_iter=25,  # Newton iterations per (sub)increment
    max_cutback=3,  # halvings of the time step before a VE is declared failed
    cg_tol=1e-2,  # relative residual of each linear solve (inexact Newton: 1e-4 until 2026-12-08)
    cg_maxiter=300,
    rtol_Lp=1e-8,  # local Newton on L_p (DAMASK: 1e-6)
    rtol_state=1e-7,  # local state fixed point (DAMASK: 1e-6)
)
#: defaults that differ in float32 (its resolution, 1.2e-7, rules out the float64 tolerances)
#: Newton iterations in one increment after which the consistent (state-coupled) tangent
#: replaces the cheaper frozen-state one for the rest of the run
FULL_TANGENT_AFTER = 5
#: a Newton iteration that has not gained a factor STALL_RATIO on its residual (in units of the
#: tolerance) between its first and its STALL_ITERS-th step is given up for a cutback; after a
#: sub-step that converged within GROW_ITERS iterations, the next one is twice as long
STALL_ITERS = 6
STALL_RATIO = 0.1
GROW_ITERS = 6
#: first increment: elastic-predictor overshoot of the flow stress (tau/xi) above which it
#: starts on sub-steps (at most 2^-MAX_PRE_LEVEL of the step)
TRIAL_OVERSHOOT = 2.0
MAX_PRE_LEVEL = 6
FLOAT32_NUMERICS = dict(tol_div=1e-4, tol_bc=1e-4, tol_bc_abs=10.0, tol_div_abs=10.0)


_HEAP_KEPT = False
#: bytes: allocations below come from the (kept) heap, larger ones are mmap'ed
HEAP_MMAP_THRESHOLD = 4 << 20


def _keep_freed_memory():
    """On glibc, keep freed memory in the heap for reuse (no mmap/munmap of large blocks, no
    trimming): the solver allocates the same tens-of-MB temporaries every iteration, and
    fresh mmap'ed pages are zeroed on first touch. Measured on the 2-core CPU: Mg 32^3,
    4 increments, 25.3 -> 22.5 s (docs/cp_solver.md). Process-wide, once; freed memory then
    stays with the process until it exits."""
    global _HEAP_KEPT
    if _HEAP_KEPT or not sys.platform.startswith("linux"):
        return
    _HEAP_KEPT = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    # M_MMAP_THRESHOLD: blocks below it come from the heap; larger ones (64^3 fields of
    # the state, tangent) are mapped and unmapped, so that they do not fragment the heap
    mallopt(-3, HEAP_MMAP_THRESHOLD)
    mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD: do not give the heap top back


def _frequencies(cells, size, device, dtype):
    """xi (nx, ny, nz//2+1, 3) with DAMASK's Nyquist zeroing, and 1/|xi|^2 (0 where xi = 0)."""
    axes = []
    for d, (n, L) in enumerate(zip(cells, size)):
        k = np.fft.rfftfreq(n, 1.0 / n) if d == 2 else np.fft.fftfreq(n, 1.0 / n)
        k = np.where((n % 2 == 0) & (np.abs(k) == n // 2), 0.0, k)  # Nyquist component -> 0
        axes.append(2 * np.pi * k / L)
    X = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    n2 = (X**2).sum(-1)
    inv = np.where(n2 > 0, 1.0 / np.where(n2 > 0, n2, 1.0), 0.0)
    return (torch.as_tensor(X, device=device, dtype=dtype), torch.as_tensor(inv, device=device, dtype=dtype))


class _Projector:
    """Galerkin projection G onto compatible, zero-mean gradient fields:
    (G A)^_ij = A^_im xi_m xi_j / |xi|^2."""

    def __init__(self, cells, size, device, dtype):
        self.cells = tuple(int(c) for c in cells)
        self.xi, self.inv = _frequencies(self.cells, size, device, dtype)

    def __call__(self, A):  # A: (B, nx, ny, nz, 3, 3) real
        Ah = torch.fft.rfftn(A, dim=(1, 2, 3))
        v = torch.einsum("bxyzim,xyzm->bxyzi", Ah, self.xi.to(Ah.dtype)) * self.inv[..., None]
        out = v[..., :, None] * self.xi.to(Ah.dtype)[..., None, :]
        return torch.fft.irfftn(out, s=self.cells, dim=(1, 2, 3))


def _as_grain_map(material_maps) -> np.ndarray:
    m = material_maps.detach().cpu().numpy() if isinstance(material_maps, torch.Tensor) else np.asarray(material_maps)
    if m.ndim == 3:
        m = m[None]
    if m.ndim != 4:
        raise ValueError(f"material_maps must be (B, nx, ny, nz), got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.integer):
        if not np.all(np.isfinite(m)) or np.any(m != np.round(m)):
            raise ValueError("material_maps must hold integer grain indices")
        m = m.astype(np.int64)
    if m.min() < 0:
        raise ValueError("material_maps: negative grain index")
    return m


class _Batch:
    """State of a batch of VEs on one grid."""

    def __init__(self, law, maps, quats, size, device, dtype, numerics):
        self.law, self.num = law, numerics
        self.device, self.dtype = device, dtype
        B = maps.shape[0]
        self.B, self.cells = B, maps.shape[1:]
        self.N = int(np.prod(self.cells))
        R = []
        for b in range(B):
            q = np.asarray(quats[b], dtype=float)
            if q.ndim != 2 or q.shape[1] != 4:  # values: checked where made (simulate._prepare)
                raise ValueError(f"VE {b}: quaternions must be (n_grains, 4), got {q.shape}")
            if maps[b].max() >= len(q):
                raise ValueError(f"VE {b}: grain index {maps[b].max()} but only {len(q)} orientations")
            Rg = elasticity.quaternion_to_matrix(q)
            R.append(Rg[maps[b].reshape(-1)])
        ld = law.dtype  # local (constitutive) precision: always float64
        R = torch.as_tensor(np.stack(R), device=device, dtype=ld)  # (B, N, 3, 3)
        # F_p0 = R / det(R)^(1/3) = R  ->  F_p0^-1 = R^T
        self.invFp = R.transpose(-1, -2).reshape(B, *self.cells, 3, 3).contiguous()
        eye = torch.eye(3, device=device, dtype=dtype)
        self.F = eye.expand(B, *self.cells, 3, 3).clone()
        self.dF_last = torch.zeros_like(self.F)  # F(t) - F(t - dt_last)
        self.dt_last = torch.zeros(B, device=device, dtype=dtype)
        self.state = law.state0.expand(B, *self.cells, law.law.n_state).clone()
        # state(t) - state(t - dt_last), for the local first guess only: float32 (half the
        # memory of the largest field; the guess does not change the converged update)
        self.dstate_last = torch.zeros_like(self.state, dtype=torch.float32)
        self.Lp = torch.zeros_like(self.invFp)
        self.P = torch.zeros_like(self.F)
        self.G = _Projector(self.cells, size, device, dtype)
        self.full_tangent = False  # see increment()

    # ---------------------------------------------------------------- helpers
    def _mean(self, X):
        return X.mean(dim=(1, 2, 3))

    def _take(self, X, idx):
        """X[idx], a view (no copy: 64^3 states are 126 MB) when idx is every VE in order."""
        if len(idx) == self.B and bool((idx == torch.arange(self.B, device=idx.device)).all()):
            return X
        return X[idx]

    def _constitutive(self, idx, F, dt, guess=None, tangent=False, loose=False):
        """The local update of the VEs ``idx`` at F. ``guess`` (the previous call's result,
        whose fields it drops once read: memory at 64^3): initial L_p, state and S."""
        nb = len(idx)
        sh = (nb * self.N,)
        if guess is None:
            Lp0, st0, S0 = self._take(self.Lp, idx), self._take(self.state, idx), None
        else:
            Lp0, st0, S0 = guess.pop("Lp"), guess.pop("state"), guess.pop("S", None)
            if "dS" in guess:  # first order in F from where the tangent was taken
                dF = (F - guess.pop("F_tan")).float().flatten(-2)  # float32, as dS: a guess
                S0 = S0 + self.law.voigt_to_matrix((guess.pop("dS") @ dF[..., None])[..., 0].to(S0.dtype))
            guess.clear()
        out = self.law.update(
            F.reshape(*sh, 3, 3).to(self.law.dtype),
            self._take(self.invFp, idx).reshape(*sh, 3, 3),
            self._take(self.state, idx).reshape(*sh, -1),
            Lp0.reshape(*sh, 3, 3),
            st0.reshape(*sh, -1),
            dt,
            tangent=tangent,
            F0=self._take(self.F, idx).reshape(*sh, 3, 3).to(self.law.dtype),
            S=None if S0 is None else S0.reshape(*sh, 3, 3),
            rtol_state=max(self.num["rtol_state"], 1e-5) if loose else self.num["rtol_state"],
            rtol_Lp=max(self.num["rtol_Lp"], 1e-6) if loose else self.num["rtol_Lp"],
        )
        shp = (nb, *self.cells)
        res = {k: (v.reshape(*shp, *v.shape[1:]) if v is not None else None) for k, v in out.items()}
        res["P"] = res["P"].to(self.dtype)
        return res

    def _tangent(self, idx, F, dt, out, full: bool = False):
        """dP/dF (nb, cells, 9, 9) at the current local solution: at frozen state, or
        (``full``) the consistent tangent of the coupled L_p / state update."""
        nb = len(idx)
        sh = (nb * self.N,)
        state0 = self.state[idx].reshape(*sh, -1) if full else None
        res = self.law.tangent(
            F.reshape(*sh, 3, 3).to(self.law.dtype),
            self.invFp[idx].reshape(*sh, 3, 3),
            out["Lp"].reshape(*sh, 3, 3),
            out["state"].reshape(*sh, -1),
            dt,
            state0=state0,
            with_dS=True,
        )
        # dS/dF and where it was taken: the next local solve starts on S + dS/dF dF
        out["dS"], out["F_tan"] = res["dS"].reshape(nb, *self.cells, 6, 9).float(), F
        return res["K"].reshape(nb, *self.cells, 9, 9).to(self.dtype)

    def _cg(self, K, mask, b_field, b_mac):
        """Batched CG on [G K G, G K e; e^T K G, e^T K e]_mask for (field, masked mean)."""
        num = self.num
        m = mask.to(self.dtype)

        def op(X, y):
            T = torch.einsum("bxyzij,bxyzj->bxyzi", K, (X + y[:, None, None, None]).flatten(-2)).unflatten(-1, (3, 3))
            return self.G(T), m * self._mean(T)

        def dot(X1, y1, X2, y2):
            return (X1 * X2).sum(dim=(1, 2, 3, 4, 5)) / self.N + (y1 * y2).sum(dim=(1, 2))

        X = torch.zeros_like(b_field)
        y = torch.zeros_like(b_mac)
        rX, ry = b_field.clone(), b_mac.clone()
        pX, py = rX.clone(), ry.clone()
        rr = dot(rX, ry, rX, ry)
        rr0 = rr.clone()
        active = rr0 > 0
        it = 0
        for it in range(1, num["cg_maxiter"] + 1):  # noqa: B007 - the count is returned
            qX, qy = op(pX, py)
            pq = dot(pX, py, qX, qy)
            alpha = torch.where(
                active & (pq != 0), rr / torch.where(pq != 0, pq, torch.ones_like(pq)), torch.zeros_like(rr)
            )
            a5 = alpha[:, None, None, None, None, None]
            X = X + a5 * pX
            y = y + alpha[:, None, None] * py
            rX = rX - a5 * qX
            ry = ry - alpha[:, None, None] * qy
            rr_new = dot(rX, ry, rX, ry)
            active = active & (rr_new > (num["cg_tol"] ** 2) * rr0)
            if not bool(active.any()):
                break
            beta = torch.where(active, rr_new / torch.where(rr > 0, rr, torch.ones_like(rr)), torch.zeros_like(rr))
            pX = rX + beta[:, None, None, None, None, None] * pX
            py = ry + beta[:, None, None] * py
            rr = rr_new
        return X, y, it

    # ---------------------------------------------------------------- one (sub)increment
    def increment(self, idx, Fbar_aim, P_aim, mask, dt, give_up=False):
        """Solve one time step for the VEs ``idx`` (LongTensor). Commits the converged ones.

        Fbar_aim: (3, 3) target mean F on deformation-controlled components (t + dt);
        P_aim: (3, 3) Pa on stress components; mask: (3, 3) bool, True = stress-controlled.
        give_up: stop a VE early whose Newton iteration stagnates (after ``STALL_ITERS``
        iterations the residual, in units of the tolerance, is still above ``STALL_RATIO``
        times its value after the first iteration); set when a cutback is still possible.
        Returns (converged (nb,) bool, iterations (nb,) int, reason list).
        """
        num = self.num
        nb = len(idx)
        mask_t = torch.as_tensor(mask, device=self.device)
        Faim = torch.as_tensor(np.nan_to_num(Fbar_aim), device=self.device, dtype=self.dtype)
        Paim = torch.as_tensor(np.nan_to_num(P_aim), device=self.device, dtype=self.dtype)
        # predictor: extrapolate the last increment, then impose the prescribed mean components
        F = self.F[idx].clone()
        dl = self.dt_last[idx]
        scale = torch.where(dl > 0, dt / torch.where(dl > 0, dl, torch.ones_like(dl)), torch.zeros_like(dl))
        F = F + self.dF_last[idx] * scale[:, None, None, None, None, None]
        corr = torch.where(mask_t, torch.zeros_like(Faim), Faim - self._mean(F))
        F = F + corr[:, None, None, None]
        conv = torch.zeros(nb, dtype=torch.bool, device=self.device)
        failed = torch.zeros(nb, dtype=torch.bool, device=self.device)
        iters = torch.zeros(nb, dtype=torch.long, device=self.device)
        reasons = [""] * nb
        # local initial guess: L_p of the last increment, the state extrapolated along it
        # the local solve starts on the stress of the last increment's L_p (the converged
        # stress, also moved to the extrapolated F by the last tangent's dS/dF, was a worse
        # start: Mg 16^3 5.36 -> 5.69 flow evaluations per point and update, Cu 5.67 -> 6.38)
        out = dict(Lp=self.Lp[idx], state=self.state[idx] + self.dstate_last[idx] * scale[:, None, None, None, None])
        res_base = None
        rho1 = torch.full((nb,), float("inf"), device=self.device, dtype=self.dtype)
        stalled = torch.zeros(nb, dtype=torch.bool, device=self.device)
        loose = True  # inexact local solves while far from equilibrium (inexact Newton)
        for _ in range(2 * num["max_iter"] + 2):
            out = self._constitutive(idx, F, dt, guess=out, loose=loose)
            P = out["P"]
            Pbar = self._mean(P)
            rG = self.G(P)
            err_div = rG.pow(2).sum(dim=(4, 5)).mean(dim=(1, 2, 3)).sqrt()
            scale = Pbar.flatten(1).norm(dim=-1)
            err_bc = torch.where(mask_t, (Pbar - Paim).abs(), torch.zeros_like(Pbar)).flatten(1).amax(-1)
            local_ok = out["ok"].flatten(1).all(-1)
            finite = torch.isfinite(err_div) & torch.isfinite(err_bc) & torch.isfinite(F).flatten(1).all(-1)
            tol_div = torch.clamp(num["tol_div"] * scale, min=num["tol_div_abs"])
            tol_bc = torch.clamp(num["tol_bc"] * Pbar.abs().flatten(1).amax(-1), min=num["tol_bc_abs"])
            now = (err_div <= tol_div) & (err_bc <= tol_bc) & local_ok & finite
            if loose and bool((now & ~conv).any()):
                loose = False  # re-evaluate with tight local tolerances, then decide
                continue
            newly_bad = ~finite & ~failed & ~conv
            for j in torch.nonzero(newly_bad).flatten().tolist():
                reasons[j] = "NaN/inf in the stress field"
            failed = failed | newly_bad
            conv = conv | (now & ~failed)
            rho = torch.maximum(err_div / tol_div, err_bc / tol_bc)  # distance in tolerances
            rho1 = torch.where(iters == 1, rho, rho1)
            if give_up:
                stuck = ~conv & ~failed & ~stalled & (iters >= STALL_ITERS) & ~(rho <= STALL_RATIO * rho1)
                for j in torch.nonzero(stuck).flatten().tolist():
                    reasons[j] = f"stagnating after {int(iters[j])} iterations"
                stalled = stalled | stuck
            if bool((conv | failed | stalled).all()) or int(iters.max()) >= num["max_iter"]:
                break
            todo = ~conv & ~failed & ~stalled
            loose = bool((err_div[todo] > 1e3 * num["tol_div"] * scale[todo]).all())
            iters = iters + todo.long()
            # globalisation: halve the Newton step while the residual grows (the tangent
            # holds the state fixed, which can overshoot for fast-hardening materials)
            res = err_div + err_bc
            if res_base is None:
                res_base = torch.full_like(res, float("inf"))
                step = torch.ones_like(res)
                F_base, upd = F.clone(), torch.zeros_like(F)
            back = todo & ((res > res_base) | ~torch.isfinite(res)) & (step > 1.0 / 64)
            take = todo & ~back
            if bool(back.any()):
                step = torch.where(back, 0.5 * step, step)
            if bool(take.any()):
                b_field = -rG
                b_mac = -torch.where(mask_t, Pbar - Paim, torch.zeros_like(Pbar))
                # the consistent tangent, once an increment needs it, for the rest of the run:
                # Cu converges in half the iterations with it (29 vs 45 s on the reference VE),
                # while an Mg load path that changes direction pays about 2x per iteration
                # after the change (docs/load_paths.md)
                if int(iters.max()) > FULL_TANGENT_AFTER:
                    self.full_tangent = True
                K = self._tangent(idx, F, dt, out, full=self.full_tangent)
                X, y, _ = self._cg(K, mask_t, b_field, b_mac)
                del K  # 170 MB at 64^3: not held through the next local update
                t6 = take[:, None, None, None, None, None]
                F_base = torch.where(t6, F, F_base)
                upd = torch.where(t6, X + y[:, None, None, None], upd)
                res_base = torch.where(take, res, res_base)
                step = torch.where(take, torch.ones_like(step), step)
            F = torch.where(
                todo[:, None, None, None, None, None], F_base + step[:, None, None, None, None, None] * upd, F
            )
        for j in torch.nonzero(~conv & ~failed & ~stalled).flatten().tolist():
            reasons[j] = f"no convergence in {num['max_iter']} iterations"
        # commit converged VEs
        ci = torch.nonzero(conv).flatten()
        if len(ci):
            g = idx[ci]
            self.dF_last[g] = F[ci] - self.F[g]
            self.dstate_last[g] = (out["state"][ci] - self.state[g]).float()
            self.dt_last[g] = dt
            self.F[g] = F[ci]
            self.invFp[g] = out["invFp"][ci]
            self.state[g] = out["state"][ci]
            self.Lp[g] = out["Lp"][ci]
            self.P[g] = out["P"][ci]
        return conv, iters, reasons

    def trial_overshoot(self, Fbar):
        """(B,) the largest tau/xi of any system in any cell if each VE took the mean
        deformation gradient ``Fbar`` (3, 3) homogeneously and elastically from its current
        plastic state: how far an elastic predictor overshoots the flow stress."""
        sh = (self.B * self.N,)
        Fb = torch.as_tensor(Fbar, device=self.device, dtype=self.law.dtype)
        Sv = self.law.stress_voigt(Fb @ self.invFp.reshape(*sh, 3, 3))
        x = self.law.flow_ratio(Sv, self.state.reshape(*sh, -1))[2]
        return x.reshape(self.B, -1).amax(-1).cpu().numpy()

    def record(self):
        F, P = self.F.double(), self.P.double()
        Fbar, Pbar = self._mean(F), self._mean(P)
        sigma = P @ F.transpose(-1, -2) / torch.linalg.det(F)[..., None, None]
        return (Fbar.cpu().numpy(), Pbar.cpu().numpy(), self._mean(sigma).cpu().numpy())


def _fit_level(level, left):
    """The sub-step level (dt / 2^level) nearest ``level`` whose sub-step fits in ``left``
    (a Fraction of dt that is a multiple of the sub-steps taken so far)."""
    level = max(int(level), 0)
    while Fraction(1, 2**level) > left:
        level += 1
    return level


def _step_targets(step, Fbar_start, t_in_step):
    """Mean-F targets on deformation components at time t_in_step within the step."""
    mask_F = ~np.isnan(step.deformation)
    if step.deformation_kind == "dot_F":
        target = Fbar_start + np.nan_to_num(step.deformation) * t_in_step
    else:
        target = Fbar_start + (np.nan_to_num(step.deformation) - Fbar_start) * (t_in_step / step.t)
    return np.where(mask_F, target, np.nan)


def solve(
    material_maps,
    quaternions: Sequence,
    phase: dict,
    load: LoadCase,
    *,
    device="cpu",
    dtype=torch.float64,
    progress=False,
    size=(1.0, 1.0, 1.0),
    **numerics,
) -> list[SimulationRecord]:
    """Run the load case on a batch of VEs of one grid.

    material_maps: (B, nx, ny, nz) int, 0-based grain index per cell, indexed [ix, iy, iz].
    quaternions: sequence of B arrays (G_b, 4), (w, x, y, z), DAMASK convention, unit
        quaternions (the simulate functions check them with
        :func:`~matflow_vae3d.cp.materials.check_quaternions`; not re-checked here).
    phase: DAMASK material.yaml phase entry (Hooke + phenopowerlaw).
    load: :class:`~matflow_vae3d.cp.loadcase.LoadCase`.
    progress: True for a bar of increments, or a callable ``progress(done, n_increments)``
        called after each increment of the batch (``vae3d simulate`` moves its VE bar with it).
    numerics: overrides of ``DEFAULT_NUMERICS``.
    Returns one :class:`~matflow_vae3d.cp.results.SimulationRecord` per VE (ve_id None,
    wall_s the batch's): a state per increment, t = ``load.times()``; a VE that fails
    keeps its states up to the last converged increment (NaN after) and the others go
    on. ``f_out`` of the load steps does not thin the states (DAMASK's output option).
    """
    t_start = time.perf_counter()
    unknown = set(numerics) - set(DEFAULT_NUMERICS)
    if unknown:
        raise ValueError(f"unknown numerics {sorted(unknown)}; known: {sorted(DEFAULT_NUMERICS)}")
    num = {**DEFAULT_NUMERICS, **(FLOAT32_NUMERICS if dtype == torch.float32 else {}), **numerics}
    if not isinstance(load, LoadCase):
        raise ValueError("load must be a matflow_vae3d.cp.loadcase.LoadCase")
    maps = _as_grain_map(material_maps)
    if len(quaternions) != maps.shape[0]:
        raise ValueError(f"{maps.shape[0]} material maps but {len(quaternions)} orientation sets")
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    # float32 applies to the fields (FFT, Krylov); the constitutive update stays in float64:
    # E = (F_e^T F_e - I)/2 loses ~4 digits to cancellation and n = 20 amplifies the rest
    law = from_phase(phase).to(device, torch.float64)
    if torch.device(device).type == "cpu":
        _keep_freed_memory()
    batch = _Batch(law, maps, quaternions, size, torch.device(device), dtype, num)
    states = _States(batch.B, load.n_increments, batch.record())
    sched = _Schedule(batch.B, num["max_cutback"])
    report = progress if callable(progress) else None
    bar = tqdm(total=load.n_increments, disable=not progress or report is not None, desc="CP increments", leave=False)
    inc = 0
    for step in load.steps:
        Fbar_start = batch._mean(batch.F).cpu().numpy()  # (B, 3, 3)
        dt = step.t / step.N
        if inc == 0:
            sched.first_increment(batch, step, dt)
        for k in range(step.N):
            inc += 1
            its = _increment(batch, step, k, dt, Fbar_start, states, sched, inc)
            states.commit(inc, its, batch.record())
            bar.update(1)
            if report is not None:
                report(inc, load.n_increments)
            if not states.alive.any():
                break
        if not states.alive.any():
            break
    bar.close()
    return states.records(load, time.perf_counter() - t_start)


class _States:
    """Per-VE volume averages of a run, one state per increment (state 0 unloaded; NaN
    after a VE's last converged increment), its iterations and why it stopped."""

    def __init__(self, B: int, n_increments: int, first) -> None:
        self.F, self.P, self.S = (np.full((B, n_increments + 1, 3, 3), np.nan) for _ in range(3))
        self.F[:, 0], self.P[:, 0], self.S[:, 0] = first
        self.alive = np.ones(B, dtype=bool)
        self.reason = [""] * B
        self.n_conv = np.zeros(B, dtype=int)
        self.iters: list[list[int]] = [[] for _ in range(B)]

    def fail(self, b: int, why: str) -> None:
        self.alive[b] = False
        self.reason[b] = why

    def commit(self, inc: int, its: dict[int, int], averages) -> None:
        """Store increment ``inc``'s averages (F, P, sigma: (B, 3, 3)) of the VEs still alive."""
        Fr, Pr, Sr = averages
        for b in np.nonzero(self.alive)[0]:
            self.n_conv[b] += 1
            self.iters[b].append(its[int(b)])
            self.F[b, inc], self.P[b, inc], self.S[b, inc] = Fr[b], Pr[b], Sr[b]

    def records(self, load: LoadCase, wall_s: float) -> list[SimulationRecord]:
        return [
            SimulationRecord.from_states(
                load,
                converged=bool(self.alive[b]),
                reason=self.reason[b],
                F=self.F[b],
                P=self.P[b],
                sigma=self.S[b],
                n_converged=int(self.n_conv[b]),
                iterations=np.asarray(self.iters[b], dtype=int),
                wall_s=wall_s,
            )
            for b in range(len(self.alive))
        ]


class _Schedule:
    """Sub-step levels (sub-step = dt / 2^level) per VE.

    ``start``: the level a VE starts its next increment on; ``free``: levels that do not
    count as cutbacks (the first increment's up-front sub-steps, until the VE has
    converged on a longer step); ``max_cutback`` halvings are allowed below them.
    """

    def __init__(self, B: int, max_cutback: int) -> None:
        self.start = np.zeros(B, dtype=int)
        self.free = np.zeros(B, dtype=int)
        self.max_cutback = int(max_cutback)

    def first_increment(self, batch: _Batch, step, dt: float) -> None:
        """Nothing to extrapolate from: where the elastic predictor overshoots the flow
        stress by more than TRIAL_OVERSHOOT (Cu preset: 16x at dt = 0.5 s), start on
        sub-steps that overshoot by about that much; cutbacks come on top."""
        Ftr = np.where(step.stress_mask, np.eye(3), np.nan_to_num(_step_targets(step, np.eye(3), dt)))
        x = batch.trial_overshoot(Ftr)
        self.free = np.clip(np.ceil(np.log2(np.maximum(x, 1e-300) / TRIAL_OVERSHOOT)), 0, MAX_PRE_LEVEL).astype(int)
        self.start = self.free.copy()

    def may_cut_back(self, b: int, level: int) -> bool:
        return level < self.max_cutback + int(self.free[b])

    def converged(self, b: int, level: int, iterations: int) -> None:
        """A sub-step converged: a quick one doubles the next (within this increment and
        into the next, so a cutback at the onset of plasticity does not slow the rest)."""
        self.free[b] = min(self.free[b], level)
        self.start[b] = level - 1 if (level > 0 and iterations <= GROW_ITERS) else level


def _increment(batch: _Batch, step, k: int, dt: float, Fbar_start, states: _States, sched: _Schedule, inc: int):
    """Take the VEs still alive through increment k of ``step`` on sub-steps; a VE that
    fails is cut back (level + 1) until it may not, then marked failed in ``states``.
    VEs on the same level and progress are solved together. Returns the Newton
    iterations per VE (summed over its sub-steps)."""
    todo = [int(b) for b in np.nonzero(states.alive)[0]]
    done = {b: Fraction(0) for b in todo}  # fraction of dt done
    level = {b: int(sched.start[b]) for b in todo}
    it_sum = {b: 0 for b in todo}
    pending = todo
    while pending:
        groups: dict[tuple, list[int]] = {}
        for b in pending:
            groups.setdefault((level[b], done[b]), []).append(b)
        pending = []
        for (lev, fr), group in groups.items():
            ddt = dt / 2**lev
            members = np.array(group)
            # deformation targets are the same for every VE (they share the load): the first's
            Faim = _step_targets(step, Fbar_start[members[0]], k * dt + float(fr) * dt + ddt)
            give_up = lev < sched.max_cutback + int(sched.free[members].min())
            conv, its, why = batch.increment(
                torch.as_tensor(members, device=batch.device), Faim, step.stress, step.stress_mask, ddt, give_up=give_up
            )
            for j, b in enumerate(group):
                it_sum[b] += int(its[j])
                if bool(conv[j]):
                    done[b] = fr + Fraction(1, 2**lev)
                    sched.converged(b, lev, int(its[j]))
                    if done[b] < 1:
                        level[b] = _fit_level(sched.start[b], 1 - done[b])
                        pending.append(b)
                elif sched.may_cut_back(b, lev):
                    level[b] = lev + 1
                    pending.append(b)
                else:
                    states.fail(b, f"increment {inc}: {why[j]} (after {lev - sched.free[b]} cutbacks)")
    return it_sum
