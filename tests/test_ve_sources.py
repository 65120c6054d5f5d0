"""One VE reader for every command (microstructure.sources.as_ve_dataset): a DAMASK .vti
made by the damask library (+ its material.yaml), a folder of them, and a VE dataset go
through fingerprint, evaluate, reconstruct, latent, simulate --data and predict --data;
errors name the user's file, never a temporary one; evaluate's mean-image baseline
never contains the VE it scores (leave-one-out; omitted for fewer than 3 VEs)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from vae_helpers import cli_run as run


def _vti(folder, name, cells, n_grains, seed, lattice="hP"):
    """A periodic Voronoi VE by the damask library, saved as name.vti + name_material.yaml."""
    import damask

    size = np.array(cells, float) * 1e-6
    seeds = damask.seeds.from_random(size, n_grains, cells, rng_seed=seed)
    g = damask.GeomGrid.from_Voronoi_tessellation(cells, size, seeds)
    g.save(folder / f"{name}.vti")
    ori = damask.Rotation.from_random(n_grains, rng_seed=seed + 1)
    phase = "Mg" if lattice == "hP" else "Cu"
    cfg = damask.ConfigMaterial().material_add(O=ori, phase=phase, homogenization="SX")
    cfg["phase"] = {phase: {"lattice": lattice, **({"c/a": 1.624} if lattice == "hP" else {})}}
    cfg["homogenization"] = {"SX": {"N_constituents": 1, "mechanical": {"type": "pass"}}}
    cfg.save(folder / f"{name}_material.yaml")
    return folder / f"{name}.vti"


@pytest.fixture(scope="module")
def vtis(tmp_path_factory):
    d = tmp_path_factory.mktemp("vtis")
    folder = d / "ves"
    folder.mkdir()
    files = [_vti(folder, f"ve{i}", (8, 8, 12), 6, seed=10 + i) for i in range(3)]
    cubic = d / "cubic"
    cubic.mkdir()
    return {"one": files[0], "folder": folder, "files": files, "cubic": _vti(cubic, "cu", (8, 8, 8), 5, 20, "cF")}


def test_every_vae_command_takes_a_vti_and_a_folder(vtis, tmp_path):
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    run("fingerprint", "--model", "pretrained", "--data", vtis["one"], "--out", tmp_path / "one.h5", "--no-progress")
    run("fingerprint", "--model", "pretrained", "--data", vtis["folder"], "--out", tmp_path / "all.h5")
    one, every = read_fingerprints(tmp_path / "one.h5"), read_fingerprints(tmp_path / "all.h5")
    assert one["ve_id"] == ["ve0"] and every["ve_id"] == ["ve0", "ve1", "ve2"] and list(every["grid"]) == [8, 8, 12]
    np.testing.assert_allclose(one["summary"][0], every["summary"][0], rtol=1e-5, atol=1e-6)
    assert "ve0.vti" in one["source"]  # the user's file, not the temporary dataset
    run("reconstruct", "--model", "pretrained", "--data", vtis["one"], "--out", tmp_path / "r.png")
    assert "ve2: hP, grid (8, 8, 12)" in run("show", vtis["folder"], "--index", "2", "--out", tmp_path / "s.png")
    assert "ve0: hP" in run("show", vtis["one"], "--out", tmp_path / "t.png")
    run("latent", "--model", "pretrained", "--train", vtis["folder"], "--out", tmp_path / "lat")
    run("predict", "--model", "pretrained", "--data", vtis["folder"], "--out", tmp_path / "p.h5", "--no-progress")
    with h5py.File(tmp_path / "p.h5") as f:
        assert f["sigma"].shape[0] == 3


def test_evaluate_baselines_never_contain_the_ve(vtis, tmp_path):
    out = run(
        "evaluate", "--model", "pretrained", "--data", vtis["one"], "--no-progress", "--json", tmp_path / "a.json"
    )
    assert "| ve0.vti | VAE | 1 |" in out and "| ve0.vti | identity | 1 |" in out
    assert "mean image |" not in out and "omitted for sets of fewer than 3 VEs" in out
    out = run(
        "evaluate", "--model", "pretrained", "--data", vtis["folder"], "--no-progress", "--json", tmp_path / "b.json"
    )
    doc = json.loads((tmp_path / "b.json").read_text())
    (only,) = doc["sets"].values()
    assert only["baselines"]["mean image"]["deg_mean"] > 20  # leave-one-out: not the VE itself (0 deg)
    assert "leave-one-out" in out


def test_errors_name_the_users_file(vtis, tmp_path):
    from matflow_vae3d.vae import pretrained_path

    hp = pretrained_path("hP")
    out = run("fingerprint", "--model", hp, "--data", vtis["cubic"], "--out", tmp_path / "x.h5", ok=False)
    assert "VEs of cu.vti are 'cF'" in out and "ves.h5" not in out
    out = run("predict", "--model", "pretrained", "--data", vtis["cubic"], "--out", tmp_path / "x.h5", ok=False)
    assert "cu.vti" in out and "ves.h5" not in out
    (tmp_path / "lonely.vti").write_bytes((vtis["one"]).read_bytes())  # no material.yaml beside it
    out = run(
        "fingerprint", "--model", "pretrained", "--data", tmp_path / "lonely.vti", "--out", tmp_path / "y.h5", ok=False
    )
    assert "lonely" in out and "material" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run("fingerprint", "--model", "pretrained", "--data", empty, "--out", tmp_path / "z.h5", ok=False)
    assert "holds no VE files" in out
    assert not any((tmp_path / n).exists() for n in ("x.h5", "y.h5", "z.h5"))


def test_simulate_takes_a_vti_folder_with_the_users_source(vtis, tmp_path):
    from matflow_vae3d.cp.results import read_results

    out = tmp_path / "cp.h5"
    load = tmp_path / "load.yaml"
    load.write_text(
        "solver: {mechanical: spectral_basic}\nloadstep:\n"
        "  - boundary_conditions:\n"
        "      mechanical:\n"
        "        dot_F: [[1.0e-3, 0, 0], [0, x, 0], [0, 0, x]]\n"
        "        P: [[x, x, x], [x, 0, x], [x, x, 0]]\n"
        "    discretization: {t: 2, N: 2}\n"
    )
    run(
        "simulate",
        "--data",
        vtis["files"][0],
        "--data",
        vtis["files"][1],
        "--load",
        load,
        "--out",
        out,
        "--no-progress",
    )
    r = read_results(out)
    assert list(r["ve_id"]) == ["ve0", "ve1"] and set(r["status"]) == {"converged"}
    with h5py.File(out) as f:
        assert "ve0.vti" in f.attrs["source"] and "ve1.vti" in f.attrs["source"]
