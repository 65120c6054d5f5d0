"""A user's own material through the demo template (`matflow go --var material FILE
--var crystal_structure cF`): the CP runs use it and the trained surrogate records it;
a material whose lattice differs from the VEs' stops the workflow in its first task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

MATFLOW = str(Path(sys.executable).parent / "matflow")


def _go(tmp_path, cfg, name, variables):
    from matflow_vae3d.matflow.install import TEMPLATES_DIR

    env = {**os.environ, "MATFLOW_CONFIG_DIR": str(cfg)}
    cmd = [MATFLOW, "go", str(TEMPLATES_DIR / "uniaxial_campaign_demo.yaml"), "--path", str(tmp_path), "--wait"]
    cmd += ["--no-status", "--name", name, "--name-no-timestamp", "--store", "zarr"]
    for k, v in variables.items():
        cmd += ["--var", k, str(v)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)


def test_demo_template_with_a_users_material(tmp_path):
    import matflow as mf

    from matflow_vae3d.cp.materials import load_phase
    from matflow_vae3d.cp.results import read_results
    from matflow_vae3d.matflow.install import install
    from matflow_vae3d.surrogate.ensemble import Surrogate

    cfg = tmp_path / "cfg"
    if mf.is_config_loaded:
        mf.unload_config()
    install(config_dir=cfg)
    _, cu = load_phase("Cu")
    mat = tmp_path / "MyCopper.yaml"
    mat.write_text(yaml.safe_dump(cu))
    small = {"n_shards": 2, "VEs_per_shard": 3, "increments": 2, "strain": 0.0002, "surrogate_epochs": 3}
    r = _go(tmp_path, cfg, "cu", {**small, "material": mat, "crystal_structure": "cF"})
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
        r = _go(tmp_path, cfg, "bad", {**small, "material": "Mg", "crystal_structure": "cF"})
        wk = mf.Workflow(str(tmp_path / "bad"))
        check = wk.tasks.check_campaign_scale.elements[0].action_runs[-1]
        assert check.status.name == "error"
        assert not any(
            el.action_runs and el.action_runs[-1].status.name == "success" for el in wk.tasks.generate_VE.elements
        )
    finally:
        mf.unload_config()
