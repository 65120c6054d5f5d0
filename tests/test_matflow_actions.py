"""The plugin's actions called directly (outside MatFlow): shard reproducibility,
MatFlow volume_element inputs, load-case parsing, failure records, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matflow_vae3d.matflow import actions
from matflow_vae3d.matflow.campaign import CP_S_PER_VE


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("MATFLOW_WK_PATH", "MATFLOW_RUN_ID", "MATFLOW_RUN_NUM_CORES"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    import torch

    from matflow_vae3d.vae import ResNetVAE3d, preset_config, save_model

    torch.manual_seed(1)
    model = ResNetVAE3d(preset_config("small", latent=8, hidden=32, widths=(4, 8, 8, 8)))
    return save_model(tmp_path_factory.mktemp("vae") / "vae.pt", model.eval(), "hP")


def _ves(path):
    from matflow_vae3d.datasets import VEDataset

    with VEDataset(str(path)) as ds:
        return list(ds)


def test_generate_shards_reproducible_and_independent(in_tmp, monkeypatch):
    kw = dict(VEs_per_shard=2, crystal_structure="hP", VE_grid=16, VE_seed=5, VE_id_prefix="x")
    monkeypatch.setenv("MATFLOW_RUN_ID", "1")
    a = _ves(in_tmp / actions.generate_VE(VE_shard=0, **kw)["VE_dataset"])
    monkeypatch.setenv("MATFLOW_RUN_ID", "2")
    b = _ves(in_tmp / actions.generate_VE(VE_shard=0, **kw)["VE_dataset"])
    monkeypatch.setenv("MATFLOW_RUN_ID", "3")
    c = _ves(in_tmp / actions.generate_VE(VE_shard=1, **kw)["VE_dataset"])
    assert [v.ve_id for v in a] == ["x-00000-000000", "x-00000-000001"]
    assert [v.ve_id for v in c] == ["x-00001-000000", "x-00001-000001"]
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.grain_map, v.grain_map)
        np.testing.assert_array_equal(u.quaternions, v.quaternions)
    assert all(v.lattice == "hP" and v.grid == (16, 16, 16) for v in a + c)
    seeds = {v.seed for v in a + c}
    assert len(seeds) == 4  # no VE repeated across shards
    assert not np.array_equal(a[0].grain_map, c[0].grain_map)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(VEs_per_shard=0), "VEs_per_shard"),
        (dict(VEs_per_shard=1, VE_overrides={"colour": 1}), "unknown keys"),
        (dict(VEs_per_shard=1, VE_preset="nope"), "unknown preset"),
        (dict(VEs_per_shard=1, VE_shard=-1), "VE_shard"),
    ],
)
def test_generate_bad_input(in_tmp, bad, match):
    with pytest.raises(ValueError, match=match):
        actions.generate_VE(VE_grid=16, **bad)
    assert not list(in_tmp.rglob("*.h5"))


def test_matflow_shards_are_the_cli_ves(in_tmp):
    """Shard 1 of 2-VE shards with VE_seed 7 holds VEs 2 and 3 of
    `vae3d generate --preset train --seed 7` (same grid and lattice): one seed rule."""
    from click.testing import CliRunner

    from matflow_vae3d.cli import cli
    from matflow_vae3d.datasets import VEDataset

    rel = actions.generate_VE(VEs_per_shard=2, VE_shard=1, VE_seed=7, crystal_structure="hP", VE_grid=12)
    r = CliRunner().invoke(
        cli,
        [
            "generate",
            "--preset",
            "train",
            "--count",
            "4",
            "--grid",
            "12",
            "--seed",
            "7",
            "--lattice",
            "hP",
            "--out",
            str(in_tmp / "cli.h5"),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    with VEDataset(str(in_tmp / rel["VE_dataset"])) as mf, VEDataset(str(in_tmp / "cli.h5")) as c:
        for i in range(2):
            a, b = mf[i], c[2 + i]
            np.testing.assert_array_equal(a.grain_map, b.grain_map)
            np.testing.assert_array_equal(a.quaternions, b.quaternions)
            assert mf.seed(i) == c.seed(2 + i)


def test_volume_element_inputs_match_dataset(in_tmp, tiny_vae):
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import fingerprint_dataset
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    ds = in_tmp / actions.generate_VE(VEs_per_shard=2, crystal_structure="hP", VE_grid=16)["VE_dataset"]
    vols = [actions.to_volume_element(str(ds), VE_index=i)["volume_element"] for i in range(2)]
    assert set(vols[0]["constituent_phase_label"]) == {"Mg"}
    named = actions.to_volume_element(str(ds), VE_index=0, phase_label="AZ31")["volume_element"]
    assert set(named["constituent_phase_label"]) == {"AZ31"}
    np.testing.assert_array_equal(named["element_material_idx"], vols[0]["element_material_idx"])
    with pytest.raises(ValueError, match="phase_label must be a non-empty string"):
        actions.to_volume_element(str(ds), phase_label="")
    ids = [actions.volume_element_id(v) for v in vols]
    assert ids[0] != ids[1] and ids[0] == actions.volume_element_id(dict(vols[0]))
    model, meta = load_model(tiny_vae)
    fingerprint_dataset(model, meta, ds, in_tmp / "ref.h5", progress=False)
    ref = read_fingerprints(in_tmp / "ref.h5")["mu"]
    for i, vol in enumerate(vols):
        out = actions.fingerprint_volume_element(vol, VAE_checkpoint=str(tiny_vae))
        np.testing.assert_allclose(out["VE_fingerprint"], ref[i], rtol=1e-5, atol=1e-6)
        f = read_fingerprints(in_tmp / out["fingerprints"])
        assert f["ve_id"] == [ids[i]] and f["lattice"] == "hP"


def test_loadcase_of():
    from matflow_vae3d.cp.loadcase import LoadCase

    assert actions.loadcase_of(None).to_damask() == LoadCase.uniaxial().to_damask()
    lc = actions.loadcase_of({"axis": 1, "N": 4, "strain": 0.002})
    assert lc.n_increments == 4 and lc.steps[0].deformation[1, 1] == pytest.approx(1e-3)
    assert actions.loadcase_of(LoadCase.uniaxial(N=3).to_damask()).n_increments == 3
    with pytest.raises(ValueError, match="unknown keys"):
        actions.loadcase_of({"strain_rate": 1})


def test_missing_inputs_and_failure_record(in_tmp, monkeypatch):
    with pytest.raises(FileNotFoundError, match="VE dataset not found: nope.h5"):
        actions.simulate_uniaxial("nope.h5")
    with pytest.raises(FileNotFoundError, match="VAE checkpoint"):
        actions.fingerprint_VE("nope.h5", VAE_checkpoint="missing.pt")
    monkeypatch.setenv("MATFLOW_WK_PATH", str(in_tmp))
    monkeypatch.setenv("MATFLOW_RUN_ID", "42")
    with pytest.raises(FileNotFoundError):
        actions.run_action("simulate_uniaxial", {"VE_dataset": "nope.h5"})
    rec = json.loads(actions.failure_record_path(in_tmp, 42).read_text())
    assert rec["action"] == "simulate_uniaxial" and "nope.h5" in rec["error"]
    from matflow_vae3d.matflow.export import run_failure_message

    assert "nope.h5" in run_failure_message(in_tmp, 42)


def test_train_and_evaluate_vae_from_shards(in_tmp, monkeypatch):
    """train_VAE streams the shards into train/val files (the last VAE_val_VEs VEs
    held out) and trains; evaluate_VAE reports a finite reconstruction error."""
    from matflow_vae3d.datasets import VEDataset
    from matflow_vae3d.vae.checkpoint import load_model

    shards = []
    for s in range(2):
        monkeypatch.setenv("MATFLOW_RUN_ID", str(10 + s))
        shards.append(
            actions.generate_VE(VEs_per_shard=2, VE_shard=s, crystal_structure="hP", VE_grid=16, VE_id_prefix="v")[
                "VE_dataset"
            ]
        )
    monkeypatch.setenv("MATFLOW_RUN_ID", "20")
    cfg = {
        "preset": "small",
        "epochs": 1,
        "batch_size": 3,
        "latent_dim": 4,
        "hidden": 16,
        "widths": [4, 4, 4, 4],
        "seed": 0,
    }
    with pytest.raises(ValueError, match="unknown keys"):
        actions.train_VAE(shards, VAE_val_VEs=1, VAE_config={"depth": 3})
    ckpt = actions.train_VAE(shards, VAE_val_VEs=1, VAE_config=cfg)["VAE_checkpoint"]
    run_dir = (in_tmp / ckpt).parent
    with VEDataset(str(run_dir / "train.h5")) as tr, VEDataset(str(run_dir / "val.h5")) as va:
        assert tr.ve_ids == ["v-00000-000000", "v-00000-000001", "v-00001-000000"]
        assert va.ve_ids == ["v-00001-000001"]
    model, meta = load_model(in_tmp / ckpt)
    assert meta["lattice"] == "hP" and meta["grid"] == 16 and model.config.latent == 4
    ev = actions.evaluate_VAE(ckpt, shards[1])
    assert ev["VAE_metrics"]["n"] == 2 and 0 <= ev["VAE_metrics"]["deg_mean"] <= 180
    assert (in_tmp / ev["VAE_plots"][0]).is_file()


def test_ensure_split_small_campaign():
    """A 9-VE campaign whose hash split has no test VE gets the next seed that has one;
    the manifest records it, and the split is the library's for that seed."""
    from types import SimpleNamespace

    from matflow_vae3d.surrogate.table import split_by_id

    ids = np.array([f"demo-{s:05d}-{i:06d}" for s in range(3) for i in range(3)], dtype=object)
    man = {"seed": 0, "val_fraction": 0.15, "test_fraction": 0.25}
    start = next(sd for sd in range(100) if "test" not in set(split_by_id(ids, 0.15, 0.25, sd)))
    man["seed"] = start
    table = SimpleNamespace(ve_id=ids, split=split_by_id(ids, 0.15, 0.25, start), seed=start)
    actions._ensure_split(table, man)
    assert man["seed"] > start and table.seed == man["seed"]
    assert {"train", "val", "test"} <= set(table.split)
    assert list(table.split) == list(split_by_id(ids, 0.15, 0.25, man["seed"]))
    with pytest.raises(ValueError, match="cannot split"):
        actions._ensure_split(
            SimpleNamespace(ve_id=ids[:1], split=np.array(["train"]), seed=0),
            {"seed": 0, "val_fraction": 0.1, "test_fraction": 0.1},
            tries=5,
        )


def test_damask_solver_without_damask_grid_fails_clearly(in_tmp, monkeypatch):
    monkeypatch.delenv("DAMASK_GRID", raising=False)
    monkeypatch.setenv("PATH", str(in_tmp))  # no DAMASK_grid anywhere
    ds = actions.generate_VE(VEs_per_shard=1, crystal_structure="hP", VE_grid=16)["VE_dataset"]
    with pytest.raises(FileNotFoundError, match="DAMASK_grid"):
        actions.simulate_uniaxial(ds, CP_solver="damask")
    assert not list((in_tmp / "vae3d_data").glob("simulate_uniaxial/*.h5"))


def test_campaign_scale_check_refuses_large_direct_runs():
    """The campaign templates' first task: the paper's scale on the direct scheduler is
    refused with its cost (VAE training included: ~15,000 CPU-hours, CP at the measured
    700 s per 64³ VE); coarse CP ('auto': K = 2 for 64³ `train` VEs) prices CP as a
    32³ run; the same on SLURM, a confirmed run, or a small one pass and report the plan."""
    big = {
        "scheduler": "direct",
        "VEs_per_shard": 1000,
        "n_train_shards": 110,
        "n_campaign_shards": 50,
        "grid": 64,
        "vae_epochs": 100,
    }
    with pytest.raises(ValueError, match=r"about 15,0\d\d CPU-hours .*CP 700 s per 64³ VE\).*confirm_scale"):
        actions.check_campaign_scale(big)
    plan = actions.check_campaign_scale({**big, "scheduler": "slurm"})["campaign_plan"]
    assert plan["cp_hours_per_shard"] == pytest.approx(1000 * CP_S_PER_VE[64] / 3600) and not plan["cp_extrapolated"]
    assert actions.check_campaign_scale({**big, "confirmed": "true"})["campaign_plan"]["confirmed"]
    shipped = {**big, "n_train_shards": 0, "vae_epochs": 0, "cp_coarsen": "auto", "scheduler": "slurm"}
    plan = actions.check_campaign_scale(shipped)["campaign_plan"]
    assert plan["cp_coarsen"] == 2 and plan["cp_s_per_VE"] == CP_S_PER_VE[32] and plan["cpu_hours"]["train_VAE"] == 0
    with pytest.raises(ValueError, match=r"solved on its grid / 2"):
        actions.check_campaign_scale({**shipped, "scheduler": "direct"})
    with pytest.raises(ValueError, match="cp_coarsen 3 must be auto or a positive divisor of the grid 64"):
        actions.check_campaign_scale({**shipped, "cp_coarsen": 3})
    small = {**big, "VEs_per_shard": 4, "n_train_shards": 3, "n_campaign_shards": 2, "grid": 16, "vae_epochs": 1}
    plan = actions.check_campaign_scale(small)["campaign_plan"]
    assert plan["cpu_hours_total"] < 0.1 and not plan["cp_extrapolated"]
    with pytest.raises(ValueError, match="missing keys"):
        actions.check_campaign_scale({"scheduler": "direct"})


def test_fingerprint_tasks_take_a_non_cubic_grid(in_tmp):
    """The MatFlow fingerprint and VAE-evaluation tasks with the shipped VAE on VEs of a
    non-cubic grid (8x12x16), as a dataset shard and as MatFlow volume_elements; the
    fingerprint file records the latent grid."""
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    ds = in_tmp / actions.generate_VE(VEs_per_shard=2, crystal_structure="hP", VE_grid=[8, 12, 16])["VE_dataset"]
    fp = read_fingerprints(in_tmp / actions.fingerprint_VE(str(ds))["fingerprints"])
    assert fp["latent_shape"] == (16, 2, 3, 4) and list(fp["grid"]) == [8, 12, 16] and len(fp["ve_id"]) == 2
    vol = actions.to_volume_element(str(ds), VE_index=1)["volume_element"]
    one = actions.fingerprint_volume_element(vol)
    np.testing.assert_allclose(one["VE_fingerprint"], fp["mu"][1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(one["VE_summary"], fp["summary"][1], rtol=1e-4, atol=1e-5)  # grid-free
    m = actions.evaluate_VAE("pretrained", str(ds))["VAE_metrics"]
    assert m["n"] == 2 and 0 < m["deg_mean"] < 40


def test_campaign_material_checked_before_anything_runs(in_tmp):
    """The templates' first task checks the material, the crystal structure and the load
    case: a missing file, a phase without plasticity and a lattice mismatch are one line
    each; a user's phase file passes and is named in the plan."""
    import yaml

    from matflow_vae3d.cp.materials import load_phase

    with pytest.raises(FileNotFoundError, match="material file not found: nope.yaml"):
        actions.check_campaign_scale({"material": "nope.yaml", "crystal_structure": "hP"})
    _, cu = load_phase("Cu")
    (in_tmp / "MyCopper.yaml").write_text(yaml.safe_dump(cu))
    elastic = dict(cu, mechanical={k: v for k, v in cu["mechanical"].items() if k != "plastic"})
    (in_tmp / "elastic.yaml").write_text(yaml.safe_dump(elastic))
    with pytest.raises(ValueError, match="elastic.yaml: phase 'elastic' has no plasticity parameters"):
        actions.check_campaign_scale({"material": str(in_tmp / "elastic.yaml")})
    with pytest.raises(ValueError, match="material Mg is hP but the campaign's VEs are cF"):
        actions.check_campaign_scale({"material": "Mg", "crystal_structure": "cF"})
    plan = actions.check_campaign_scale({"material": str(in_tmp / "MyCopper.yaml"), "crystal_structure": "cF"})
    assert plan["campaign_plan"]["material"] == {"name": "MyCopper", "lattice": "cF"}
    with pytest.raises(FileNotFoundError, match="load case file not found"):
        actions.check_campaign_scale({"load": "missing_load.yaml"})
