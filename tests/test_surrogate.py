"""Surrogate dataset, scaling, split, networks, checkpoint, calibration, metrics and
baseline features (no training here; see test_surrogate_training.py)."""

import math

import numpy as np
import pytest
import torch
from test_surrogate_helpers import T, smooth_response, write_fingerprints, write_stresses

from matflow_vae3d.surrogate.ensemble import COVERAGE_2SIGMA, Surrogate, coverage, fit_calibration_scale
from matflow_vae3d.surrogate.evaluate import regression_metrics
from matflow_vae3d.surrogate.mlp import EnsembleMLP, PaperMLP
from matflow_vae3d.surrogate.table import MinMaxScaling, build_table, read_fingerprints, read_stresses, split_by_id


def _ids(n, prefix="ve"):
    return [f"{prefix}{i:04d}" for i in range(n)]


@pytest.fixture
def files(tmp_path):
    """12 fingerprinted VEs (+2 never simulated); CP results for 10 of them + 1 without
    a fingerprint; 2 failed, 1 incomplete (NaN from increment 15), 1 with a NaN at
    increment 7, 5 usable."""
    rng = np.random.default_rng(1)
    fp_ids = _ids(12) + ["fp_only_a", "fp_only_b"]
    mu = rng.normal(size=(len(fp_ids), 4))
    write_fingerprints(tmp_path / "fp.h5", fp_ids, mu)
    st_ids = _ids(10) + ["st_only"]
    y = smooth_response(rng.normal(size=(len(st_ids), 4)))
    status = ["converged"] * len(st_ids)
    reason = [""] * len(st_ids)
    status[1], reason[1] = "failed", "stress-strain iteration did not converge"
    status[2], reason[2] = "failed", "stress-strain iteration did not converge"
    status[3], reason[3] = "failed", "timeout after 600 s"
    y[4, 15:] = np.nan  # status converged but only 14 increments
    y[5, 7] = np.nan  # a NaN in the middle of a "converged" run
    write_stresses(tmp_path / "st.h5", st_ids, y, status, reason)
    return tmp_path / "fp.h5", tmp_path / "st.h5", fp_ids, mu, st_ids, y


def test_join_counts_exclusions_and_missing(files):
    fp, st, fp_ids, mu, st_ids, y = files
    tab = build_table(fp, st)
    assert sorted(tab.ve_id) == ["ve0000", "ve0006", "ve0007", "ve0008", "ve0009"]
    assert tab.excluded == {
        "failed: stress-strain iteration did not converge": 2,
        "failed: timeout after 600 s": 1,
        "incomplete: 14 of 20 increments converged": 1,
        "incomplete: 6 of 20 increments converged": 1,
    }
    assert tab.missing_fingerprint == ["st_only"]
    assert tab.missing_stress == ["ve0010", "ve0011", "fp_only_a", "fp_only_b"]
    # rows stay aligned: each row's fingerprint and curve belong to the same VE, in MPa
    for r, vid in enumerate(tab.ve_id):
        np.testing.assert_array_equal(tab.X[r], mu[fp_ids.index(vid)].astype(np.float32))
        np.testing.assert_allclose(tab.Y[r], y[st_ids.index(vid)], rtol=1e-12)
    np.testing.assert_allclose(tab.strain, T * 1e-3, atol=1e-12)
    s = tab.summary()
    assert "5 CP result(s) excluded" in s and "timeout after 600 s" in s


def test_nan_in_converged_run_is_excluded_with_its_own_reason(tmp_path):
    ids = _ids(4)
    y = smooth_response(np.zeros((4, 3)))
    write_fingerprints(tmp_path / "fp.h5", ids, np.eye(4, 3))
    write_stresses(tmp_path / "st.h5", ids, y)
    import h5py

    with h5py.File(tmp_path / "st.h5", "a") as f:  # NaN although n_converged says 20
        f["sigma"][2, 7, 0, 0] = np.nan
    tab = build_table(tmp_path / "fp.h5", tmp_path / "st.h5")
    assert len(tab) == 3
    assert tab.excluded_ids == {"ve0002": "NaN/inf in the stress target although status is 'converged'"}


def test_refusals_name_the_problem(files, tmp_path):
    fp, st, fp_ids, mu, st_ids, y = files
    # different increment counts across CP result files
    write_stresses(tmp_path / "st10.h5", ["x1"], smooth_response(np.zeros((1, 3)), T[:11] * 1e-3), t=T[:11])
    with pytest.raises(ValueError, match="increment count: 20 .* vs 10"):
        read_stresses([st, tmp_path / "st10.h5"])
    # not a fingerprint file
    write_fingerprints(tmp_path / "bad.h5", ["a"], np.zeros((1, 4)), fmt="something-else")
    with pytest.raises(ValueError, match="not a fingerprint file .*expected 'matflow-vae3d/fingerprints'"):
        read_fingerprints(tmp_path / "bad.h5")
    with pytest.raises(FileNotFoundError, match="fingerprint file not found"):
        read_fingerprints(tmp_path / "missing.h5")
    # nothing in common
    write_fingerprints(tmp_path / "other.h5", ["zz1", "zz2"], np.zeros((2, 4)))
    with pytest.raises(ValueError, match="share no VE id"):
        build_table(tmp_path / "other.h5", st)
    # everything excluded
    write_stresses(
        tmp_path / "allfail.h5",
        fp_ids[:2],
        np.full((2, 21), np.nan),
        status=["failed"] * 2,
        reason=["diverged", "diverged"],
    )
    with pytest.raises(ValueError, match=r"no VE left to learn from after exclusions \(2 x failed: diverged\)"):
        build_table(fp, tmp_path / "allfail.h5")
    # duplicate ids, unknown component, lattice mismatch, fingerprints of two VAEs
    write_fingerprints(tmp_path / "dup.h5", ["a", "a"], np.zeros((2, 4)))
    with pytest.raises(ValueError, match="more than once"):
        read_fingerprints(tmp_path / "dup.h5")
    with pytest.raises(ValueError, match="unknown stress component 'vm'"):
        build_table(fp, st, component="vm")
    write_fingerprints(tmp_path / "cubic.h5", fp_ids, mu, lattice="cF")
    with pytest.raises(ValueError, match="'cF' VEs but the CP results of 'hP'"):
        build_table(tmp_path / "cubic.h5", st)
    write_fingerprints(tmp_path / "vaeB.h5", ["b1"], np.zeros((1, 4)), model_sha256="vae-B")
    with pytest.raises(ValueError, match="different VAEs"):
        read_fingerprints([fp, tmp_path / "vaeB.h5"])
    # files without decoded statistics: 'auto' reads the summary, 'decoded' says what to do
    assert read_fingerprints(fp, "auto").inputs == "summary"
    with pytest.raises(ValueError, match="no decoded statistics.*vae3d fingerprint"):
        read_fingerprints(fp, "decoded")
    mu_nan = mu.copy()
    mu_nan[3, 1] = np.nan
    write_fingerprints(tmp_path / "nan.h5", fp_ids, mu_nan)
    with pytest.raises(ValueError, match="NaN"):
        read_fingerprints(tmp_path / "nan.h5")


def test_split_is_deterministic_stable_and_has_the_requested_fractions():
    ids = _ids(4000)
    a = split_by_id(ids, 0.1, 0.2, seed=3)
    np.testing.assert_array_equal(a, split_by_id(ids, 0.1, 0.2, seed=3))
    # adding rows (and shuffling) never moves an existing VE to another split
    more = ids[::-1] + _ids(500, "new")
    b = dict(zip(more, split_by_id(more, 0.1, 0.2, seed=3)))
    assert all(b[v] == s for v, s in zip(ids, a))
    # fractions within 4 binomial standard deviations
    for name, p in (("val", 0.1), ("test", 0.2), ("train", 0.7)):
        frac = np.mean(a == name)
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / len(ids)), (name, frac)
    assert np.mean(a != split_by_id(ids, 0.1, 0.2, seed=4)) > 0.2  # the seed matters
    # rotated copies (vae3d rotate-cp) share their original's split
    np.testing.assert_array_equal(split_by_id([f"{v}@r07" for v in ids[:200]], 0.1, 0.2, seed=3), a[:200])
    with pytest.raises(ValueError, match="sum < 1"):
        split_by_id(ids, 0.6, 0.5)


def test_scaling_round_trip_and_prediction_comes_back_in_mpa():
    y = smooth_response(np.random.default_rng(0).normal(size=(50, 3)))[:, 1:]
    for mode in ("global", "per_increment"):
        sc = MinMaxScaling.fit(y, mode=mode, margin=0.05)
        s = sc.transform(y)
        assert s.min() == pytest.approx(0.05 / 1.1) and s.max() == pytest.approx(1.05 / 1.1)
        np.testing.assert_allclose(sc.inverse(s), y, rtol=1e-12, atol=1e-9)
        assert MinMaxScaling.from_dict(sc.to_dict()).to_dict() == sc.to_dict()
    sc = MinMaxScaling.fit(y, mode="global", margin=0.0)
    assert sc.lo[0] == pytest.approx(y.min()) and sc.hi[0] == pytest.approx(y.max())
    # a network whose sigmoid outputs the constant 0.25: the surrogate returns
    # lo + 0.25 (hi - lo) MPa at every loaded state and the initial value at state 0
    net = EnsembleMLP(latent_dim=3, hidden=4, n_out=20, n_members=1)
    with torch.no_grad():
        net.W2.zero_()
        net.b2.fill_(math.log(0.25 / 0.75))
    sur = Surrogate(
        net,
        sc,
        {"latent_dim": 3, "model_sha256": "x", "t": T.tolist(), "strain": (T * 1e-3).tolist(), "initial_value": 0.0},
    )
    mean, std = sur.predict(np.zeros((2, 3)))
    np.testing.assert_allclose(mean[:, 1:], y.min() + 0.25 * (y.max() - y.min()), rtol=1e-6)
    assert np.all(mean[:, 0] == 0) and np.all(std == 0)
    with pytest.raises(ValueError, match="NaN"):
        MinMaxScaling.fit(np.array([[1.0, np.nan]]))


def test_ensemble_member_is_the_paper_mlp():
    torch.manual_seed(0)
    ens = EnsembleMLP(latent_dim=256, hidden=512, n_out=21, n_members=3)
    x = torch.randn(7, 256)
    out = ens(x)
    assert out.shape == (3, 7, 21) and torch.all((out > 0) & (out < 1))
    for m in range(3):
        paper = ens.member(m)
        assert isinstance(paper, PaperMLP)
        assert [type(l).__name__ for l in paper] == ["Linear", "LeakyReLU", "Linear", "Sigmoid"]
        assert paper[0].weight.shape == (512, 256) and paper[2].weight.shape == (21, 512)
        torch.testing.assert_close(paper(x), out[m], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[0], out[1])  # members are initialised independently
    # one batch per member gives each member its own inputs
    xm = torch.randn(3, 5, 256)
    torch.testing.assert_close(ens(xm)[1], ens.member(1)(xm[1]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected inputs \(B, 256\)"):
        ens(torch.randn(4, 128))


def _tiny_surrogate(latent_dim=4, members=3, sha="vae-A", seed=0):
    torch.manual_seed(seed)
    net = EnsembleMLP(latent_dim, 8, 20, members)
    sc = MinMaxScaling.fit(np.array([[0.0] * 20, [200.0] * 20]))
    return Surrogate(
        net,
        sc,
        {
            "latent_dim": latent_dim,
            "model_sha256": sha,
            "t": T.tolist(),
            "strain": (T * 1e-3).tolist(),
            "initial_value": 0.0,
            "calibration_scale": 1.7,
            "train_ids": ["a"],
            "config": {"x": 1},
        },
    )


def test_checkpoint_loads_with_weights_only_and_refuses_other_fingerprints(tmp_path):
    sur = _tiny_surrogate()
    p = sur.save(tmp_path / "s.ckpt")
    raw = torch.load(p, weights_only=True)
    assert raw["latent_dim"] == 4 and raw["model_sha256"] == "vae-A"
    assert raw["scaling"]["mode"] == "global"
    back = Surrogate.load(p)
    x = np.random.default_rng(0).normal(size=(5, 4))
    for a, b in zip(sur.predict(x), back.predict(x)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert back.calibration_scale == 1.7
    before = p.read_bytes()
    with pytest.raises(FileExistsError):
        _tiny_surrogate(seed=1).save(p)
    assert p.read_bytes() == before
    from matflow_vae3d.surrogate.table import Fingerprints

    with pytest.raises(ValueError, match="trained on 4-dimensional fingerprints.*8-dimensional"):
        back.check_fingerprints(Fingerprints(["a"], np.zeros((1, 8)), "vae-A", 8))
    with pytest.raises(ValueError, match="different VAEs live in different latent spaces"):
        back.check_fingerprints(Fingerprints(["a"], np.zeros((1, 4)), "vae-B", 4))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable surrogate checkpoint"):
        Surrogate.load(tmp_path / "junk.ckpt")


def test_decoded_statistics_of_another_kind_are_refused(tmp_path):
    """Decoded statistics of one view and their mean over rolls are different inputs:
    files of both kinds are not mixed, and a surrogate saved before kinds were recorded
    (trained on one view) refuses the mean over rolls, and vice versa."""
    from matflow_vae3d.vae.fingerprints import DECODED_STATS_ONE_VIEW, DECODED_STATS_ROLLS
    from matflow_vae3d.vae.fingerprints import write_fingerprints as write_fp

    dec = np.random.default_rng(0).random((2, 4)).astype(np.float32)
    kw = dict(model_sha256="vae-A", lattice="hP", grid=16, source="t", decoded_stats=dec)
    write_fp(tmp_path / "one.h5", ["a", "b"], np.zeros((2, 3)), decoded_stats_kind=DECODED_STATS_ONE_VIEW, **kw)
    write_fp(tmp_path / "rolls.h5", ["c", "d"], np.zeros((2, 3)), decoded_stats_kind=DECODED_STATS_ROLLS, **kw)
    with pytest.raises(ValueError, match="unknown decoded statistics kind"):
        write_fp(
            tmp_path / "bad.h5", ["e"], np.zeros((1, 3)), decoded_stats_kind="mine", **{**kw, "decoded_stats": dec[:1]}
        )
    assert not (tmp_path / "bad.h5").exists()
    one, rolls = read_fingerprints(tmp_path / "one.h5", "decoded"), read_fingerprints(tmp_path / "rolls.h5", "decoded")
    assert (one.input_kind, rolls.input_kind) == (DECODED_STATS_ONE_VIEW, DECODED_STATS_ROLLS)
    assert read_fingerprints(tmp_path / "rolls.h5", "summary").input_kind == ""
    np.testing.assert_array_equal(rolls.mu, dec)
    with pytest.raises(ValueError, match="decoded statistics of kind"):
        read_fingerprints([tmp_path / "one.h5", tmp_path / "rolls.h5"], "decoded")
    legacy = _tiny_surrogate()
    legacy.meta["inputs"] = "decoded"  # saved before 2026-12-07: no 'input_kind'
    assert legacy.input_kind == DECODED_STATS_ONE_VIEW
    legacy.check_fingerprints(one)
    with pytest.raises(ValueError, match="retrain the surrogate"):
        legacy.check_fingerprints(rolls)
    new = _tiny_surrogate()
    new.meta.update(inputs="decoded", input_kind=DECODED_STATS_ROLLS)
    back = Surrogate.load(new.save(tmp_path / "new.ckpt"))
    assert back.input_kind == DECODED_STATS_ROLLS
    back.check_fingerprints(rolls)
    with pytest.raises(ValueError, match="decoded statistics of kind"):
        back.check_fingerprints(one)


def test_coverage_and_calibration_scale():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    m = np.zeros(4)
    s = np.ones(4)
    assert coverage(y, m, s, k=2) == 0.75  # |3| > 2
    assert coverage(y, m, s, k=1) == 0.5  # 0 and 1 inside (boundary counts)
    assert coverage(y, m, 0 * s, k=2) == 0.25  # only the exact prediction
    # Gaussian errors whose predicted spread is 2x too small: the fitted factor is ~2
    # and restores the nominal 95.45 % coverage on fresh data
    rng = np.random.default_rng(0)
    sd = rng.uniform(0.5, 3.0, size=20000)
    y_fit = rng.normal(0, sd)
    k = fit_calibration_scale(y_fit, np.zeros_like(sd), sd / 2)
    assert k == pytest.approx(2.0, rel=0.03)
    y_new = rng.normal(0, sd)
    assert coverage(y_new, 0 * sd, sd / 2, 2) == pytest.approx(math.erf(1 / math.sqrt(2)), abs=0.01)
    assert coverage(y_new, 0 * sd, k * sd / 2, 2) == pytest.approx(COVERAGE_2SIGMA, abs=0.005)
    with pytest.raises(ValueError, match="spread is zero"):
        fit_calibration_scale(y_fit, 0 * sd, 0 * sd)


def test_regression_metrics_definitions():
    y = smooth_response(np.random.default_rng(0).normal(size=(30, 3)))
    pred = y + 1.0
    pred[:, 5] += 2.0  # increment 5: 3 MPa off
    m = regression_metrics(y, pred)
    assert len(m["mae_mpa"]) == 20
    assert m["mae_mpa"][4] == pytest.approx(3.0) and m["mae_mpa"][0] == pytest.approx(1.0)
    assert m["mae_mpa_mean"] == pytest.approx((19 + 3) / 20)
    assert m["mae_mpa_sd"] == pytest.approx(np.std([1.0] * 19 + [3.0]))
    np.testing.assert_allclose(m["rel_pct"][0], np.mean(100 / np.abs(y[:, 1])))
    assert 0.99 < m["r2"] < 1
    assert regression_metrics(y, y)["r2"] == 1.0


def test_orientation_features_are_volume_weighted_and_symmetry_invariant():
    import damask

    from matflow_vae3d.surrogate.baselines import orientation_features

    rng = np.random.default_rng(0)
    gm = rng.integers(0, 5, size=(8, 8, 8))
    o = damask.Orientation.from_random(shape=5, lattice="hP", rng_seed=2)
    q = o.quaternion
    f = orientation_features(q, gm, "hP")
    assert f.shape == (18 + 24 + 1,)
    assert f[:18].sum() == pytest.approx(18.0)  # volume fractions x n_bins
    # any symmetry-equivalent orientation of each grain gives the same features
    eq = o.equivalent.quaternion  # (n_ops, 5, 4)
    q_eq = eq[rng.integers(1, len(eq), size=5), np.arange(5)]
    assert not np.allclose(q_eq, q)
    np.testing.assert_allclose(orientation_features(q_eq, gm, "hP")[:18], f[:18], atol=1e-6)
    # a single grain with its c axis along the loading direction x: all weight in the
    # |cos(c, x)| ~ 1 bins
    c_along_x = damask.Rotation.from_Euler_angles([90, 90, 0], degrees=True).quaternion
    f1 = orientation_features(c_along_x[None], np.zeros((4, 4, 4), int), "hP")
    assert f1[:18].reshape(6, 3)[-1].sum() == pytest.approx(18.0)


def test_read_stresses_ignores_rows_of_an_interrupted_append(tmp_path):
    """Rows at or beyond the CP results file's n_committed (a simulate run killed mid-row)
    are not part of the table."""
    import h5py

    sxx = np.linspace(0, 80, len(T))[None].repeat(3, 0)
    write_stresses(tmp_path / "st.h5", ["a", "b", ""], sxx)
    with h5py.File(tmp_path / "st.h5", "a") as f:
        f.attrs["n_committed"] = 2
    st = read_stresses(tmp_path / "st.h5")
    assert [str(v) for v in st.ve_id] == ["a", "b"]
    assert st.sigma.shape[0] == 2 and len(st.status) == 2 and len(st.n_converged) == 2


def test_read_stresses_uses_the_cp_reader_and_names_the_file(tmp_path):
    """read_stresses reads through cp.results.read_results: rows of a real interrupted
    append (only some datasets grown) are skipped, what the CP reader refuses is refused
    with the file named, and duplicate ids within or across files are refused."""
    import h5py

    from matflow_vae3d.cp.results import read_results

    sxx = np.linspace(0, 80, len(T))[None].repeat(2, 0)
    a = write_stresses(tmp_path / "a.h5", ["a0", "a1"], sxx)
    # a crash half-way through a third append: two datasets grown, count not committed
    with h5py.File(a, "r+") as f:
        for name in ("ve_id", "sigma"):
            f[name].resize(3, axis=0)
        f["ve_id"][2] = "half-written"
    st = read_stresses(a)
    r = read_results(a)
    assert list(st.ve_id) == list(r["ve_id"]) == ["a0", "a1"]
    np.testing.assert_array_equal(st.sigma, r["sigma"])
    np.testing.assert_array_equal(st.F, r["F"])
    np.testing.assert_array_equal(st.n_converged, r["n_converged"])
    assert (st.lattice, st.loadcase) == (r["lattice"], r["loadcase"])
    # across files: ids must be unique; the message names both files
    b = write_stresses(tmp_path / "b.h5", ["b0", "a1"], sxx)
    with pytest.raises(ValueError, match=r"'a1' occurs more than once, in .*a\.h5 and .*b\.h5"):
        read_stresses([a, b])
    # within one file
    dup = write_stresses(tmp_path / "dup.h5", ["d", "d"], sxx)
    with pytest.raises(ValueError, match=r"dup\.h5: CP results: 1 VE id\(s\) occur more than once"):
        read_stresses(dup)
    # a dataset missing, no n_committed, not a CP results file, not HDF5, not there
    with h5py.File(b, "r+") as f:
        del f["F"]
    with pytest.raises(ValueError, match=r"b\.h5: CP results file lacks dataset 'F'"):
        read_stresses([a, b])
    with h5py.File(a, "r+") as f:
        del f.attrs["n_committed"]
    with pytest.raises(ValueError, match=r"a\.h5: CP results file lacks the root attribute 'n_committed'"):
        read_stresses(a)
    fp = write_fingerprints(tmp_path / "fp.h5", ["a0"], np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"fp\.h5 is not a CP results file"):
        read_stresses(fp)
    (tmp_path / "notes.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"notes\.h5 is not an HDF5 file"):
        read_stresses(tmp_path / "notes.h5")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        read_stresses(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="no CP result file given"):
        read_stresses([])
