"""The cube's rotations of a VE and of its CP results: the group, the voxel and
orientation mapping, and the physics (the solver is equivariant: a rotated VE under the
rotated path answers with the rotated stress), and `vae3d rotate-cp`."""

import damask
import numpy as np
import pytest

from matflow_vae3d.cp import loadpaths as LP
from matflow_vae3d.cp.loadcase import LoadCase
from matflow_vae3d.cp.rotations import base_path_id, rotate_loadcase, rotate_record
from matflow_vae3d.cp.simulate import simulate_ve
from matflow_vae3d.microstructure import symmetry as S
from matflow_vae3d.microstructure.volume_element import VolumeElement


def _ve(ve_id="t", n=4, seed=3):
    rng = np.random.default_rng(seed)
    gm = rng.integers(0, 3, (n, n, n)).astype(np.int32)
    q = damask.Orientation.from_random(shape=3, lattice="hP", rng_seed=seed).reduced.quaternion
    return VolumeElement(gm, q, "hP", ve_id=ve_id)


def test_cube_rotations_are_the_proper_group():
    Rs = S.cube_rotations()
    assert Rs.shape == (24, 3, 3) and np.allclose(Rs[0], np.eye(3))
    assert np.allclose(np.linalg.det(Rs), 1.0)
    keys = {tuple(R.astype(int).ravel()) for R in Rs}
    assert len(keys) == 24
    assert all(tuple((A @ B).astype(int).ravel()) in keys for A in Rs for B in Rs)
    ax = S.axis_rotations()
    e_x = np.array([1.0, 0, 0])
    assert [tuple(Rs[k] @ e_x) for k in ax] == [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert S.parse_rotations("all") == list(range(24)) and S.parse_rotations("3, 0") == [0, 3]
    for bad in ("24", "-1", "x", ""):
        with pytest.raises(ValueError, match="'all', 'axes' or comma-separated"):
            S.parse_rotations(bad)
    with pytest.raises(ValueError, match="proper"):
        S.rotate_tensors(np.eye(3), np.diag([1.0, 1.0, -1.0]))


def test_voxels_move_as_their_centres_and_ids_group():
    """A marked voxel's centre (relative to the VE centre) moves by R; the rotation of a
    rotation composes; a non-cubic grid refuses a rotation that swaps unequal edges."""
    n = 4
    Rs = S.cube_rotations()
    f = np.zeros((n, n, n), int)
    idx = np.array([0, 1, 3])
    f[tuple(idx)] = 1
    for k in (1, 7, 13, 22):
        g = S.rotate_grid(f, Rs[k])
        new = np.argwhere(g == 1)[0]
        assert np.allclose(new + 0.5 - n / 2, Rs[k] @ (idx + 0.5 - n / 2))
        j = 5
        assert np.array_equal(S.rotate_grid(g, Rs[j]), S.rotate_grid(f, Rs[j] @ Rs[k]))
    with pytest.raises(ValueError, match="does not map the grid"):
        S.rotate_grid(np.zeros((4, 4, 2)), Rs[S.axis_rotations()[1]])
    ve = _ve("train-000007")
    r = S.rotate_ve(ve, 13)
    assert r.ve_id == "train-000007@r13" and S.base_id(r.ve_id) == "train-000007" and S.rotation_index(r.ve_id) == 13
    assert S.base_id("train-000007") == "train-000007" and S.rotation_index("a") == 0
    with pytest.raises(ValueError, match="already a rotated copy"):
        S.rotate_ve(r, 2)
    with pytest.raises(ValueError, match="1..23"):
        S.rotate_ve(ve, 0)


@pytest.mark.parametrize(
    "path",
    [
        LP.path_of("shear", axes=(0, 2), strains=(0.003,), N=3),
        LP.path_of("reversal", axes=(0, 1), strains=(0.002, -0.003), N=2),
    ],
    ids=["shear", "reversal"],
)
def test_solver_is_equivariant_under_cube_rotations(path):
    """Frame indifference on the grid: solving the rotated VE along the rotated path
    gives R sigma R^T (and R F R^T) of the original solve to round-off; rotating the
    orientations the wrong way (M R instead of M R^T) does not."""
    import dataclasses

    from matflow_vae3d.crystal import matrices_to_quaternions, quaternions_to_matrices, reduce_to_fz

    ve = _ve()
    a = simulate_ve(ve, "Mg", path)
    assert a.converged, a.reason
    scale = np.abs(a.sigma).max()
    Rs = S.cube_rotations()
    for k in (5, 13):
        b = simulate_ve(S.rotate_ve(ve, k), "Mg", rotate_loadcase(path, Rs[k]))
        r = rotate_record(a, Rs[k], b.ve_id)
        assert b.converged
        assert np.abs(r.sigma - b.sigma).max() < 1e-9 * scale
        assert np.abs(r.F - b.F).max() < 1e-12
        assert np.abs(r.P - b.P).max() < 1e-9 * scale
    wrong = dataclasses.replace(
        S.rotate_ve(ve, 13),
        quaternions=reduce_to_fz(matrices_to_quaternions(quaternions_to_matrices(ve.quaternions) @ Rs[13]), "hP"),
    )
    c = simulate_ve(wrong, "Mg", rotate_loadcase(path, Rs[13]))
    assert np.abs(rotate_record(a, Rs[13]).sigma - c.sigma).max() > 1e-2 * scale


def test_rotated_uniaxial_x_is_uniaxial_along_the_new_axis():
    lc = LoadCase.uniaxial()
    Rs = S.cube_rotations()
    for axis, k in enumerate(S.axis_rotations()):
        rot = rotate_loadcase(lc, Rs[k])
        ref = LoadCase.uniaxial(axis=axis)
        for a, b in zip(rot.steps, ref.steps):
            np.testing.assert_array_equal(np.isnan(a.deformation), np.isnan(b.deformation))
            np.testing.assert_allclose(np.nan_to_num(a.deformation), np.nan_to_num(b.deformation), atol=0)
            np.testing.assert_array_equal(np.isnan(a.stress), np.isnan(b.stress))


def test_rotate_cp_command_writes_resumes_and_refuses(tmp_path):
    """Path rows x all 24 rotations and uniaxial rows x 'axes' into one augmented pair of
    files; the copies' stresses are R sigma R^T of their row, their VEs are in the VE
    file, the copies share their original's split, a rerun writes nothing, and bad input
    is named."""
    from click.testing import CliRunner

    from matflow_vae3d.cli import cli
    from matflow_vae3d.cp.path_results import read_path_results
    from matflow_vae3d.cp.simulate import simulate_dataset
    from matflow_vae3d.datasets import open_dataset, write_ves
    from matflow_vae3d.surrogate.path_table import build_path_table

    ves = [_ve(f"v{s}", seed=s) for s in (1, 2)]
    write_ves(tmp_path / "ves.h5", ves, progress=False)
    LP.write_paths({"sh": LP.path_of("shear", axes=(0, 1), strains=(0.002,), N=2)}, tmp_path / "paths.yaml")
    r = CliRunner().invoke(
        cli,
        ["simulate-paths", "--data", str(tmp_path / "ves.h5"), "--paths", str(tmp_path / "paths.yaml")]
        + ["--out", str(tmp_path / "p.h5"), "--no-progress"],
    )
    assert r.exit_code == 0, r.output
    simulate_dataset(tmp_path / "ves.h5", tmp_path / "u.h5", "Mg", load=LoadCase.uniaxial(N=2), progress=False)
    args = ["rotate-cp", "--data", str(tmp_path / "ves.h5"), "--cp", str(tmp_path / "p.h5")]
    args += ["--cp", f"{tmp_path / 'u.h5'}:axes", "--uniaxial-path-id", "tx-uniaxial"]
    args += ["--out-ves", str(tmp_path / "aug_ves.h5"), "--out", str(tmp_path / "aug.h5"), "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "wrote 54 rows (0 already there)" in r.output and "and 48 VEs" in r.output
    d = read_path_results(tmp_path / "aug.h5")
    with open_dataset(tmp_path / "aug_ves.h5") as o:
        assert set(d["ve_id"]) <= set(o.ve_ids) and len(o) == 48
    orig = read_path_results(tmp_path / "p.h5")
    Rs = S.cube_rotations()
    row = {(v, p): i for i, (v, p) in enumerate(zip(d["ve_id"], d["path_id"]))}
    src = row[("v1", "sh")]
    np.testing.assert_array_equal(d["sigma"][src], orig["sigma"][list(orig["ve_id"]).index("v1")])
    cp = row[("v1@r07", "r07.sh")]
    assert base_path_id("r07.sh") == "sh" and base_path_id("sh") == "sh"
    np.testing.assert_allclose(d["sigma"][cp], S.rotate_tensors(d["sigma"][src], Rs[7]))
    uy = row[(f"v2@r{S.axis_rotations()[1]:02d}", f"r{S.axis_rotations()[1]:02d}.tx-uniaxial")]
    assert d["sigma"][uy][-1, 1, 1] > 1e6 and abs(d["sigma"][uy][-1, 0, 0]) < 1e-3 * d["sigma"][uy][-1, 1, 1]
    table = build_path_table(tmp_path / "aug.h5", None, "none", 0.3, 0.3, seed=2)
    split_of = {v: sp for v, sp in zip(table.ve_id, table.split) if v in ("v1", "v2")}
    assert len(split_of) == 2 and all(sp == split_of[S.base_id(v)] for v, sp in zip(table.ve_id, table.split))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "wrote 0 rows (54 already there)" in r.output and "and 0 VEs" in r.output
    bad = args[:4] + [f"{tmp_path / 'p.h5'}:24"] + args[5:]
    r = CliRunner().invoke(cli, bad)
    assert r.exit_code == 1 and "'all', 'axes' or comma-separated indices" in r.output
    bad = args[:6] + [f"{tmp_path / 'u.h5'}:axes"] + ["--uniaxial-path-id", ""] + args[9:]
    r = CliRunner().invoke(cli, bad)
    assert r.exit_code == 1 and "give the path id" in r.output


def test_rotate_cp_keep_uniaxial(tmp_path):
    """A uniaxial results file x the 8 rotations that keep tension along x: a uniaxial
    results file whose copies have their original's sigma_xx curve; a rotation that
    turns the load is refused by name."""
    from click.testing import CliRunner

    from matflow_vae3d.cli import cli
    from matflow_vae3d.cp.results import read_results
    from matflow_vae3d.cp.rotations import invariant_rotations
    from matflow_vae3d.cp.simulate import simulate_dataset
    from matflow_vae3d.datasets import open_dataset, write_ves

    assert len(invariant_rotations(LoadCase.uniaxial())) == 8
    write_ves(tmp_path / "ves.h5", [_ve(f"v{s}", seed=s) for s in (1, 2)], progress=False)
    simulate_dataset(tmp_path / "ves.h5", tmp_path / "u.h5", "Mg", load=LoadCase.uniaxial(N=2), progress=False)
    args = ["rotate-cp", "--data", str(tmp_path / "ves.h5"), "--cp", f"{tmp_path / 'u.h5'}:invariant"]
    args += ["--keep-uniaxial", "--out-ves", str(tmp_path / "a.h5"), "--out", str(tmp_path / "au.h5"), "--no-progress"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "wrote 16 rows (0 already there)" in r.output
    d, orig = read_results(tmp_path / "au.h5"), read_results(tmp_path / "u.h5")
    with open_dataset(tmp_path / "a.h5") as o:
        assert sorted(o.ve_ids) == sorted(d["ve_id"])
    for v, s in zip(d["ve_id"], d["sigma"]):
        ref = orig["sigma"][list(orig["ve_id"]).index(S.base_id(v))]
        np.testing.assert_allclose(s[:, 0, 0], ref[:, 0, 0], rtol=0, atol=1e-6)
    assert d["loadcase"] == orig["loadcase"]
    bad = args[:4] + [f"{tmp_path / 'u.h5'}:axes"] + args[5:-3] + ["--out", str(tmp_path / "b.h5"), "--no-progress"]
    r = CliRunner().invoke(cli, bad)
    assert r.exit_code == 1 and "change the load case" in r.output, r.output
