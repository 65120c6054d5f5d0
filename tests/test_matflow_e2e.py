"""End to end through `matflow go` in a throw-away MatFlow config: generate VEs in
shards, fingerprint them, run CP uniaxial tension (one shard with an invalid material:
the injected failure), train and evaluate the surrogate; then export the workflow,
add a fingerprint task to it, and check the results against direct library calls."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
N_SHARDS, PER_SHARD, BAD_SHARD = 3, 2, 2
MATFLOW = str(Path(sys.executable).parent / "matflow")


def _tiny_vae(path: Path) -> Path:
    import torch

    from matflow_vae3d.vae import ResNetVAE3d, preset_config, save_model

    torch.manual_seed(0)
    model = ResNetVAE3d(preset_config("small", latent=8, hidden=32, widths=(4, 8, 8, 8)))
    save_model(path, model.eval(), "hP", {"note": "untrained, for tests"})
    return path


TEMPLATE = """
doc: tiny campaign for tests
resources:
  any:
    combine_scripts: true
tasks:
  - schema: generate_VE
    inputs: {{VE_preset: train, crystal_structure: hP, VE_grid: 16, VEs_per_shard: {per}, VE_seed: 3, VE_id_prefix: t}}
    sequences:
      - path: inputs.VE_shard
        values::from_range: {{start: 0, stop: {n}}}
  - schema: fingerprint_VE
    inputs: {{VAE_checkpoint: {ckpt}}}
    resources: {{any: {{skip_downstream_on_failure: false}}}}
    groups: [{{name: campaign}}]
  - schema: simulate_uniaxial
    inputs:
      CP_solver: builtin
      uniaxial_load: {{axis: 0, rate: 1.0e-3, strain: 2.0e-4, N: 2}}
    sequences:
      - path: inputs.CP_material
        values: {materials}
        nesting_order: 0
    nesting_order: {{inputs.VE_dataset: 0}}
    resources: {{any: {{skip_downstream_on_failure: false}}}}
    groups: [{{name: campaign}}]
  - schema: plot_latent_PCA
  - schema: train_surrogate
    inputs:
      surrogate_test_fraction: 0.3
      surrogate_config: {{val_fraction: 0.0, max_epochs: 30, patience: 30, batch_size: 2, hidden: 16}}
  - schema: evaluate_surrogate
"""


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    import matflow as mf

    from matflow_vae3d.matflow.install import install

    d = tmp_path_factory.mktemp("mf_e2e")
    cfg = d / "cfg"
    ckpt = _tiny_vae(d / "vae.pt")
    if mf.is_config_loaded:
        mf.unload_config()
    install(config_dir=cfg)
    materials = ["Mg"] * N_SHARDS
    materials[BAD_SHARD] = "NoSuchMaterial"
    (d / "wk").mkdir()
    tpl = d / "tiny.yaml"
    tpl.write_text(TEMPLATE.format(per=PER_SHARD, n=N_SHARDS, ckpt=ckpt, materials=json.dumps(materials)))
    env = {**os.environ, "MATFLOW_CONFIG_DIR": str(cfg)}
    r = subprocess.run(
        [
            MATFLOW,
            "go",
            str(tpl),
            "--path",
            str(d / "wk"),
            "--wait",
            "--no-status",
            "--name",
            "tiny",
            "--name-no-timestamp",
            "--store",
            "zarr",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=d,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wk = mf.Workflow(str(d / "wk" / "tiny"))
    yield {"dir": d, "cfg": cfg, "ckpt": ckpt, "wk": wk, "env": env}
    mf.unload_config()


def _statuses(task):
    return [el.action_runs[-1].status.name for el in task.elements]


def test_runs_finish_despite_failed_shard(campaign):
    wk = campaign["wk"]
    t = {task.unique_name: task for task in wk.tasks}
    assert _statuses(t["generate_VE"]) == ["success"] * N_SHARDS
    assert _statuses(t["fingerprint_VE"]) == ["success"] * N_SHARDS
    sim = _statuses(t["simulate_uniaxial"])
    assert sim[BAD_SHARD] == "error" and sim.count("success") == N_SHARDS - 1
    assert _statuses(t["train_surrogate"]) == ["success"]
    assert _statuses(t["plot_latent_PCA"]) == ["success"]
    pca = t["plot_latent_PCA"].elements[0].outputs.latent_plots.value
    assert (Path(wk.path) / pca[0]).stat().st_size > 1000
    assert _statuses(t["evaluate_surrogate"]) == ["success"]
    ev = t["evaluate_surrogate"].elements[0]
    plots = ev.outputs.surrogate_plots.value
    assert plots and all((Path(wk.path) / p).is_file() and p.endswith(".png") for p in plots)
    m = ev.outputs.surrogate_metrics.value
    assert m["n_ve"] >= 1 and np.isfinite(m["mae_mpa_mean"]) and m["mae_mpa_mean"] >= 0


def test_export_joins_and_shows_failure(campaign, tmp_path):
    from matflow_vae3d.matflow.export import export_workflow, read_export, write_export

    wk = campaign["wk"]
    data = export_workflow(wk.path)
    n = N_SHARDS * PER_SHARD
    expected_ids = [f"t-{s:05d}-{i:06d}" for s in range(N_SHARDS) for i in range(PER_SHARD)]
    assert sorted(data["ve_id"]) == expected_ids
    assert data["has_fingerprint"].all() and np.isfinite(data["mu"]).all() and data["mu"].shape == (n, 8)
    bad = np.array([v.startswith(f"t-{BAD_SHARD:05d}") for v in data["ve_id"]])
    assert set(data["status"][bad]) == {"failed"}
    assert all("NoSuchMaterial" in r for r in data["reason"][bad])
    assert set(data["status"][~bad]) == {"converged"}
    assert (data["shard"][bad] == BAD_SHARD).all()
    # physics: tension along x, stress-free lateral faces, nothing after the start
    sxx = data["sigma"][~bad][:, :, 0, 0]
    assert np.all(sxx[:, -1] > 0) and np.allclose(sxx[:, 0], 0)
    lateral = np.abs(data["sigma"][~bad][:, -1, [1, 2], [1, 2]])
    assert np.all(lateral < 0.02 * sxx[:, -1:])
    assert np.isnan(data["sigma"][bad]).all()
    prov = data["provenance"]
    assert prov["model_sha256"] == hashlib.sha256(campaign["ckpt"].read_bytes()).hexdigest()
    assert "Mg" in prov["material"] or "hP" in prov["material"]
    assert "loadstep" in prov["loadcase"] and prov["lattice"] == "hP"
    out = write_export(data, tmp_path / "ds.h5")
    back = read_export(out)
    for k in ("ve_id", "status", "reason"):
        assert list(back[k]) == list(data[k])
    np.testing.assert_array_equal(back["mu"], data["mu"])
    np.testing.assert_array_equal(back["sigma"], data["sigma"])
    assert back["provenance"]["model_sha256"] == prov["model_sha256"]
    with pytest.raises(FileExistsError):
        write_export(data, out)


def test_workflow_fingerprints_match_library(campaign, tmp_path):
    from matflow_vae3d.vae.checkpoint import load_model
    from matflow_vae3d.vae.encode import fingerprint_dataset
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    wk = campaign["wk"]
    model, meta = load_model(campaign["ckpt"])
    el = wk.tasks[1].elements[0]
    ves = Path(wk.path) / el.inputs.VE_dataset.value
    fingerprint_dataset(model, meta, ves, tmp_path / "fp.h5", progress=False)
    ref = read_fingerprints(tmp_path / "fp.h5")
    got = read_fingerprints(Path(wk.path) / el.outputs.fingerprints.value)
    assert got["ve_id"] == ref["ve_id"]
    np.testing.assert_allclose(got["mu"], ref["mu"], rtol=1e-5, atol=1e-6)
    # the same through the store helper: arrays, not relative paths
    from matflow_vae3d.matflow.export import element_outputs

    outs = element_outputs(wk.path, wk.tasks[1].unique_name, 0)
    assert outs["fingerprints"]["ve_id"] == ref["ve_id"]
    np.testing.assert_allclose(outs["fingerprints"]["mu"], ref["mu"], rtol=1e-5, atol=1e-6)
    every = element_outputs(wk.path, wk.tasks[1].unique_name)
    assert len(every) == len(wk.tasks[1].elements)
    cp_task = next(t for t in wk.tasks if t.template.schema.objective.name == "simulate_uniaxial")
    cps = element_outputs(wk.path, cp_task.unique_name)
    ok = [c["CP_results"] for c in cps if c["CP_results"] is not None]
    assert ok and all(set(r["status"]) == {"converged"} for r in ok)
    assert ok[0]["sigma"].shape[1:] == (len(ok[0]["t"]), 3, 3)
    with pytest.raises(ValueError, match="no task 'nope'"):
        element_outputs(wk.path, "nope")


def test_cli_export_and_add_fingerprint(campaign, tmp_path):
    from click.testing import CliRunner

    from matflow_vae3d.commands.matflow import matflow_group
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    wk, runner = campaign["wk"], CliRunner()
    env = {"MATFLOW_CONFIG_DIR": str(campaign["cfg"])}
    out = tmp_path / "export.h5"
    r = runner.invoke(matflow_group, ["export", str(wk.path), "--out", str(out)], env=env)
    assert r.exit_code == 0, r.output
    assert "failed 2" in r.output and "converged 4" in r.output and out.is_file()
    r = runner.invoke(matflow_group, ["export", str(wk.path), "--out", str(out)], env=env)
    assert r.exit_code != 0 and "exists" in r.output

    r = runner.invoke(matflow_group, ["add-fingerprint", str(wk.path), "--model", str(campaign["ckpt"])], env=env)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{") :])
    assert res["statuses"] == ["success"] * N_SHARDS
    import matflow as mf

    wk2 = mf.Workflow(str(wk.path))
    new, old = wk2.tasks[res["task_index"]], wk2.tasks[1]
    assert old.template.schema.name == new.template.schema.name == "fingerprint_VE"
    for a, b in zip(new.elements, old.elements):
        fa = read_fingerprints(Path(wk2.path) / a.outputs.fingerprints.value)
        fb = read_fingerprints(Path(wk2.path) / b.outputs.fingerprints.value)
        assert fa["ve_id"] == fb["ve_id"]
        np.testing.assert_allclose(fa["mu"], fb["mu"], rtol=1e-5, atol=1e-6)


def test_query_answers_in_one_command_each(campaign):
    """`vae3d matflow query` on the folder `matflow go --path` made (it holds the one
    workflow): the most similar VEs, the highest stress, and the failed CP shard with its
    reason; exports carry the summary."""
    from click.testing import CliRunner

    from matflow_vae3d.commands.matflow import matflow_group
    from matflow_vae3d.matflow.export import export_workflow

    wk, runner = campaign["wk"], CliRunner()
    env = {"MATFLOW_CONFIG_DIR": str(campaign["cfg"])}
    holder = str(Path(wk.path).parent)
    data = export_workflow(wk.path)
    assert (
        data["summary"].shape[0] == len(data["ve_id"]) and np.isfinite(data["summary"][data["has_fingerprint"]]).all()
    )
    first = str(data["ve_id"][0])
    r = runner.invoke(matflow_group, ["query", holder, "--similar-to", first, "--k", "2", "--json"], env=env)
    assert r.exit_code == 0, r.output
    near = json.loads(r.output)
    assert len(near) == 2 and first not in [n["ve_id"] for n in near]
    r = runner.invoke(matflow_group, ["query", holder, "--top", "sigma_xx", "--k", "1"], env=env)
    assert r.exit_code == 0 and "value_MPa" in r.output, r.output
    r = runner.invoke(matflow_group, ["query", holder, "--failed", "--csv"], env=env)
    assert r.exit_code == 0 and "simulate run" in r.output and "NoSuchMaterial" in r.output, r.output
    r = runner.invoke(matflow_group, ["query", str(campaign["dir"]), "--failed"], env=env)
    assert r.exit_code != 0 and "not a MatFlow workflow" in r.output and "Traceback" not in r.output
    # the workflow's zip answers the same (read-only: adding a task is refused)
    import matflow as mf

    z = mf.Workflow(str(wk.path)).zip(path=str(campaign["dir"]))
    r = runner.invoke(matflow_group, ["query", z, "--top", "sigma_xx", "--k", "1"], env=env)
    assert r.exit_code == 0 and "value_MPa" in r.output, r.output
    r = runner.invoke(matflow_group, ["add-fingerprint", z], env=env)
    assert r.exit_code != 0 and "read-only" in r.output
