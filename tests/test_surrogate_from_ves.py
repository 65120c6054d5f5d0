"""`vae3d predict --data`: VEs -> curves with the surrogate's own VAE (fingerprinting on
the way) gives what fingerprint + predict give; a DAMASK .vti works as a VE source;
VEs of another crystal structure or grid, and another VAE, are refused by name."""

from importlib.resources import files
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from matflow_vae3d.cli import cli
from matflow_vae3d.surrogate.ensemble import Surrogate
from matflow_vae3d.surrogate.mlp import EnsembleMLP
from matflow_vae3d.surrogate.table import MinMaxScaling
from matflow_vae3d.vae import pretrained_path
from matflow_vae3d.vae.checkpoint import file_sha256


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A small surrogate on the shipped hP VAE's fingerprints (random weights: this
    tests the plumbing, the shipped surrogate's accuracy is in docs/results.md) and
    three 16³ hP VEs."""
    d = tmp_path_factory.mktemp("fromves")
    torch.manual_seed(0)
    t = np.linspace(0, 10, 21)
    meta = {
        "latent_dim": 168,
        "model_sha256": file_sha256(pretrained_path("hP")),
        "component": "xx",
        "t": t.tolist(),
        "strain": (1e-3 * t).tolist(),
        "outputs": "non-trivial",
        "initial_value": 0.0,
        "calibration_scale": 1.5,
    }
    sur = Surrogate(
        EnsembleMLP(latent_dim=168, hidden=16, n_out=20, n_members=3),
        MinMaxScaling(lo=np.zeros(20), hi=np.full(20, 200.0)),
        meta,
    )
    sur.save(d / "s.pt")
    for lat, grid, name in (("hP", 16, "ves"), ("cF", 16, "cu"), ("hP", 9, "small")):
        r = run(
            "generate",
            "--preset",
            "train",
            "--count",
            3 if name == "ves" else 1,
            "--grid",
            grid,
            "--seed",
            7,
            "--lattice",
            lat,
            "--out",
            d / f"{name}.h5",
            "--no-progress",
        )
        assert r.exit_code == 0, r.output
    return d


def test_predict_from_ves_equals_fingerprint_then_predict(work):
    d = work
    r = run(
        "predict",
        "--model",
        d / "s.pt",
        "--data",
        d / "ves.h5",
        "--out",
        d / "p.h5",
        "--png",
        d / "p.png",
        "--save-fingerprints",
        d / "fp.h5",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert "predicted 3 curves (3 member(s))" in r.output and "VEs/s end to end" in r.output
    assert (d / "p.png").stat().st_size > 10_000
    r = run("predict", "--model", d / "s.pt", "-f", d / "fp.h5", "--out", d / "p2.h5", "--no-progress")
    assert r.exit_code == 0, r.output
    with h5py.File(d / "p.h5") as a, h5py.File(d / "p2.h5") as b:
        np.testing.assert_array_equal(a["sigma"][()], b["sigma"][()])
        assert a["sigma"].shape == (3, 21) and (a["sigma"][:, 0] == 0).all()
        # calibrated spread = 1.5 x the members' spread
        np.testing.assert_allclose(a["sigma_std"][()], 1.5 * a["sigma_std_raw"][()])
        assert (a["sigma_std_raw"][:, 1:] > 0).all()
        ids, sig = [v.decode() for v in a["ve_id"][()]], a["sigma"][()]
    # the same VE as a DAMASK .vti + material.yaml
    r = run("convert", d / "ves.h5", d / "ve1.vti", "--index", 1)
    assert r.exit_code == 0, r.output
    r = run("predict", "--model", d / "s.pt", "--data", d / "ve1.vti", "--out", d / "p3.h5", "--no-progress")
    assert r.exit_code == 0, r.output
    with h5py.File(d / "p3.h5") as f:
        np.testing.assert_allclose(f["sigma"][0], sig[1], rtol=0, atol=1e-3)
    assert ids[1].startswith("train-s7-")


def test_predict_from_ves_refuses_by_name(work):
    d = work
    r = run("predict", "--model", d / "s.pt", "--data", d / "cu.h5", "--out", d / "x.h5")
    assert r.exit_code == 1 and "crystal structure 'hP'" in r.output and "'cF'" in r.output, r.output
    r = run("predict", "--model", d / "s.pt", "--data", d / "small.h5", "--out", d / "x.h5")
    assert r.exit_code == 1 and "9x9x9" in r.output and "nearest valid grid 8x8x8" in r.output, r.output
    r = run(
        "predict", "--model", d / "s.pt", "--data", d / "ves.h5", "--vae", pretrained_path("cF"), "--out", d / "x.h5"
    )
    assert r.exit_code == 1 and "give the VAE it was trained with" in r.output, r.output
    r = run("predict", "--model", d / "s.pt", "--data", d / "ves.h5", "-f", d / "ves.h5", "--out", d / "x.h5")
    assert r.exit_code == 2 and "exactly one of --fingerprints and --data" in r.output
    assert not Path(d / "x.h5").exists()


def test_pretrained_surrogate_on_new_mg_ves(work):
    """The shipped Mg surrogate on 16³ hP VEs it never saw (seed 7; its training set is
    seed 301): curves that start at 0, rise monotonically through the elastic-plastic
    transition, and end inside the range the CP reference set spans at 1 % strain
    (72-100 MPa), with a non-zero spread; Cu VEs are refused."""
    d = work
    r = run("predict", "--model", "pretrained", "--data", d / "ves.h5", "--out", d / "pre.h5", "--no-progress")
    assert r.exit_code == 0, r.output
    with h5py.File(d / "pre.h5") as f:
        s, sd = f["sigma"][()], f["sigma_std"][()]
        assert f.attrs["model_sha256"] == file_sha256(pretrained_path("hP"))
    assert s.shape == (3, 21) and (s[:, 0] == 0).all()
    assert (np.diff(s, axis=1) > 0).all(), s
    assert ((s[:, -1] > 65) & (s[:, -1] < 105)).all(), s[:, -1]
    assert (sd[:, 1:] > 0).all()
    r = run("predict", "--model", "pretrained", "--data", d / "cu.h5", "--out", d / "pcu.h5")
    assert r.exit_code == 1 and "'cF'" in r.output


def test_a_surrogate_says_what_it_was_trained_for(tmp_path):
    """A surrogate trained on Cu CP results records Cu (name and phase hash), the
    lattice, load case and VE population; predict prints it and writes it into the
    prediction file, and refuses hP VEs with the way to a surrogate for them."""
    import h5py

    from matflow_vae3d.datasets import VEDataset, write_ves
    from matflow_vae3d.surrogate.ensemble import Surrogate

    ref = files("matflow_vae3d") / "data" / "reference"
    with VEDataset(str(ref / "cu16_s302_ves.h5")) as ds:
        write_ves(tmp_path / "cu.h5", (ds[i] for i in range(24)), progress=False)
    assert (
        run("fingerprint", "--model", "pretrained", "--data", tmp_path / "cu.h5", "--out", tmp_path / "fp.h5").exit_code
        == 0
    )
    r = run(
        "train-surrogate",
        "-f",
        tmp_path / "fp.h5",
        "-s",
        ref / "cu16_s302_cp.h5",
        "-o",
        tmp_path / "cu.pt",
        "--ensemble",
        "2",
        "--epochs",
        "5",
        "--patience",
        "5",
        "--no-progress",
        "--val-fraction",
        "0.2",
    )
    assert r.exit_code == 0, r.output
    tf = Surrogate.load(tmp_path / "cu.pt").trained_for
    assert tf["material_name"] == "Cu" and tf["lattice"] == "cF" and len(tf["material_sha256"]) == 64
    assert (
        tf["population"] == {"grids": ["16x16x16"], "ve_id_prefixes": {"train-s302": 24}}
        and "loadstep" in tf["loadcase"]
    )
    r = run("predict", "--model", tmp_path / "cu.pt", "--data", tmp_path / "cu.h5", "--out", tmp_path / "p.h5")
    assert r.exit_code == 0 and "trained for Cu (phase sha256" in r.output, r.output
    with h5py.File(tmp_path / "p.h5") as f:
        assert f.attrs["trained_for_material_name"] == "Cu" and "Cu" in f.attrs["trained_for"]
    with VEDataset(str(ref / "mg16_s301_ves.h5")) as ds:
        write_ves(tmp_path / "mg.h5", [ds[0]], progress=False)
    r = run("predict", "--model", tmp_path / "cu.pt", "--data", tmp_path / "mg.h5", "--out", tmp_path / "q.h5")
    assert r.exit_code == 1 and "answers for Cu (cF) but the VEs of mg.h5 are 'hP'" in r.output
    assert "train one for your material" in r.output and not (tmp_path / "q.h5").exists()


def test_out_of_population_flagged_and_answered_by_cp(tmp_path):
    """The shipped Mg surrogate scores a cube-textured VE far outside its training
    population (random texture), warns, and with --fallback cp answers it by CP with its
    own material and load case: the stored curve is the CP curve; a `train` VE is not
    flagged."""
    from matflow_vae3d.cp.simulate import simulate_ve
    from matflow_vae3d.datasets import write_ves
    from matflow_vae3d.microstructure import generate_ve, get_preset

    cube = generate_ve(get_preset("cube", grid=12, lattice="hP"), seed=3)
    cube.ve_id = "cube12"
    write_ves(tmp_path / "cube.h5", [cube], progress=False)
    r = run(
        "predict", "--model", "pretrained", "--data", tmp_path / "cube.h5", "--out", tmp_path / "a.h5", "--no-progress"
    )
    assert r.exit_code == 0 and "cube12 is unlike the surrogate's training VEs" in r.output, r.output
    r = run(
        "predict",
        "--model",
        "pretrained",
        "--data",
        tmp_path / "cube.h5",
        "--out",
        tmp_path / "b.h5",
        "--no-progress",
        "--fallback",
        "cp",
        "--fallback-coarsen",
        "1",
    )
    assert r.exit_code == 0 and "1 of 1 VEs answered by CP" in r.output, r.output
    rec = simulate_ve(cube, "Mg")
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a["ood_score"][0] > a.attrs["ood_threshold"] and list(b["answered_by"].asstr()[()]) == ["cp 12x12x12"]
        np.testing.assert_allclose(b["sigma"][0], rec.sigma_xx_MPa, rtol=1e-6)
        assert abs(a["sigma"][0, -1] - rec.sigma_xx_MPa[-1]) > 5  # the surrogate alone is far off
    ref = files("matflow_vae3d") / "data" / "reference" / "mg16_s301_ves.h5"
    from matflow_vae3d.datasets import VEDataset

    with VEDataset(str(ref)) as ds:
        write_ves(tmp_path / "train.h5", [ds[i] for i in range(3)], progress=False)
    r = run(
        "predict", "--model", "pretrained", "--data", tmp_path / "train.h5", "--out", tmp_path / "c.h5", "--no-progress"
    )
    assert r.exit_code == 0 and "unlike" not in r.output
    with h5py.File(tmp_path / "c.h5") as c:
        assert (c["ood_score"][()] < 1.5).all()
