"""Any periodic grid: the spatial VAE takes every grid whose edges are multiples of 4
(cubic or not) in every entry point, one fingerprint (summary, decoded statistics)
serves every grid, other grids are refused in one line naming the nearest valid grid,
and resampling/coarsening keeps periodicity, size, orientations and lattice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from vae_helpers import cli_run as run

from matflow_vae3d.datasets import VEDataset, write_ves
from matflow_vae3d.microstructure import VEParams, generate_ve
from matflow_vae3d.microstructure.resample import coarsen_ve, resample_ve
from matflow_vae3d.vae.spatial import SpatialVAE3d, SpatialVAEConfig, check_grid, nearest_grid

TINY = dict(grid=16, widths=(4, 8, 8), layers=(1, 1, 1), latent_channels=2, head_layers=1)


def _ve(grid, seed=0, esd=3.0, texture="random"):
    ve = generate_ve(VEParams(grid=grid, mean_esd=esd, lattice="hP", texture=texture), seed)
    ve.ve_id = f"g{'x'.join(map(str, ve.grid))}-{seed}"
    return ve


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    m = SpatialVAE3d(SpatialVAEConfig(**TINY)).eval()
    # non-trivial BN statistics so that eval mode is not the identity
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm3d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    return m


def test_grid_rule_and_nearest_grid():
    assert check_grid((8, 12, 16)) == (8, 12, 16)
    assert nearest_grid((18, 16, 30)) == (16, 16, 32) and nearest_grid(2) == (4, 4, 4)
    with pytest.raises(ValueError, match="18x16x30.*multiple of 4.*nearest valid grid 16x16x32"):
        check_grid((18, 16, 30), "the dataset x.h5")


def test_non_cubic_shapes_and_periodic_supercell_has_the_same_summary():
    """A VE and its periodic 2x1x2 supercell are the same microstructure: the latent
    tiles exactly (circular padding everywhere), so the roll-invariant summary and
    the decoded statistics are the same at both grids."""
    from matflow_vae3d.vae.encode import (
        decoded_statistics_of_views,
        encode_views,
        latent_shape,
        summary_of_views,
    )

    m = _tiny_model()
    ve = _ve((8, 12, 16))
    x = torch.as_tensor(ve.quaternions[ve.grain_map], dtype=torch.float32).movedim(-1, 0)[None]
    raw, mu, _ = m(x)
    assert raw.shape == (1, 4, 8, 12, 16) and mu.shape == (1, 2, 2, 3, 4)
    assert m.fingerprint(x).shape == (1, 2 * 2 * 3 * 4)
    assert latent_shape(m, (8, 12, 16)) == (2, 2, 3, 4) and latent_shape(m) == (2, 4, 4, 4)
    big = x.repeat(1, 1, 2, 1, 2)  # the 16x12x32 periodic supercell
    v1, v2 = encode_views(m, x), encode_views(m, big)
    assert torch.allclose(v2[0], v1[0].repeat(1, 1, 2, 1, 2), atol=1e-5)
    np.testing.assert_allclose(summary_of_views(m, v1), summary_of_views(m, v2), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        decoded_statistics_of_views(m, v1, "hP"), decoded_statistics_of_views(m, v2, "hP"), atol=1e-5
    )
    with pytest.raises(ValueError, match="multiple of 4"):
        m.encode(torch.zeros(1, 4, 8, 10, 16))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("any_grid")
    out = {}
    for name, grid in (("slab", (8, 12, 16)), ("g16", 16), ("g18", (18, 16, 16))):
        write_ves(d / f"{name}.h5", [_ve(grid, seed=i) for i in range(3)], progress=False)
        out[name] = d / f"{name}.h5"
    return out


def test_fingerprint_file_records_the_latent_grid_and_surrogate_inputs_agree(sets, tmp_path):
    from matflow_vae3d.vae.checkpoint import load_model, save_model
    from matflow_vae3d.vae.encode import fingerprint_dataset
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    p = save_model(tmp_path / "m.pt", _tiny_model(), "hP")
    model, meta = load_model(p)
    fingerprint_dataset(model, meta, sets["slab"], tmp_path / "a.h5", batch_size=64, progress=False)
    fingerprint_dataset(model, meta, sets["g16"], tmp_path / "b.h5", progress=False)
    a, b = read_fingerprints(tmp_path / "a.h5"), read_fingerprints(tmp_path / "b.h5")
    assert a["latent_shape"] == (2, 2, 3, 4) and list(a["grid"]) == [8, 12, 16] and a["mu"].shape == (3, 48)
    assert b["latent_shape"] == (2, 4, 4, 4) and b["mu"].shape == (3, 128)
    assert a["summary"].shape[1] == b["summary"].shape[1] and a["decoded_stats"].shape == b["decoded_stats"].shape
    # one surrogate input over files of different grids (mu differs in length, the inputs do not)
    from matflow_vae3d.surrogate.table import read_fingerprints as read_inputs

    fp = read_inputs([tmp_path / "a.h5", tmp_path / "b.h5"], "summary+decoded")
    assert fp.mu.shape[0] == 6
    with pytest.raises(ValueError, match="18x16x16.*nearest valid grid 16x16x16"):
        fingerprint_dataset(model, meta, sets["g18"], tmp_path / "c.h5", progress=False)
    assert not (tmp_path / "c.h5").exists()


def test_cli_entry_points_take_a_non_cubic_grid(sets, tmp_path):
    """The shipped VAE and surrogate through fingerprint, evaluate, reconstruct, latent
    and predict --data on a 8x12x16 set; a grid of 18 is refused with the fix, and the
    fix (convert --grid) works."""
    run("fingerprint", "--model", "pretrained", "--data", sets["slab"], "--out", tmp_path / "fp.h5", "--no-progress")
    out = run("evaluate", "--model", "pretrained", "--data", sets["slab"], "--no-progress")
    assert "| VAE | 3 |" in out
    run("reconstruct", "--model", "pretrained", "--data", sets["slab"], "--out", tmp_path / "r.png")
    run(
        "latent",
        "--model",
        "pretrained",
        "--train",
        tmp_path / "fp.h5",
        "--set",
        f"a={sets['g16']}",
        "--set",
        f"b={sets['slab']}",
        "--out",
        tmp_path / "lat",
    )
    assert (tmp_path / "lat" / "path.png").is_file()
    run("predict", "--model", "pretrained", "--data", sets["slab"], "--out", tmp_path / "pred.h5")
    bad = run("fingerprint", "--model", "pretrained", "--data", sets["g18"], "--out", tmp_path / "x.h5", ok=False)
    assert "nearest valid grid 16x16x16" in bad and "vae3d convert" in bad and len(bad.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()
    run("convert", sets["g18"], tmp_path / "g16.h5", "--grid", "16x16x16", "--no-progress")
    run("fingerprint", "--model", "pretrained", "--data", tmp_path / "g16.h5", "--out", tmp_path / "y.h5")


def test_generate_non_cubic_and_bad_grid(tmp_path):
    run(
        "generate",
        "--count",
        "2",
        "--grid",
        "8x12x16",
        "--lattice",
        "hP",
        "--seed",
        "3",
        "--out",
        tmp_path / "s.h5",
        "--no-progress",
    )
    with VEDataset(str(tmp_path / "s.h5")) as ds:
        assert ds.grid == (8, 12, 16) and len(ds) == 2
    run(
        "generate",
        "--count",
        "1",
        "--grid",
        "8x12x16",
        "--lattice",
        "hP",
        "--seed",
        "3",
        "--out",
        tmp_path / "s.h5",
        "--append",
        "--no-progress",
    )
    out = run("generate", "--count", "1", "--grid", "16", "--out", tmp_path / "s.h5", "--append", ok=False)
    assert "grid" in out
    out = run("generate", "--count", "1", "--grid", "8x12", "--out", tmp_path / "t.h5", ok=False)
    assert "not a grid" in out


def test_resample_round_trip_periodic_and_physical():
    ve = _ve((8, 12, 16), seed=4)
    up, rep = resample_ve(ve, (16, 24, 32))
    assert up.grid == (16, 24, 32) and rep.vanished_grains == 0 and rep.vanished_volume_fraction == 0
    np.testing.assert_array_equal(up.grain_map, ve.grain_map.repeat(2, 0).repeat(2, 1).repeat(2, 2))
    back, _ = resample_ve(up, ve.grid)
    np.testing.assert_array_equal(back.grain_map, ve.grain_map)
    np.testing.assert_array_equal(back.quaternions, ve.quaternions)
    assert np.allclose(back.size, ve.size) and np.allclose(up.size, ve.size) and up.lattice == "hP"
    # periodic: resampling commutes with a roll by whole coarse cells
    rolled = type(ve)(np.roll(ve.grain_map, (2, 4, 6), (0, 1, 2)), ve.quaternions, "hP", ve.size)
    a, _ = resample_ve(rolled, (4, 6, 8))
    b, _ = resample_ve(ve, (4, 6, 8))
    np.testing.assert_array_equal(a.quaternions[a.grain_map], np.roll(b.quaternions[b.grain_map], (1, 2, 3), (0, 1, 2)))


@pytest.mark.parametrize("rule", ["majority", "nearest"])
def test_coarsen_keeps_orientations_and_counts_vanished(rule):
    ve = _ve(16, seed=5, esd=2.5)
    c, rep = coarsen_ve(ve, 2, rule)
    assert c.grid == (8, 8, 8) and np.allclose(c.size, ve.size)
    # every coarse voxel carries the orientation of a grain of the original block
    q_old = ve.quaternions[ve.grain_map].reshape(8, 2, 8, 2, 8, 2, 4)
    q_new = c.quaternions[c.grain_map]
    hit = (q_old == q_new[:, None, :, None, :, None]).all(-1).any(axis=(1, 3, 5))
    assert hit.all()
    assert rep.grains_before == ve.n_grains and rep.grains_after == c.n_grains
    assert (rep.vanished_grains == 0) == (rep.vanished_volume_fraction == 0)
    if rule == "nearest":
        np.testing.assert_array_equal(c.quaternions[c.grain_map], ve.quaternions[ve.grain_map[1::2, 1::2, 1::2]])
    same, rep1 = coarsen_ve(ve, 1, rule)
    assert same is ve and rep1.vanished_grains == 0
    with pytest.raises(ValueError, match="factor 3 does not divide the grid 16x16x16"):
        coarsen_ve(ve, 3, rule)


def test_majority_vote_picks_the_dominant_grain():
    from matflow_vae3d.microstructure import VolumeElement

    gm = np.zeros((4, 4, 4), np.int32)
    gm[1, 1, 1] = 1  # the centre voxel of the first 2³ block is a minority grain
    gm[2:, 2:, 2:] = 2
    ve = VolumeElement(gm, np.tile([1.0, 0, 0, 0], (3, 1)), "cF")
    maj, rep = coarsen_ve(ve, 2, "majority")
    near, _ = coarsen_ve(ve, 2, "nearest")
    assert rep.vanished_grains == 1 and np.isclose(rep.vanished_volume_fraction, 1 / 64)
    assert maj.grain_map[0, 0, 0] == 0 and near.n_grains == 3


def test_shared_full_resolution_stage_is_exact_and_large_ves_decode_one_view():
    """The 8 rolled views share the full-resolution stages (a roll by 2 voxels is a roll
    by 1 of their stride-2 output): identical to encoding each rolled input. From 32³
    cells on the decoded statistics are one view's (docs/vae.md "Any grid")."""
    from matflow_vae3d.vae.encode import decoded_statistics, decoded_statistics_of_views, encode_latent, encode_views
    from matflow_vae3d.vae.fingerprints import decoded_views, summary_shifts

    m = _tiny_model(1)
    ve = _ve((8, 12, 16), seed=2)
    x = torch.as_tensor(ve.quaternions[ve.grain_map], dtype=torch.float32).movedim(-1, 0)[None]
    views = encode_views(m, x)
    for v, s in zip(views, summary_shifts()):
        assert torch.allclose(v, encode_latent(m, torch.roll(x, s, dims=(2, 3, 4))), atol=1e-6)
    with pytest.raises(ValueError, match="even numbers of voxels"):
        m.encode_rolled(x, [(1, 0, 0)])
    assert decoded_views(8, (16, 4, 4, 4)) == 8 and decoded_views(8, (16, 4, 8, 8)) == 8
    assert decoded_views(8, (16, 8, 8, 8)) == 1 and decoded_views(8, (16, 16, 16, 16)) == 1
    big = x.repeat(1, 1, 4, 3, 2)  # 32x36x32: >= 32³ cells
    vb = encode_views(m, big)
    np.testing.assert_allclose(decoded_statistics_of_views(m, vb, "hP"), decoded_statistics(m, vb[0], "hP"))
