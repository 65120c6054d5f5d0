"""Figure of the embedded CP solver's physics checks (tests/test_cp_solver.py).

One panel per check, computed with the tests' own helpers (imported from
tests/test_cp_solver.py) on the tests' microstructures, orientations and load cases, with
more samples where a test takes one:

    (a) elastic single crystal: P_xx / strain of a 2^3 one-grain VE vs the analytic
        constrained modulus 1/inv(C'[:3, :3])[0, 0], Mg and Cu, random orientations
    (b) elastic 8^3 Voronoi Mg polycrystals (12 grains): modulus vs Voigt and Reuss bounds
    (c) one-grain Mg VE vs homogeneous material-point integration (same mixed BCs)
    (d) Schmid law: Cu single crystal in single slip ([124]), no hardening, n = 100
    (e) crystal symmetry: 6^3 Mg VE and the same VE rotated by a 6-fold rotation about c
    (f) grid refinement: the 4^3 microstructure upsampled to 4, 8, 12, 16^3

Usage:
    python benchmarks/cp_physics_figure.py               # writes docs/figures/cp_physics_checks.png
    python benchmarks/cp_physics_figure.py --out /tmp/checks.png --orientations 6 --ves 3
Prints a table of the plotted numbers and the runtime (1 torch thread, CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_cp_solver import (  # noqa: E402
    _point_uniaxial,
    cu_phase,
    elastic_only,
    mg_phase,
    random_quats,
    short_uniaxial,
    voronoi_map,
)

from matflow_vae3d.cp import elasticity, lattice  # noqa: E402
from matflow_vae3d.cp.loadcase import LoadCase, LoadStep  # noqa: E402
from matflow_vae3d.cp.phenopowerlaw import from_phase  # noqa: E402
from matflow_vae3d.cp.spectral import solve  # noqa: E402

OUT = ROOT / "docs" / "figures" / "cp_physics_checks.png"


def _strain_pct(res):
    return (res.F[:, 0, 0] - 1) * 100


def _check(res, what):
    if not res.converged:
        raise SystemExit(f"{what}: not converged ({res.reason})")


def elastic_single_crystal(n_orient):
    """(a) as test_elastic_single_crystal_matches_analytic_modulus, n_orient orientations
    (random_quats(n, 3): the test's orientation is the first one)."""
    strain = 1e-5
    out = {}
    for name, phase_fn in (("Mg", mg_phase), ("Cu", cu_phase)):
        phase = elastic_only(phase_fn())
        q = random_quats(n_orient, 3)
        res = solve(np.zeros((n_orient, 2, 2, 2), int), [qi[None] for qi in q], phase, short_uniaxial(1, strain))
        law = from_phase(phase)
        E_num, E_c = [], []
        for r, R in zip(res, elasticity.quaternion_to_matrix(q)):
            _check(r, f"elastic {name}")
            C = elasticity.C3333_to_66(elasticity.rotate_3333(elasticity.C66_to_3333(law.C66), R))
            E_c.append(1.0 / np.linalg.inv(C[:3, :3])[0, 0])
            E_num.append(r.P[-1, 0, 0] / strain)
        out[name] = (np.array(E_c), np.array(E_num))
    return out


def polycrystal_bounds(n_ves):
    """(b) as test_polycrystal_elastic_response_between_voigt_and_reuss: grain map seed s,
    orientations seed s + 1, s = 4, 6, ... (the test's VE is the first)."""
    phase = elastic_only(mg_phase())
    law = from_phase(phase)
    strain = 1e-5
    seeds = [4 + 2 * k for k in range(n_ves)]
    gms = [voronoi_map(8, 12, seed=s) for s in seeds]
    qs = [random_quats(12, s + 1) for s in seeds]
    res = solve(np.stack(gms), qs, phase, short_uniaxial(1, strain))
    rows = []
    for s, gm, q, r in zip(seeds, gms, qs, res):
        _check(r, f"polycrystal seed {s}")
        w = np.bincount(gm.ravel(), minlength=12)
        Cv, Cr = elasticity.voigt_reuss(law.C66, elasticity.quaternion_to_matrix(q), w)
        Ev = 1.0 / np.linalg.inv(Cv[:3, :3])[0, 0]
        Er = 1.0 / np.linalg.inv(Cr[:3, :3])[0, 0]
        rows.append((s, Er, r.P[-1, 0, 0] / strain, Ev))
    return rows


def point_vs_ve(n_inc, strain):
    """(c) as test_one_grain_ve_equals_homogeneous_point_integration (orientation seed 11),
    n_inc increments to `strain`."""
    phase = mg_phase()
    q = random_quats(1, 11)
    load = short_uniaxial(n_inc, strain)
    res = solve(np.zeros((1, 2, 2, 2), int), [q], phase, load)[0]
    _check(res, "one-grain VE")
    sig_point, _ = _point_uniaxial(phase, q[0], load)
    return _strain_pct(res), res.sigma[:, 0, 0], sig_point


def schmid():
    """(d) the setup of test_single_crystal_yields_at_schmid_stress (the test has no helper
    for it): Cu, tensile axis [124] in crystal coordinates, h_0 = 0, n = 100, shears free."""
    import damask

    phase = cu_phase(**{"h_0_sl-sl": [0.0], "n_sl": [100]})
    a = np.array([1.0, 2.0, 4.0]) / np.sqrt(21.0)
    b = np.cross(a, [0, 0, 1.0])
    b /= np.linalg.norm(b)
    R = np.stack([a, b, np.cross(a, b)], axis=1)
    q = damask.Rotation.from_matrix(R).as_quaternion()[None]
    cs = lattice.coordinate_systems([12], "cF", None, "slip")
    m_max = np.abs(np.einsum("si,i->s", cs[:, 0], a) * np.einsum("si,i->s", cs[:, 1], a)).max()
    nan = np.nan
    step = LoadStep(
        deformation=[[1e-3, nan, nan], [0, nan, nan], [0, 0, nan]],
        stress=[[nan, 0, 0], [nan, 0, 0], [nan, nan, 0]],
        t=8.0,
        N=8,
    )
    res = solve(np.zeros((1, 1, 1, 1), int), [q], phase, LoadCase([step]))[0]
    _check(res, "Schmid")
    xi_0 = phase["mechanical"]["plastic"]["xi_0_sl"][0]
    sigma_flow = xi_0 / m_max * (1e-3 / (m_max * 1e-3)) ** (1 / 100)
    return _strain_pct(res), res.sigma[:, 0, 0], sigma_flow, m_max


def symmetry():
    """(e) as test_crystal_symmetry_operator_leaves_response_invariant."""
    import damask

    phase = mg_phase()
    gm = voronoi_map(6, 5, seed=7)
    q = random_quats(5, 8)
    sym = damask.Rotation.from_axis_angle([0, 0, 1, 60], degrees=True)
    q2 = (sym * damask.Rotation.from_quaternion(q)).as_quaternion()
    r1, r2 = solve(np.stack([gm, gm]), [q, q2], phase, short_uniaxial(3, 1.5e-3))
    _check(r1, "symmetry")
    _check(r2, "symmetry (rotated)")
    rel = np.abs(r2.sigma - r1.sigma).max() / np.abs(r1.sigma).max()
    return _strain_pct(r1), r1.sigma[:, 0, 0], r2.sigma[:, 0, 0], rel


def refinement(factors):
    """(f) as test_grid_refinement_converges, with one more level (16^3)."""
    phase = mg_phase()
    coarse = voronoi_map(4, 4, seed=2)
    q = random_quats(4, 9)
    load = short_uniaxial(2, 1.5e-3)
    out = []
    for f in factors:
        m = np.repeat(np.repeat(np.repeat(coarse, f, 0), f, 1), f, 2)
        r = solve(m[None], [q], phase, load)[0]
        _check(r, f"grid {4 * f}^3")
        out.append((4 * f, r.sigma[:, 0, 0]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT, help="PNG to write (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--orientations", type=int, default=12, help="(a) orientations per phase")
    ap.add_argument("--ves", type=int, default=5, help="(b) polycrystal VEs")
    ap.add_argument("--increments", type=int, default=8, help="(c) increments")
    ap.add_argument("--strain", type=float, default=4e-3, help="(c) final F_xx - 1")
    ap.add_argument(
        "--factors", type=int, nargs="+", default=[1, 2, 3, 4], help="(f) upsampling factors of the 4^3 grid"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = time.perf_counter()
    times = {}

    def timed(key, fn, *a):
        s = time.perf_counter()
        v = fn(*a)
        times[key] = time.perf_counter() - s
        return v

    el = timed("a", elastic_single_crystal, args.orientations)
    poly = timed("b", polycrystal_bounds, args.ves)
    eps_c, sig_ve, sig_pt = timed("c", point_vs_ve, args.increments, args.strain)
    eps_d, sig_d, sig_flow, m_max = timed("d", schmid)
    eps_e, sig_e1, sig_e2, rel_e = timed("e", symmetry)
    grids = timed("f", refinement, args.factors)

    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    ax = axes.flat

    # (a)
    print("# (a) elastic single crystal, 2^3 one-grain VE, strain 1e-5: P_xx/strain vs 1/inv(C'[:3,:3])[0,0]")
    print(f"{'phase':5s} {'orientations':>12s} {'min E_c GPa':>11s} {'max E_c GPa':>11s} {'max rel err':>11s}")
    lo, hi = np.inf, -np.inf
    for name, marker in (("Mg", "o"), ("Cu", "s")):
        E_c, E_num = el[name]
        rel = np.abs(E_num / E_c - 1).max()
        print(f"{name:5s} {len(E_c):12d} {E_c.min() / 1e9:11.2f} {E_c.max() / 1e9:11.2f} {rel:11.1e}")
        ax[0].plot(E_c / 1e9, E_num / 1e9, marker, mfc="none", label=f"{name}: max rel. err. {rel:.1e}")
        lo, hi = min(lo, E_c.min()), max(hi, E_c.max())
    line = np.array([lo, hi]) / 1e9 * [0.95, 1.05]
    ax[0].plot(line, line, "k-", lw=0.8, label="y = x")
    ax[0].set_xlabel(r"analytic $1/[C'_{:3,:3}]^{-1}_{11}$ (GPa)")
    ax[0].set_ylabel(r"solver $P_{xx}$ / strain (GPa)")
    ax[0].set_title(f"(a) elastic single crystal ({args.orientations} orientations)")
    ax[0].legend(fontsize=8)

    # (b)
    print("\n# (b) elastic 8^3 Voronoi Mg VEs, 12 grains: modulus vs bounds (GPa)")
    print(f"{'seed':>4s} {'Reuss':>8s} {'solver':>8s} {'Voigt':>8s} {'inside':>6s}")
    for i, (s, Er, E, Ev) in enumerate(poly):
        print(f"{s:4d} {Er / 1e9:8.3f} {E / 1e9:8.3f} {Ev / 1e9:8.3f} {str(Er <= E <= Ev):>6s}")
        ax[1].plot(
            [i, i],
            [Er / 1e9, Ev / 1e9],
            "-",
            color="0.6",
            lw=6,
            solid_capstyle="butt",
            label="Reuss-Voigt range" if i == 0 else None,
        )
        ax[1].plot(i, E / 1e9, "r_", ms=18, mew=2, label="solver" if i == 0 else None)
    ax[1].set_xticks(range(len(poly)), [f"seed {s}" for s, *_ in poly])
    ax[1].set_ylabel("uniaxial modulus, 12-grain VE (GPa)")
    ax[1].set_title(r"(b) $8^3$ Mg polycrystals vs bounds")
    ax[1].legend(fontsize=8, loc="lower right")

    # (c)
    rel_c = np.abs(sig_ve[1:] / sig_pt[1:] - 1).max()
    print(f"\n# (c) one-grain Mg VE vs material point, {args.increments} increments (sigma_xx MPa)")
    print(f"{'F_xx-1 %':>8s} {'VE':>9s} {'point':>9s} {'rel diff':>9s}")
    for e, a, b in zip(eps_c, sig_ve, sig_pt):
        print(f"{e:8.3f} {a / 1e6:9.3f} {b / 1e6:9.3f} {abs(a - b) / max(abs(b), 1.0):9.1e}")
    ax[2].plot(eps_c, sig_pt / 1e6, "ko", mfc="none", ms=7, label="homogeneous material point")
    ax[2].plot(eps_c, sig_ve / 1e6, "r.-", label=r"solver, $2^3$ one-grain Mg VE")
    ax[2].set_xlabel(r"$F_{xx} - 1$ (%)")
    ax[2].set_ylabel(r"$\sigma_{xx}$ (MPa)")
    ax[2].set_title(f"(c) VE = material point (max rel. diff. {rel_c:.1e})")
    ax[2].legend(fontsize=8)

    # (d)
    print(f"\n# (d) Schmid: Cu [124], m = {m_max:.4f}, xi_0/m * rate factor = {sig_flow / 1e6:.3f} MPa")
    print(f"{'F_xx-1 %':>8s} {'sigma_xx MPa':>12s} {'/ Schmid':>8s}")
    for e, s in zip(eps_d, sig_d):
        print(f"{e:8.3f} {s / 1e6:12.3f} {s / sig_flow:8.4f}")
    ax[3].plot(eps_d, sig_d / 1e6, "r.-", label="solver, Cu single crystal [124]")
    ax[3].axhline(
        sig_flow / 1e6,
        color="k",
        ls="--",
        lw=1,
        label=rf"$\xi_0/m \cdot (\dot\varepsilon/(m\dot\gamma_0))^{{1/n}}$ = {sig_flow / 1e6:.2f} MPa",
    )
    ax[3].set_xlabel(r"$F_{xx} - 1$ (%)")
    ax[3].set_ylabel(r"$\sigma_{xx}$ (MPa)")
    ax[3].set_title(f"(d) Schmid law (end: {100 * (sig_d[-1] / sig_flow - 1):+.2f} % off)")
    ax[3].legend(fontsize=8, loc="lower right")

    # (e)
    print(
        f"\n# (e) symmetry: 6^3 Mg VE, orientations rotated 60 deg about c (sigma_xx MPa); "
        f"max |d sigma| / max |sigma| = {rel_e:.1e}"
    )
    print(f"{'F_xx-1 %':>8s} {'original':>9s} {'rotated':>9s}")
    for e, a, b in zip(eps_e, sig_e1, sig_e2):
        print(f"{e:8.3f} {a / 1e6:9.3f} {b / 1e6:9.3f}")
    ax[4].plot(eps_e, sig_e1 / 1e6, "ko", mfc="none", ms=7, label=r"$6^3$ VE, orientations q")
    ax[4].plot(eps_e, sig_e2 / 1e6, "r.-", label="q rotated by 60° about c")
    ax[4].set_xlabel(r"$F_{xx} - 1$ (%)")
    ax[4].set_ylabel(r"$\sigma_{xx}$ (MPa)")
    ax[4].set_title(f"(e) 6-fold symmetry (max rel. diff. {rel_e:.1e})")
    ax[4].legend(fontsize=8)

    # (f)
    print("\n# (f) grid refinement, 4^3 Mg microstructure (4 grains) upsampled, 2 increments to 0.15 %")
    print(f"{'grid':>5s} {'sigma_xx(end) MPa':>17s} {'max|diff prev| MPa':>18s} {'rel':>8s}")
    n = np.array([g for g, _ in grids])
    s_end = np.array([s[-1] for _, s in grids])
    d = [np.nan] + [np.abs(grids[k][1] - grids[k - 1][1]).max() for k in range(1, len(grids))]
    for g, se, dk in zip(n, s_end, d):
        print(f"{str(g) + '^3':>5s} {se / 1e6:17.3f} {dk / 1e6:18.3f} {dk / abs(se):8.1e}")
    ax[5].plot(n, s_end / 1e6, "ko-", label=r"$\sigma_{xx}$(end)")
    ax[5].set_xticks(n, [f"${g}^3$" for g in n])
    ax[5].set_xlabel("grid")
    ax[5].set_ylabel(r"$\sigma_{xx}$ at $F_{xx} - 1$ = 0.15 % (MPa)")
    tw = ax[5].twinx()
    tw.semilogy(n[1:], np.array(d[1:]) / 1e6, "rs--", label="max |change| to previous grid")
    tw.axhline(
        0.02 * np.abs(grids[min(2, len(grids) - 1)][1]).max() / 1e6,
        color="r",
        lw=0.8,
        ls=":",
        label=r"test bound: 2 % of $\sigma_{xx}$",
    )
    tw.set_ylabel("max |change| to previous grid (MPa)", color="r")
    tw.tick_params(axis="y", colors="r")
    h1, l1 = ax[5].get_legend_handles_labels()
    h2, l2 = tw.get_legend_handles_labels()
    tw.set_ylim(top=30 * np.nanmax(d) / 1e6)  # room for the legend above the points
    ax[5].legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    ax[5].set_title("(f) grid refinement")

    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    total = time.perf_counter() - t0
    print("\n# runtime per panel (s): " + ", ".join(f"({k}) {v:.1f}" for k, v in times.items()))
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    print(f"runtime {total:.1f} s ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
