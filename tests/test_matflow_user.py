"""A MatFlow user's workflows through `matflow go`: their own material through the demo
template (`--var material FILE --var crystal_structure cF`: the CP runs use it, the trained
surrogate records it, a material of another lattice stops the run in its first task), the
predict task and queries by prediction, the VE checks of add-fingerprint, fingerprint
failures in the export, and a similarity query that finds a rolled copy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

MATFLOW = str(Path(sys.executable).parent / "matflow")


def _config(tmp_path) -> dict:
    """A throw-away MatFlow config (tmp_path/cfg) with the plugin installed; returns the
    environment that points `matflow` and the CLI at it."""
    import matflow as mf

    from matflow_vae3d.matflow.install import install

    cfg = tmp_path / "cfg"
    if mf.is_config_loaded:
        mf.unload_config()
    install(config_dir=cfg)
    return {**os.environ, "MATFLOW_CONFIG_DIR": str(cfg)}


def _go(tmp_path, env, name, template, variables=(), timeout=900):
    """`matflow go` of ``template`` (a template path, or YAML text, written to
    tmp_path/<name>.yaml) into tmp_path/<name>, waiting for it."""
    if isinstance(template, str):
        (tmp_path / f"{name}.yaml").write_text(template)
        template = tmp_path / f"{name}.yaml"
    cmd = [MATFLOW, "go", str(template), "--path", str(tmp_path), "--wait"]
    cmd += ["--no-status", "--name", name, "--name-no-timestamp", "--store", "zarr"]
    for k, v in dict(variables).items():
        cmd += ["--var", k, str(v)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)


def test_demo_template_with_a_users_material(tmp_path):
    import matflow as mf

    from matflow_vae3d.cp.materials import load_phase
    from matflow_vae3d.cp.results import read_results
    from matflow_vae3d.matflow.install import TEMPLATES_DIR
    from matflow_vae3d.surrogate.ensemble import Surrogate

    env = _config(tmp_path)
    demo = TEMPLATES_DIR / "uniaxial_campaign_demo.yaml"
    _, cu = load_phase("Cu")
    mat = tmp_path / "MyCopper.yaml"
    mat.write_text(yaml.safe_dump(cu))
    small = {"n_shards": 2, "VEs_per_shard": 3, "increments": 2, "strain": 0.0002, "surrogate_epochs": 3}
    r = _go(tmp_path, env, "cu", demo, {**small, "material": mat, "crystal_structure": "cF"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    try:
        wk = mf.Workflow(str(tmp_path / "cu"))
        root = Path(wk.path)
        for el in wk.tasks.simulate_uniaxial.elements:
            res = read_results(root / el.get("outputs.CP_results"))
            assert res["phase_name"] == "MyCopper" and res["lattice"] == "cF" and set(res["status"]) == {"converged"}
        sur = Surrogate.load(root / wk.tasks.train_surrogate.elements[0].get("outputs.surrogate_checkpoint"))
        assert sur.trained_for["material_name"] == "MyCopper" and sur.trained_for["lattice"] == "cF"
        # a hexagonal material for cubic VEs: the first task refuses, nothing else runs
        r = _go(tmp_path, env, "bad", demo, {**small, "material": "Mg", "crystal_structure": "cF"})
        wk = mf.Workflow(str(tmp_path / "bad"))
        check = wk.tasks.check_campaign_scale.elements[0].action_runs[-1]
        assert check.status.name == "error"
        assert not any(
            el.action_runs and el.action_runs[-1].status.name == "success" for el in wk.tasks.generate_VE.elements
        )
    finally:
        mf.unload_config()


def test_predict_task_and_query_by_prediction(tmp_path):
    """predict_stress through `matflow go` (the shipped Mg surrogate on two shards, one of
    cube-textured VEs): the predictions reach the export and `query --top predicted`
    ranks by them, with each VE's out-of-population score (the cube VEs flagged)."""
    import json

    import matflow as mf
    from click.testing import CliRunner

    from matflow_vae3d.commands.matflow import matflow_group

    env = _config(tmp_path)
    r = _go(
        tmp_path,
        env,
        "p",
        "tasks:\n"
        "  - schema: generate_VE\n"
        "    inputs: {VEs_per_shard: 2, VE_grid: 16, crystal_structure: hP, VE_seed: 5}\n"
        "    sequences:\n"
        "      - path: inputs.VE_preset\n"
        "        values: [train, cube]\n"
        "        nesting_order: 0\n"
        "      - path: inputs.VE_id_prefix\n"
        "        values: [tr, cu]\n"
        "        nesting_order: 0\n"
        "  - schema: predict_stress\n",
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    try:
        res = CliRunner().invoke(
            matflow_group, ["query", str(tmp_path / "p"), "--top", "predicted", "--k", "4", "--json"], env=env
        )
        assert res.exit_code == 0, res.output
        rows = json.loads(res.output)
        assert len(rows) == 4 and all(r["answered_by"] == "surrogate" for r in rows)
        by_id = {r["ve_id"]: r for r in rows}
        cube = [v for v in by_id if v.startswith("cu-")]
        train = [v for v in by_id if v.startswith("tr-")]
        assert len(cube) == len(train) == 2
        assert all(by_id[v]["ood_score"] > 1.5 for v in cube) and all(by_id[v]["ood_score"] < 1.5 for v in train)
    finally:
        mf.unload_config()


def test_add_fingerprint_checks_the_ves_before_adding_a_task(tmp_path):
    """A workflow whose VEs have a grid the VAE does not take: add-fingerprint refuses in
    one line before adding anything."""
    import matflow as mf
    import pytest

    from matflow_vae3d.matflow.workflows import add_fingerprint

    env = _config(tmp_path)
    r = _go(
        tmp_path,
        env,
        "g",
        "tasks:\n  - schema: generate_VE\n"
        "    inputs: {VEs_per_shard: 1, VE_grid: [18, 16, 16], crystal_structure: hP}\n",
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    try:
        with pytest.raises(ValueError, match="generate_VE element 0 have grid 18x16x16.*nearest valid grid 16x16x16"):
            add_fingerprint(str(tmp_path / "g"), submit=False)
        assert len(mf.Workflow(str(tmp_path / "g")).tasks) == 1
    finally:
        mf.unload_config()


def test_similarity_query_ranks_a_rolled_copy_first_in_a_workflow(tmp_path):
    """A workflow fingerprints the user's VEs, one of them also rolled by (5, 3, 7)
    voxels; `vae3d matflow query --similar-to` ranks that copy first."""
    import json

    import matflow as mf
    from click.testing import CliRunner
    from vae_helpers import write_ves_with_rolled_copy

    from matflow_vae3d.commands.matflow import matflow_group

    write_ves_with_rolled_copy(tmp_path / "mine.h5", 5, 60, "mine-")
    env = _config(tmp_path)
    r = _go(
        tmp_path,
        env,
        "f",
        f"tasks:\n  - schema: fingerprint_VE\n    inputs: {{VE_dataset: {tmp_path / 'mine.h5'}}}\n",
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    try:
        res = CliRunner().invoke(
            matflow_group, ["query", str(tmp_path), "--similar-to", "mine-0", "--k", "2", "--json"], env=env
        )
        assert res.exit_code == 0, res.output
        near = json.loads(res.output)
        assert near[0]["ve_id"] == "mine-0-rolled" and near[0]["distance"] < 0.3 * near[1]["distance"]
    finally:
        mf.unload_config()


def test_fingerprint_failures_reach_the_export_per_ve(tmp_path):
    """A fingerprint shard that fails (VEs of a grid the VAE does not take) appears in the
    export per VE with its reason, and the export of the rest still works."""
    import matflow as mf

    from matflow_vae3d.matflow.export import export_workflow

    env = _config(tmp_path)
    _go(
        tmp_path,
        env,
        "g",
        "tasks:\n  - schema: generate_VE\n"
        "    inputs: {VEs_per_shard: 2, crystal_structure: hP, VE_seed: 4}\n"
        "    sequences:\n      - path: inputs.VE_grid\n        values: [16, [18, 16, 16]]\n        nesting_order: 0\n"
        "      - path: inputs.VE_id_prefix\n        values: [ok, bad]\n        nesting_order: 0\n"
        "  - schema: fingerprint_VE\n    resources: {any: {skip_downstream_on_failure: false}}\n",
        timeout=600,
    )
    try:
        d = export_workflow(str(tmp_path / "g"))
        by = dict(zip(d["ve_id"], zip(d["has_fingerprint"], d["reason"])))
        assert by["ok-00000-000000"][0] and by["ok-00000-000001"][0]
        bad = by["bad-00000-000000"]
        assert not bad[0] and "fingerprint shard failed" in bad[1] and "nearest valid grid 16x16x16" in bad[1]
    finally:
        mf.unload_config()
