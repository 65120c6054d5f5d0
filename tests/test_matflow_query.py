"""Queries of a results store (matflow.query): the roll-invariant summary ranks a VE's
periodically rolled copy first (mu would not), stresses rank in MPa at a chosen strain,
and failures are listed with their reasons."""

from __future__ import annotations

import numpy as np
import pytest

from matflow_vae3d.matflow import query


def test_similarity_ranks_a_rolled_copy_first(tmp_path):
    from vae_helpers import write_ves_with_rolled_copy

    from matflow_vae3d.vae import pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import fingerprint_dataset
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    write_ves_with_rolled_copy(tmp_path / "ves.h5", 6, 40, "v")
    model, meta = load_model(pretrained_path("hP"))
    fingerprint_dataset(model, meta, tmp_path / "ves.h5", tmp_path / "fp.h5", progress=False)
    fp = read_fingerprints(tmp_path / "fp.h5")
    n = len(fp["ve_id"])
    data = {"ve_id": fp["ve_id"], "has_fingerprint": np.ones(n, bool), "summary": fp["summary"], "reason": [""] * n}
    near = query.similar(data, "v0", k=3)
    assert near[0]["ve_id"] == "v0-rolled" and near[0]["distance"] < 0.3 * near[1]["distance"]
    assert query.similar(data, "v0-rolled", k=1)[0]["ve_id"] == "v0"
    # mu, the spatial latent, moves with the roll: the copy is as far as another VE
    mu = fp["mu"]
    d_mu = np.linalg.norm(mu - mu[0], axis=1)
    assert d_mu[6] > 0.5 * np.median(d_mu[1:6])
    with pytest.raises(ValueError, match="no VE 'nope'"):
        query.similar(data, "nope")


def _data():
    t = np.linspace(0, 10, 11)
    eps = 1e-3 * t
    F = np.tile(np.eye(3), (3, 11, 1, 1))
    F[:, :, 0, 0] += eps
    sigma = np.zeros((3, 11, 3, 3))
    for i, top_mpa in enumerate((80.0, 120.0, 100.0)):
        sigma[i, :, 0, 0] = top_mpa * 1e6 * eps / eps[-1]
    return {
        "ve_id": np.array(["a", "b", "c"], dtype=object),
        "status": np.array(["converged", "converged", "failed"], dtype=object),
        "reason": np.array(["", "", "diverged at increment 3"], dtype=object),
        "shard": np.array([0, 0, 1]),
        "t": t,
        "F": F,
        "sigma": sigma,
    }


def test_top_in_mpa_at_a_strain_and_failures():
    d = _data()
    assert [r["ve_id"] for r in query.top(d, "sigma_xx", k=2)] == ["b", "a"]  # c failed: not ranked
    r = query.top(d, "sigma_xx@0.005", k=1, ascending=True)[0]
    assert r["ve_id"] == "a" and r["value_MPa"] == pytest.approx(40.0) and r["strain"] == pytest.approx(0.005)
    with pytest.raises(ValueError, match="unknown quantity 'stress'"):
        query.top(d, "stress")
    elems = {"simulate": [{"status": "error", "task": "simulate_uniaxial", "element": 1, "error": "bad material"}]}
    rows = query.failed(d, elems)
    assert rows[0] == {
        "kind": "simulate run",
        "task": "simulate_uniaxial",
        "element": 1,
        "ve_id": "",
        "reason": "bad material",
    }
    assert rows[1]["ve_id"] == "c" and "diverged" in rows[1]["reason"]


def test_add_fingerprint_exits_nonzero_with_the_failed_runs_reason(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from matflow_vae3d.commands import matflow as cmd
    from matflow_vae3d.matflow import export, install, workflows

    res = {"workflow": str(tmp_path), "task": "fingerprint_VE_1", "task_index": 5, "statuses": ["success", "error"]}
    monkeypatch.setattr(install, "_load_config", lambda d: None)
    monkeypatch.setattr(workflows, "add_fingerprint", lambda *a, **k: res)
    err = {"task": "fingerprint_VE_1", "element": 1, "error": "the VEs of ves.h5 have grid 18x16x16, but ..."}
    monkeypatch.setattr(export, "workflow_elements", lambda w: {"fingerprint": [err], "simulate": []})
    r = CliRunner().invoke(cmd.matflow_group, ["add-fingerprint", str(tmp_path)])
    assert r.exit_code != 0 and "1 of 2 elements of fingerprint_VE_1 failed; element 1: the VEs of ves.h5" in r.output


def test_files_given_to_the_wrong_option_are_named(tmp_path):
    """A surrogate passed as a VAE, a VAE as a surrogate, a fingerprint file or a VE
    dataset as a checkpoint: each message says what the file is and where it goes, never
    torch's advice to load with weights_only=False."""
    from matflow_vae3d.datasets import write_ves
    from matflow_vae3d.microstructure import generate_ve, get_preset
    from matflow_vae3d.surrogate.ensemble import Surrogate
    from matflow_vae3d.surrogate.from_ves import pretrained_surrogate_path
    from matflow_vae3d.vae import pretrained_path
    from matflow_vae3d.vae.checkpoint import load_model

    with pytest.raises(
        ValueError, match="is not a VAE checkpoint: it is a surrogate checkpoint: use it with vae3d predict"
    ):
        load_model(pretrained_surrogate_path())
    with pytest.raises(ValueError, match="is not a surrogate checkpoint: it is a VAE checkpoint"):
        Surrogate.load(pretrained_path("hP"))
    ve = generate_ve(get_preset("train", grid=8, lattice="hP"), seed=1)
    write_ves(tmp_path / "ves.h5", [ve], progress=False)
    for load in (load_model, Surrogate.load):
        with pytest.raises(ValueError, match="it is a VE dataset: give it to --data") as exc:
            load(tmp_path / "ves.h5")
        assert "weights_only=False" not in str(exc.value)
