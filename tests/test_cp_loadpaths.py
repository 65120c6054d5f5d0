"""Load paths: the kinds keep their stress-free conditions, random paths are seeded and
within the strain budget, the YAML file round-trips, and the embedded solver follows a
reversal (tension then compression) and a change of axis on a tiny Mg VE."""

import damask
import numpy as np
import pytest

from matflow_vae3d.cp import loadpaths as LP
from matflow_vae3d.cp.loadcase import LoadCase
from matflow_vae3d.cp.simulate import simulate_ve
from matflow_vae3d.microstructure.volume_element import VolumeElement


def _step_strains(lc: LoadCase) -> list[float]:
    """Signed prescribed strain of each step: rate x time of its non-zero rate component."""
    out = []
    for s in lc.steps:
        d = np.nan_to_num(s.deformation)
        k = np.unravel_index(np.argmax(np.abs(d)), d.shape)
        out.append(float(d[k] * s.t))
    return out


def test_kinds_keep_their_boundary_conditions():
    assert LP.path_of("uniaxial", axes=(0, 1), strains=(0.01,), N=20).to_damask() == LoadCase.uniaxial().to_damask()
    comp = LP.path_of("uniaxial", axes=(2, 0), strains=(-0.01,))
    s = comp.steps[0]
    assert s.deformation[2, 2] == -1e-3 and np.isnan(s.stress).sum() == 7
    assert s.stress[0, 0] == s.stress[1, 1] == 0.0  # lateral normals stress-free
    eq = LP.path_of("equibiaxial", axes=(0, 1), strains=(0.005,)).steps[0]
    assert eq.deformation[0, 0] == eq.deformation[1, 1] == 1e-3 and eq.stress[2, 2] == 0.0
    ps = LP.path_of("plane_strain", axes=(1, 2), strains=(0.01,)).steps[0]
    assert ps.deformation[1, 1] == 1e-3 and ps.deformation[2, 2] == 0.0 and ps.stress[0, 0] == 0.0
    sh = LP.path_of("shear", axes=(0, 1), strains=(0.01,)).steps[0]
    assert (
        not sh.stress_mask.any() and sh.deformation[0, 1] == 1e-3 and (np.delete(sh.deformation.ravel(), 1) == 0).all()
    )
    rev = LP.path_of("reversal", axes=(0, 1), strains=(0.004, -0.008))
    assert _step_strains(rev) == pytest.approx([0.004, -0.008]) and rev.n_increments == 20
    with pytest.raises(ValueError, match="opposite sign"):
        LP.path_of("reversal", strains=(0.004, 0.008))
    with pytest.raises(ValueError, match="unknown path kind"):
        LP.path_of("torsion")
    with pytest.raises(ValueError, match="two different axes"):
        LP.path_of("uniaxial", axes=(1, 1))


def test_random_paths_seeded_within_budget_and_every_kind():
    paths = LP.random_paths(120, seed=3)
    again = LP.random_paths(120, seed=3)
    assert list(paths) == list(again)
    assert all(paths[k].to_damask() == again[k].to_damask() for k in paths)
    first = LP.random_paths(5, seed=3)  # path i does not depend on how many are drawn
    assert all(first[k].to_damask() == paths[k].to_damask() for k in first)
    assert list(LP.random_paths(5, seed=4)) != list(first)
    kinds = [k.split("-", 2)[2] for k in paths]
    assert set(kinds) == set(LP.PATH_KINDS)
    signs = set()
    for pid, lc in paths.items():
        kind = pid.split("-", 2)[2]
        eq = LP.equivalent_strain(kind, _step_strains(lc))
        assert 0.004 - 1e-12 <= eq <= 0.02 + 1e-12, (pid, eq)
        signs.add(np.sign(_step_strains(lc)[0]))
        if kind == "reversal":
            e = _step_strains(lc)
            assert np.sign(e[0]) == -np.sign(e[1])
    assert signs == {-1.0, 1.0}  # tension and compression


def test_paths_file_round_trip_and_refusals(tmp_path):
    paths = LP.random_paths(6, seed=1)
    f = LP.write_paths(paths, tmp_path / "paths.yaml")
    back = LP.read_paths(f)
    assert list(back) == list(paths)
    assert all(back[k].to_damask() == paths[k].to_damask() for k in paths)
    load = tmp_path / "tensionX.yaml"
    load.write_text(__import__("yaml").safe_dump(LoadCase.uniaxial().to_damask()))
    assert list(LP.read_paths(load)) == ["tensionX"]
    (tmp_path / "dup.yaml").write_text(
        "paths:\n  - {id: a, loadstep: []}\n  - {id: a, loadstep: []}\n".replace("loadstep: []", "loadstep: [x]")
    )
    with pytest.raises(ValueError, match="dup.yaml: path 'a'"):
        LP.read_paths(tmp_path / "dup.yaml")
    (tmp_path / "bad.yaml").write_text("something: 1\n")
    with pytest.raises(ValueError, match="expected a 'paths' list"):
        LP.read_paths(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="path id 'a b'"):
        LP.write_paths({"a b": LoadCase.uniaxial()}, tmp_path / "x.yaml")


def test_solver_follows_reversal_and_change_of_axis():
    """A 4³ two-grain Mg VE: after tension to +0.2 % sigma_xx > 0, after reversing to
    -0.2 % net strain sigma_xx < 0; the lateral normal stresses stay ~0 (stress-free)
    throughout. A change of axis x -> y loads sigma_yy in the second step, after y
    contracted freely in the first."""
    gm = np.zeros((4, 4, 4), np.int32)
    gm[2:] = 1
    q = damask.Orientation.from_random(shape=2, lattice="hP", rng_seed=5).reduced.quaternion
    ve = VolumeElement(gm, q, "hP", ve_id="tiny")
    rev = simulate_ve(ve, "Mg", LP.path_of("reversal", axes=(0, 1), strains=(0.002, -0.004), N=4))
    assert rev.converged, rev.reason
    s = rev.sigma / 1e6
    assert s[4, 0, 0] > 5 and s[8, 0, 0] < -5, s[:, 0, 0]
    assert np.abs(s[1:, [1, 2], [1, 2]]).max() < 0.02 * np.abs(s[1:, 0, 0]).max()
    assert rev.F[4, 0, 0] == pytest.approx(1.002) and rev.F[8, 0, 0] == pytest.approx(0.998)
    ch = simulate_ve(ve, "Mg", LP.path_of("change", axes=(0, 1), strains=(0.002, 0.002), N=3))
    assert ch.converged, ch.reason
    c = ch.sigma / 1e6
    assert abs(c[3, 1, 1]) < 0.02 * c[3, 0, 0] and c[6, 1, 1] > 5
    # y contracted freely in the first step (Poisson), then stretched by 0.2 %
    assert ch.F[3, 1, 1] < 1.0 and ch.F[6, 1, 1] - ch.F[3, 1, 1] == pytest.approx(0.002)


def test_simulate_paths_rows_resume_and_random_pairing(tmp_path):
    """`vae3d simulate-paths`: 2 VEs x 2 paths of different lengths -> 4 rows with the
    path's own states (shorter ones NaN-padded), resumable; random pairing gives each
    VE its own seeded paths, the same on a rerun."""
    from click.testing import CliRunner

    from matflow_vae3d.cli import cli
    from matflow_vae3d.cp.path_results import read_path_results
    from matflow_vae3d.datasets import write_ves

    gm = np.zeros((4, 4, 4), np.int32)
    gm[2:] = 1
    ves = [
        VolumeElement(
            gm,
            damask.Orientation.from_random(shape=2, lattice="hP", rng_seed=s).reduced.quaternion,
            "hP",
            ve_id=f"v{s}",
        )
        for s in (1, 2)
    ]
    write_ves(tmp_path / "ves.h5", ves, progress=False)
    paths = {
        "tx": LP.path_of("uniaxial", axes=(0, 1), strains=(0.002,), N=2),
        "rev": LP.path_of("reversal", axes=(1, 0), strains=(-0.001, 0.002), N=2),
    }
    LP.write_paths(paths, tmp_path / "paths.yaml")
    out = tmp_path / "pcp.h5"
    args = [
        "simulate-paths",
        "--data",
        str(tmp_path / "ves.h5"),
        "--paths",
        str(tmp_path / "paths.yaml"),
        "--out",
        str(out),
        "--no-progress",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "4 converged, 0 failed, 0 of 4 pairs already" in r.output
    d = read_path_results(out)
    assert sorted(zip(d["ve_id"], d["path_id"])) == sorted((v, p) for v in ("v1", "v2") for p in ("tx", "rev"))
    assert d["t"].shape == (4, 5) and d["sigma"].shape == (4, 5, 3, 3)
    tx = d["path_id"] == "tx"
    assert (d["n_states"][tx] == 3).all() and (d["n_states"][~tx] == 5).all()
    assert np.isnan(d["sigma"][tx][:, 3:]).all() and np.isfinite(d["sigma"][~tx]).all()
    assert (d["sigma"][tx][:, 2, 0, 0] > 0).all()
    s_rev = d["sigma"][~tx][:, :, 1, 1]
    assert (s_rev[:, 2] < 0).all() and (s_rev[:, 4] > 0).all()  # compression, then tension along y
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "4 of 4 pairs already" in r.output
    assert read_path_results(out)["n_committed"] == 4
    rnd = [
        "simulate-paths",
        "--data",
        str(tmp_path / "ves.h5"),
        "--random-paths",
        "1",
        "--path-seed",
        "9",
        "--increments",
        "2",
        "--max-strain",
        "0.004",
        "--out",
        str(tmp_path / "rnd.h5"),
        "--no-progress",
    ]
    r = CliRunner().invoke(cli, rnd)
    assert r.exit_code == 0, r.output
    d = read_path_results(tmp_path / "rnd.h5")
    assert list(d["path_id"]) == [LP.random_path(9, i, N=2, max_strain=0.004)[0] for i in range(2)]
    assert list(d["ve_id"]) == ["v1", "v2"]
    r = CliRunner().invoke(cli, rnd[:5] + ["--paths", str(tmp_path / "paths.yaml")] + rnd[5:])
    assert r.exit_code == 2 and "exactly one of --paths and --random-paths" in r.output


def test_random_pairing_offset_and_pool():
    """VE v takes paths offset + vK ...; a pool takes the indices modulo its size, so
    VEs share paths (the same LoadCase object per path id)."""
    from matflow_vae3d.cp.simulate_paths import _pairs

    base = _pairs(3, None, 2, 9, {"N": 2})
    assert [pid.split("-")[1] for _, pid, _ in base] == [f"{i:05d}" for i in range(6)]
    shifted = _pairs(3, None, 2, 9, {"N": 2}, path_offset=6)
    assert [pid for _, pid, _ in shifted] == [LP.random_path(9, 6 + i, N=2)[0] for i in range(6)]
    pooled = _pairs(4, None, 2, 9, {"N": 2}, path_pool=3)
    ids = [pid for _, pid, _ in pooled]
    assert [i.split("-")[1] for i in ids] == ["00000", "00001", "00002", "00000", "00001", "00002", "00000", "00001"]
    assert [v for v, _, _ in pooled] == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="path_pool >= random_per_ve"):
        _pairs(2, None, 2, 9, {}, path_pool=1)
