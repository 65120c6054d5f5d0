"""``vae3d generate``, ``show`` and ``convert`` through click's test runner."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from matflow_vae3d.cli import cli
from matflow_vae3d.commands.ve import derive_seed, ve_id_for
from matflow_vae3d.datasets import VEDataset, euler_image
from matflow_vae3d.microstructure import generate_ve, get_preset

GRID = "12"


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code != 0, res.output
    return res


def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def ves_h5(tmp_path_factory):
    p = tmp_path_factory.mktemp("gen") / "ves.h5"
    run("generate", "--preset", "train", "--count", 3, "--grid", GRID, "--seed", 7, "--out", p, "--no-progress")
    return p


def test_generate_ids_seeds_and_determinism(ves_h5, tmp_path):
    with VEDataset(ves_h5) as ds:
        assert ds.ve_ids == [ve_id_for("train", 7, i) for i in range(3)]
        assert ds.grid == (12, 12, 12) and ds.lattice == "cF"
        assert [ds.seed(i) for i in range(3)] == [derive_seed(7, i) for i in range(3)]
        assert ds.params(0)["mean_esd"] == pytest.approx(5.78)
        # stored VE = generator output for the derived seed
        ref = generate_ve(get_preset("train", grid=12), derive_seed(7, 1))
        np.testing.assert_array_equal(ds[1].grain_map, ref.grain_map)
        np.testing.assert_allclose(ds[1].quaternions, ref.quaternions, atol=2e-7)
    # --append continues the sequence: 3 + 2 == one run of 5
    p = tmp_path / "a.h5"
    run("generate", "--count", 3, "--grid", GRID, "--seed", 7, "--out", p, "--no-progress")
    run("generate", "--count", 2, "--grid", GRID, "--seed", 7, "--out", p, "--append", "--no-progress")
    q = tmp_path / "b.h5"
    run("generate", "--count", 5, "--grid", GRID, "--seed", 7, "--out", q, "--no-progress")
    with VEDataset(p) as a, VEDataset(q) as b:
        assert a.ve_ids == b.ve_ids == [ve_id_for("train", 7, i) for i in range(5)]
        for i in range(5):
            np.testing.assert_array_equal(a[i].grain_map, b[i].grain_map)
            np.testing.assert_array_equal(a[i].quaternions, b[i].quaternions)
    assert len({derive_seed(0, i) for i in range(1000)} | {derive_seed(1, 0)}) == 1001


def test_generate_refuses_and_validates(ves_h5, tmp_path):
    before = sha(ves_h5)
    res = run("generate", "--count", 1, "--grid", GRID, "--out", ves_h5, ok=False)
    assert "--append" in res.output and "--overwrite" in res.output
    res = run(
        "generate", "--count", 1, "--grid", 16, "--seed", 7, "--out", ves_h5, "--append", "--no-progress", ok=False
    )
    assert "cannot append" in res.output
    # an explicit --start that repeats ids is refused, nothing written
    res = run(
        "generate",
        "--count",
        1,
        "--grid",
        GRID,
        "--seed",
        7,
        "--out",
        ves_h5,
        "--append",
        "--start",
        0,
        "--no-progress",
        ok=False,
    )
    assert "duplicate VE id" in res.output
    assert sha(ves_h5) == before
    out = tmp_path / "x.h5"
    assert "at least 8" in run("generate", "--grid", 4, "--out", out, ok=False).output
    assert "unknown preset" in run("generate", "--preset", "nope", "--out", out, ok=False).output
    assert "unknown crystal structure" in run("generate", "--lattice", "xyz", "--out", out, ok=False).output
    assert not out.exists()
    # hexagonal via an alias
    run("generate", "--count", 1, "--grid", 8, "--lattice", "hcp", "--out", out, "--no-progress")
    with VEDataset(out) as ds:
        assert ds.lattice == "hP"


def test_show(ves_h5, tmp_path):
    import matplotlib.image as mpimg

    png = tmp_path / "ve.png"
    res = run("show", ves_h5, "--index", 1, "--out", png, "--dpi", 60)
    assert ve_id_for("train", 7, 1) in res.output
    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
    run("show", ves_h5, "--ve-id", ve_id_for("train", 7, 2), "--out", png, "--dpi", 60)
    assert "out of range" in run("show", ves_h5, "--index", 9, "--out", png, ok=False).output
    txt = tmp_path / "notes.h5"
    txt.write_text("hello")
    assert "not an HDF5 file" in run("show", txt, "--out", png, ok=False).output
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    assert "not a matflow-vae3d VE dataset" in run("show", foreign, "--out", png, ok=False).output


def test_convert_round_trips(ves_h5, tmp_path):
    with VEDataset(ves_h5) as ds:
        ref = [ds[i] for i in range(3)]
    back = tmp_path / "back.h5"
    # DAMASK: one VE to .vti (+ <stem>_material.yaml), and back into a dataset
    run("convert", ves_h5, tmp_path / "v0.vti", "--index", 0)
    assert (tmp_path / "v0_material.yaml").exists()
    run("convert", tmp_path / "v0.vti", back)
    run("show", tmp_path / "v0.vti", "--out", tmp_path / "v0.png", "--dpi", 40)
    # DREAM.3D and MatFlow (lattice needed: the dict does not record it)
    run("convert", ves_h5, tmp_path / "v1.dream3d", "--ve-id", ref[1].ve_id)
    run("convert", tmp_path / "v1.dream3d", back, "--append")
    run("convert", ves_h5, tmp_path / "v2.yaml", "--index", 2)
    assert "crystal structure" in run("convert", tmp_path / "v2.yaml", back, "--append", ok=False).output
    run("convert", tmp_path / "v2.yaml", back, "--append", "--lattice", "cF")
    with VEDataset(back) as ds:
        assert ds.ve_ids == ["v0", "v1", "v2"]
        for i in range(3):
            np.testing.assert_array_equal(ds[i].grain_map, ref[i].grain_map)
            np.testing.assert_allclose(euler_image(ds[i]), euler_image(ref[i]), atol=1e-5)
    # a directory receives one file per VE
    run("convert", ves_h5, tmp_path / "out", "--to", "damask")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [f"{v.ve_id}.vti" for v in ref] + [f"{v.ve_id}_material.yaml" for v in ref]
    )
    # bad input: several VEs to one file, existing target, unknown extension
    assert "select one" in run("convert", ves_h5, tmp_path / "all.vti", ok=False).output
    before = sha(tmp_path / "v2.yaml")
    assert "exists" in run("convert", ves_h5, tmp_path / "v2.yaml", "--index", 0, ok=False).output
    assert sha(tmp_path / "v2.yaml") == before
    assert "extension" in run("convert", ves_h5, tmp_path / "x.txt", ok=False).output
    assert "does not exist" in run("convert", tmp_path / "none.h5", back, ok=False).output
