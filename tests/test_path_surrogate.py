"""The load-path surrogate: path encoding, the table, a learning check on an analytic
response, the checkpoint's feature check, and the CLI end to end on real CP runs."""

import damask
import numpy as np
import pytest
import yaml

from matflow_vae3d.cp import loadpaths as LP
from matflow_vae3d.cp.loadcase import LoadCase, LoadStep
from matflow_vae3d.surrogate import path_table as PT


def test_encoding_sums_to_the_prescribed_deformation():
    """The increments of every prescribed component add up to the path's F; stress-free
    components carry the mask and their prescribed P; F-kind steps are spread evenly."""
    rev = LP.path_of("reversal", axes=(1, 0), strains=(0.004, -0.01), N=4)
    U = PT.encode_loadcase(rev)
    assert U.shape == (8, PT.N_STEP_INPUTS)
    dF = U[:, :9].reshape(8, 3, 3) * PT.DF_SCALE
    assert dF[:4, 1, 1].sum() == pytest.approx(0.004) and dF[:, 1, 1].sum() == pytest.approx(-0.006)
    mask = U[:, 9:18].reshape(8, 3, 3)
    assert (mask[:, 0, 0] == 1).all() and (mask[:, 2, 2] == 1).all() and (mask[:, 1, 1] == 0).all()
    assert (dF[:, 0, 0] == 0).all()  # free components carry no deformation input
    assert U[:, 27] == pytest.approx([1.0] * 4 + [2.5] * 4)  # |strain| / (1e-3 /s) / 4 increments
    F = np.full((3, 3), np.nan)
    F[0, 0], F[1, 1], F[2, 2] = 1.01, 0.995, 1.0
    F[0, 1] = F[1, 0] = F[0, 2] = F[2, 0] = F[1, 2] = F[2, 1] = 0.0
    step = LoadStep(F, np.full((3, 3), np.nan), t=5.0, N=5, deformation_kind="F")
    Uf = PT.encode_loadcase(LoadCase([step]))
    assert Uf[:, 0].sum() * PT.DF_SCALE == pytest.approx(0.01)
    assert Uf[:, 4].sum() * PT.DF_SCALE == pytest.approx(-0.005)
    P = np.full((3, 3), np.nan)
    P[1, 1] = 2e7  # a prescribed tensile stress: input in units of 100 MPa
    dot = np.zeros((3, 3))
    dot[1, 1] = np.nan
    Up = PT.encode_loadcase(LoadCase([LoadStep(dot, P, t=1.0, N=2)]))
    assert Up[0, 9 + 4] == 1 and Up[0, 18 + 4] == pytest.approx(0.2)
    # F prescribed after a step that left the component free: its start is unknown
    with pytest.raises(ValueError, match="start value is not known"):
        PT.encode_loadcase(LoadCase([rev.steps[0], step]))


def _analytic_results(path, n_ves=60, paths_per_ve=6, seed=0):
    """A path results file whose stress is an analytic function of the path and of a
    per-VE stiffness k_v (the 'microstructure'): sigma = k_v * E * (F - I) along
    prescribed directions, saturating like plasticity, and zero where P = 0."""
    from matflow_vae3d.cp.path_results import PathResultsWriter
    from matflow_vae3d.cp.results import SimulationRecord

    rng = np.random.default_rng(seed)
    k = rng.uniform(0.6, 1.4, n_ves)
    with PathResultsWriter(path, material="analytic", solver="builtin", lattice="hP") as w:
        for v in range(n_ves):
            for j in range(paths_per_ve):
                pid, lc = LP.random_path(seed, v * paths_per_ve + j, N=5, max_strain=0.01)
                U = PT.encode_loadcase(lc)
                dF = U[:, :9].reshape(-1, 3, 3) * PT.DF_SCALE
                F = np.concatenate([np.eye(3)[None], np.eye(3) + np.cumsum(dF, axis=0)])
                e = F - np.eye(3)
                sigma = 1e8 * k[v] * np.tanh(e / 0.003)  # Pa, saturates at k_v * 100 MPa
                sigma = 0.5 * (sigma + np.swapaxes(sigma, 1, 2))
                rec = SimulationRecord(
                    ve_id=f"v{v:03d}",
                    solver="builtin",
                    status="converged",
                    converged=True,
                    reason="",
                    t=lc.times(),
                    F=F,
                    P=sigma,
                    sigma=sigma,
                    n_converged=len(U),
                    wall_s=0.0,
                )
                w.append(rec, pid, yaml.safe_dump(lc.to_damask(), sort_keys=False))
    return k


def _features(k, lattice="hP", sha="feat"):
    from matflow_vae3d.surrogate.table import Fingerprints

    rng = np.random.default_rng(1)
    X = np.c_[k, rng.normal(size=(len(k), 3))]  # the stiffness and three noise features
    return Fingerprints(
        ve_id=[f"v{v:03d}" for v in range(len(k))], mu=X, model_sha256=sha, latent_dim=4, lattice=lattice
    )


def test_path_metrics_per_component_and_relative_to_the_path_range(tmp_path):
    """An error of c on sigma_xx alone shows as c on xx, 0 elsewhere, c/6 per row and
    c/6 over the row's stress range relative; zero stress has relative error <= 1."""
    from matflow_vae3d.surrogate.path_evaluate import path_metrics, zero_prediction

    _analytic_results(tmp_path / "a.h5", n_ves=6, paths_per_ve=2)
    table = PT.build_path_table(tmp_path / "a.h5", None, "none", 0.0, 0.0, seed=0)
    rows = np.arange(len(table))
    pred = table.Y.copy()
    pred[..., 0] += 6e6  # +6 MPa on sigma_xx
    m = path_metrics(table, pred, rows)
    assert m["mae_by_component"]["xx"] == pytest.approx(6.0)
    assert all(m["mae_by_component"][c] == pytest.approx(0.0, abs=1e-9) for c in ("yy", "zz", "yz", "xz", "xy"))
    assert m["mae_mpa"] == pytest.approx(1.0)
    y = np.where(table.mask[..., None], table.Y[..., :6] / 1e6, np.nan)
    span = np.nanmax(y, axis=(1, 2)) - np.nanmin(y, axis=(1, 2))
    assert m["relative_mae"] == pytest.approx(np.mean(1.0 / span))
    assert 0 < path_metrics(table, zero_prediction(table), rows)["relative_mae"] <= 1.0


@pytest.mark.parametrize("feature_steps", [True, False], ids=["features-every-step", "features-initial-only"])
def test_sequence_model_learns_the_microstructure_effect(tmp_path, feature_steps):
    """On an analytic response the GRU started from the features beats the same GRU
    without them, which beats zero stress, whether the features also enter every step
    or only the initial hidden state; the checkpoint round-trips (with that choice)
    and refuses features of another source."""
    from matflow_vae3d.surrogate.path_evaluate import path_metrics, zero_prediction
    from matflow_vae3d.surrogate.path_surrogate import PathSurrogate, PathTrainConfig, train_path_surrogate

    k = _analytic_results(tmp_path / "a.h5")
    fp = _features(k)
    cfg = PathTrainConfig(
        n_members=2, hidden=48, layers=1, max_epochs=150, patience=30, lr=5e-3, feature_steps=feature_steps
    )
    table = PT.build_path_table(tmp_path / "a.h5", fp, "fingerprint", 0.15, 0.25, seed=0)
    bare = PT.build_path_table(tmp_path / "a.h5", None, "none", 0.15, 0.25, seed=0)
    assert (table.split == bare.split).all() and len(table.rows("test")) >= 30
    sur = train_path_surrogate(table, cfg, progress=False)
    base = train_path_surrogate(bare, cfg, progress=False)
    test = table.rows("test")
    with_fp = path_metrics(table, sur.predict_members(table.X, table.U).mean(0), test)
    without = path_metrics(bare, base.predict_members(None, bare.U).mean(0), test)
    zero = path_metrics(table, zero_prediction(table), test)
    assert with_fp["mae_mpa"] < 0.6 * without["mae_mpa"] < 0.6 * zero["mae_mpa"], (with_fp, without, zero)
    assert with_fp["r2"] > 0.9
    sur.save(tmp_path / "m.pt")
    again = PathSurrogate.load(tmp_path / "m.pt")
    assert again.net.feature_steps is feature_steps
    lc = LP.path_of("uniaxial", axes=(0, 1), strains=(0.006,), N=5)
    a, b = sur.predict(fp.mu[:3], lc), again.predict(fp.mu[:3], lc)
    assert np.allclose(a["sigma"], b["sigma"]) and a["sigma"].shape == (3, 6, 3, 3)
    assert (a["sigma"][:, 0] == 0).all() and np.allclose(a["F"][:, 0], np.eye(3))
    assert a["sigma"][:, -1, 0, 0].argmax() == np.argmax(k[:3])  # stiffer VE, higher stress
    again.check_features(fp)
    with pytest.raises(ValueError, match="different VAEs"):
        again.check_features(_features(k, sha="other"))
    with pytest.raises(ValueError, match="needs per-VE fingerprint features"):
        again.check_features(None)


def test_cli_end_to_end_on_real_cp(tmp_path):
    """simulate-paths on 4³ Mg VEs -> orientation features -> train-path-surrogate ->
    predict-path: files, shapes, the held-out table, and refusals."""
    from click.testing import CliRunner

    from matflow_vae3d.cli import cli
    from matflow_vae3d.datasets import write_ves
    from matflow_vae3d.microstructure.volume_element import VolumeElement
    from matflow_vae3d.surrogate.baselines import write_feature_file
    from matflow_vae3d.surrogate.path_predictions import read_path_predictions

    gm = np.zeros((4, 4, 4), np.int32)
    gm[2:] = 1
    gm[:, 2:] += 2
    ves = [
        VolumeElement(
            gm,
            damask.Orientation.from_random(shape=4, lattice="hP", rng_seed=s).reduced.quaternion,
            "hP",
            ve_id=f"v{s}",
        )
        for s in range(8)
    ]
    write_ves(tmp_path / "ves.h5", ves, progress=False)
    run = CliRunner().invoke
    r = run(
        cli,
        [
            "simulate-paths",
            "--data",
            str(tmp_path / "ves.h5"),
            "--random-paths",
            "2",
            "--increments",
            "2",
            "--max-strain",
            "0.006",
            "--out",
            str(tmp_path / "pcp.h5"),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    write_feature_file(tmp_path / "ves.h5", tmp_path / "orient.h5", progress=False, axes="xyz")
    model = tmp_path / "m.pt"
    args = ["train-path-surrogate", "-r", str(tmp_path / "pcp.h5"), "-f", str(tmp_path / "orient.h5")]
    args += ["-o", str(model), "--max-epochs", "5", "--members", "2", "--hidden", "16", "--test-fraction", "0.3"]
    r = run(cli, args + ["--report-dir", str(tmp_path / "rep"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "16 (VE, path) rows of 8 VEs" in r.output and "zero stress (constant)" in r.output
    assert "path surrogate (orientation)" in r.output
    assert (tmp_path / "rep" / "paths_test.png").stat().st_size > 10_000
    r = run(cli, args)
    assert r.exit_code == 1 and "exists; pass --overwrite" in r.output
    LP.write_paths(
        {"tx": LP.path_of("uniaxial", strains=(0.005,), N=4), "sh": LP.path_of("shear", strains=(0.003,), N=3)},
        tmp_path / "p.yaml",
    )
    pred = tmp_path / "pred.h5"
    r = run(
        cli,
        ["predict-path", "-m", str(model), "-f", str(tmp_path / "orient.h5"), "-p", str(tmp_path / "p.yaml")]
        + ["-o", str(pred), "--png", str(tmp_path / "pred.png")],
    )
    assert r.exit_code == 0, r.output
    d = read_path_predictions(pred)
    assert len(d["ve_id"]) == 16 and d["sigma"].shape == (16, 5, 3, 3)
    sh = d["path_id"] == "sh"
    assert (d["n_states"][sh] == 4).all() and np.isnan(d["sigma"][sh][:, 4]).all()
    assert np.isfinite(d["sigma"][~sh]).all() and (d["sigma"][:, 0] == 0).all()
    assert (tmp_path / "pred.png").stat().st_size > 10_000
    # a path longer than any training path, and features of another definition (x
    # only), are refused by name, nothing written
    LP.write_paths({"long": LP.path_of("uniaxial", strains=(0.005,), N=40)}, tmp_path / "long.yaml")
    r = run(
        cli,
        ["predict-path", "-m", str(model), "-f", str(tmp_path / "orient.h5"), "-p", str(tmp_path / "long.yaml")]
        + ["-o", str(tmp_path / "p3.h5")],
    )
    assert r.exit_code == 1 and "more than any path the model was trained on" in r.output, r.output
    assert not (tmp_path / "p3.h5").exists()
    write_feature_file(tmp_path / "ves.h5", tmp_path / "orient_x.h5", progress=False)
    r = run(
        cli,
        ["predict-path", "-m", str(model), "-f", str(tmp_path / "orient_x.h5"), "-p", str(tmp_path / "p.yaml")]
        + ["-o", str(tmp_path / "p2.h5")],
    )
    assert r.exit_code == 1 and "features" in r.output, r.output
