"""The vae3d VAE commands end to end (train-vae, fingerprint, evaluate, reconstruct,
latent), the shipped pretrained model, and clear errors on bad input with nothing
overwritten."""

import json
import shutil

import click
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from vae_helpers import write_set

from matflow_vae3d.cli import cli
from matflow_vae3d.vae import PRETRAINED_LATTICES, pretrained_path
from matflow_vae3d.vae.checkpoint import load_model

#: measured with the shipped model, see docs/vae.md
CUBE_GOSS_MIN_ACCURACY = 0.9


def run(*args, ok=True):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code != 0, res.output
        assert "Traceback" not in res.output
    return res.output


@pytest.fixture(scope="module")
def ves(tmp_path_factory):
    """hP, grid 16, train-preset VEs (the pretrained model's distribution) + textured sets."""
    from matflow_vae3d.datasets import write_ves
    from matflow_vae3d.microstructure import generate_ves, get_preset

    d = tmp_path_factory.mktemp("vae_cli")
    out = {}
    for name, preset, n, s0 in (
        ("train", "train", 24, 900_000),
        ("cube", "cube", 12, 910_000),
        ("goss", "goss", 12, 920_000),
    ):
        out[name] = d / f"{name}.h5"
        write_ves(
            out[name],
            generate_ves(get_preset(preset, grid=16, lattice="hP"), range(s0, s0 + n), progress=False),
            progress=False,
        )
    out["cubic"] = write_set(d / "cubic.h5", 2, seed=2, lattice="cF")
    # empty, NaN and foreign files
    out["empty"] = d / "empty.h5"
    shutil.copy(out["cubic"], out["empty"])
    with h5py.File(out["empty"], "a") as f:
        f.attrs["n_ves"] = 0
    out["nan"] = d / "nan.h5"
    shutil.copy(out["train"], out["nan"])
    with h5py.File(out["nan"], "a") as f:
        f["eulers_norm"][3] = np.nan  # a corrupt grain: NaN in both orientation tables
        f["quaternions"][3] = np.nan
    out["foreign"] = d / "foreign.h5"
    with h5py.File(out["foreign"], "w") as f:
        f["x"] = np.zeros(3)
    return out


@pytest.mark.parametrize("lattice", PRETRAINED_LATTICES)
def test_pretrained_models_shipped(lattice):
    p = pretrained_path(lattice)
    assert p.is_file() and p.stat().st_size <= 20e6
    raw = torch.load(p, weights_only=True)
    assert raw["lattice"] == lattice and raw["grid"] == 16 and raw["architecture"] == "spatial"
    rec = raw["training"]
    data = rec["data"]
    assert rec["n_train"] >= 10_000 and data["train"]["seed"] not in {data[k]["seed"] for k in data if k != "train"}
    assert rec["history"].startswith("epoch,")
    # its own held-out evaluation: far below the constant predictors (about 60 deg)
    assert rec["evaluation"]["test"]["deg_mean"] < 30.0
    model, meta = load_model(p)
    assert meta["latent"] == 1024 and meta["representation"] == "quaternion"


def test_train_vae_preset_choices_are_the_library_presets():
    # the CLI spells the names out (no torch import for --help); the library owns them
    from matflow_vae3d.vae.models import SPATIAL_PRESETS
    from matflow_vae3d.vae.network import PRESET_LAYERS

    cmd = cli.get_command(click.Context(cli), "train-vae")
    opt = next(p for p in cmd.params if p.name == "preset")
    assert sorted(opt.type.choices) == sorted([*SPATIAL_PRESETS, *PRESET_LAYERS, "small"])


def test_pretrained_only_for_shipped_lattices():
    with pytest.raises(ValueError, match="no pretrained VAE is shipped for crystal structure 'cI'"):
        pretrained_path("cI")


def test_pretrained_model_reconstructs_unseen_ves(ves):
    """VEs made with seeds the recipe never used: the shipped hP model reconstructs
    them far better than the constant predictors."""
    from matflow_vae3d.vae.encode import evaluate_dataset
    from matflow_vae3d.vae.evaluation import baseline_errors

    model, meta = load_model(pretrained_path("hP"))
    ev = evaluate_dataset(model, meta, ves["train"], progress=False)
    base = baseline_errors(ves["train"], "hP")["identity"]
    assert base["deg_mean"] > 55.0
    assert ev["deg_mean"] < 0.5 * base["deg_mean"] and ev["within15_mean"] > 0.3


def test_train_vae_cli_and_resume(ves, tmp_path):
    out = tmp_path / "run"
    common = [
        "train-vae",
        "--train",
        ves["train"],
        "--val",
        ves["goss"],
        "--preset",
        "small",
        "--widths",
        "4,8,8,16",
        "--hidden",
        "16",
        "--latent",
        "6",
        "--batch-size",
        "8",
        "--out",
        out,
        "--no-progress",
    ]
    text = run(*common, "--epochs", "1")
    assert "model ->" in text
    model, meta = load_model(out / "model.pt")
    assert meta["lattice"] == "hP" and meta["grid"] == 16 and meta["config"]["widths"] == [4, 8, 8, 16]
    assert meta["training"]["n_train"] == 24
    assert "already" not in text
    before = (out / "model.pt").read_bytes()
    assert "pass --resume" in run(*common, "--epochs", "2", ok=False)  # (resume itself: test_vae_train)
    assert (out / "model.pt").read_bytes() == before
    assert len((out / "history.csv").read_text().strip().splitlines()) == 2
    # training set of another lattice than the validation set
    assert "does not match" in run(
        "train-vae",
        "--train",
        ves["train"],
        "--val",
        ves["cubic"],
        "--preset",
        "small",
        "--out",
        tmp_path / "r2",
        ok=False,
    )


def test_fingerprint_evaluate_reconstruct(ves, tmp_path):
    model = pretrained_path()
    fp = tmp_path / "fp.h5"
    text = run(
        "fingerprint", "--model", model, "--data", ves["train"], "--out", fp, "--batch-size", "10", "--no-progress"
    )
    assert "24 fingerprints (latent 1024)" in text
    with h5py.File(fp) as f:
        assert f.attrs["format"] == "matflow-vae3d/fingerprints" and f["mu"].shape == (24, 1024)
        assert f["summary"].shape == (24, 168)  # 16 means, 136 second moments, 16 lag products
        assert f.attrs["lattice"] == "hP" and list(f.attrs["grid"]) == [16, 16, 16]
        dec = f["decoded_stats"][()]
    # decoded statistics: orientation statistics of the reconstruction from mu (x, y, z
    # axis histograms of 18 bins, each a density of mean 1), nearer each VE's own
    # statistics than the set's mean is
    from matflow_vae3d.datasets import VEDataset
    from matflow_vae3d.microstructure.statistics import orientation_features
    from matflow_vae3d.surrogate.table import read_fingerprints

    assert dec.shape == (24, 79) and np.allclose(dec[:, :54].reshape(24, 3, 18).mean(2), 1.0, atol=1e-5)
    with VEDataset(ves["train"]) as ds:
        true = np.stack([orientation_features(v.quaternions, v.grain_map, "hP", axes="xyz") for v in ds])
    own = np.abs(dec[:, :78] - true[:, :78]).mean(1)
    spread = np.abs(true[:, :78].mean(0) - true[:, :78]).mean(1)
    assert (own < spread).mean() >= 0.7, (own, spread)
    assert read_fingerprints(fp, "auto").inputs == "decoded" and read_fingerprints(fp, "auto").latent_dim == 79
    assert read_fingerprints(fp, "summary+decoded").latent_dim == 168 + 79
    before = fp.read_bytes()
    assert "--overwrite" in run("fingerprint", "--model", model, "--data", ves["goss"], "--out", fp, ok=False)
    assert fp.read_bytes() == before

    js, png = tmp_path / "ev.json", tmp_path / "ev.png"
    text = run("evaluate", "--model", model, "--data", ves["train"], "--json", js, "--png", png, "--no-progress")
    assert "disorientation" in text and png.stat().st_size > 1000
    doc = json.loads(js.read_text())["sets"][str(ves["train"])]
    assert len(doc["quat"]) == 24 and abs(np.mean(doc["quat"]) - doc["quat_mean"]) < 1e-9
    assert doc["deg_mean"] < doc["baselines"]["identity"]["deg_mean"] / 2
    # the trained model reconstructs far better than an untrained one of the same shape
    from matflow_vae3d.vae.checkpoint import save_model
    from matflow_vae3d.vae.encode import evaluate_dataset
    from matflow_vae3d.vae.models import build_model

    m, meta = load_model(model)
    torch.manual_seed(0)
    untrained = save_model(tmp_path / "u.pt", build_model(meta["architecture"], meta["config"]), "hP")
    um, umeta = load_model(untrained)
    ref = evaluate_dataset(um, umeta, ves["train"], progress=False)
    assert doc["deg_mean"] < 0.5 * ref["deg_mean"]

    text = run(
        "reconstruct",
        "--model",
        "pretrained",
        "--data",
        ves["train"],
        "--out",
        tmp_path / "r.png",
        "--index",
        "0",
        "--index",
        "5",
    )
    assert text.count("disorientation") == 2 and (tmp_path / "r.png").stat().st_size > 1000


def test_latent_cli(ves, tmp_path):
    out = tmp_path / "lat"
    text = run(
        "latent",
        "--model",
        pretrained_path(),
        "--train",
        ves["train"],
        "--set",
        f"cube={ves['cube']}",
        "--set",
        f"goss={ves['goss']}",
        "--out",
        out,
        "--steps",
        "5",
    )
    summary = json.loads((out / "latent.json").read_text())
    assert summary["n_train"] == 24 and summary["sets"] == {"cube": 12, "goss": 12}
    assert "spectral clustering of 2 sets" in text
    # cube and Goss differ by 45° about x: their fingerprints separate
    assert summary["clustering_accuracy"] >= CUBE_GOSS_MIN_ACCURACY
    assert (out / "path.png").stat().st_size > 1000 and (out / "pca.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "case, message",
    [
        ("foreign", "not a matflow-vae3d VE dataset"),
        ("empty", "holds no VEs"),
        ("nan", "NaN"),
        ("cubic", "trained on crystal structure 'hP'"),
        ("missing", "not found"),
    ],
)
def test_bad_input_clear_error_nothing_written(ves, tmp_path, case, message):
    data = ves.get(case, tmp_path / "missing.h5")
    out = tmp_path / "fp.h5"
    text = run("fingerprint", "--model", pretrained_path(), "--data", data, "--out", out, "--no-progress", ok=False)
    assert message in text
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_bad_model_file(ves, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    assert "cannot read VAE checkpoint" in run("evaluate", "--model", bad, "--data", ves["train"], ok=False)
