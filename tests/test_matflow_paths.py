"""The shipped load-path template end to end through `matflow go`, at a tiny scale:
generate 16³ Mg VEs in 2 shards, run CP along random load paths (the shards draw
different paths), add one exact rotated copy of each VE and row, fingerprint originals
and copies with the shipped VAE, train the path surrogate and its no-microstructure
baseline, and report held-out errors on the original rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

MATFLOW = str(Path(sys.executable).parent / "matflow")


def test_load_path_template_end_to_end(tmp_path):
    import matflow as mf

    from matflow_vae3d.cp.path_results import read_path_results
    from matflow_vae3d.matflow.install import TEMPLATES_DIR, install
    from matflow_vae3d.surrogate.path_surrogate import PathSurrogate
    from matflow_vae3d.vae.fingerprints import read_fingerprints

    cfg = tmp_path / "cfg"
    if mf.is_config_loaded:
        mf.unload_config()
    install(config_dir=cfg)
    env = {**os.environ, "MATFLOW_CONFIG_DIR": str(cfg)}
    # path seed 1, indices 0-3: plane strain, shear, shear, plane strain (the cheap kinds)
    vars_ = {"n_shards": 2, "VEs_per_shard": 2, "paths_per_VE": 1, "increments": 4, "max_strain": 0.002}
    vars_ |= {"path_epochs": 5, "rotations": "0,5"}
    cmd = [MATFLOW, "go", str(TEMPLATES_DIR / "load_path_campaign.yaml"), "--path", str(tmp_path), "--wait"]
    cmd += ["--no-status", "--name", "lp", "--name-no-timestamp", "--store", "zarr"]
    for k, v in vars_.items():
        cmd += ["--var", k, str(v)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    try:
        wk = mf.Workflow(str(tmp_path / "lp"))
        root = Path(wk.path)
        sim, train = wk.tasks.simulate_load_paths, wk.tasks.train_path_surrogate
        assert [el.action_runs[-1].status.name for el in [*sim.elements, *train.elements]] == ["success"] * 3
        paths = []
        for el in sim.elements:
            d = read_path_results(root / el.get("outputs.path_CP_results"))
            assert list(d["status"]) == ["converged"] * 2
            paths.append(list(d["path_id"]))
        assert paths[0] != paths[1] and not set(paths[0]) & set(paths[1])  # the shards' own paths
        for el, own in zip(wk.tasks.rotate_path_results.elements, paths):
            assert el.action_runs[-1].status.name == "success"
            d = read_path_results(root / el.get("outputs.path_CP_results"))
            assert sorted(d["path_id"]) == sorted(own + [f"r05.{p}" for p in own])
        fps = [root / el.get("outputs.fingerprints") for el in wk.tasks.fingerprint_VE.elements]
        assert sum(len(read_fingerprints(p)["ve_id"]) for p in fps) == 8  # 4 VEs and their copies
        el = train.elements[0]
        m = el.get("outputs.path_surrogate_metrics")
        assert 1 <= m["n_rows"] <= 2 and m["zero_stress_mae_mpa"] > 1.0  # original rows only
        assert np.isfinite(m["mae_mpa"]) and np.isfinite(m["no_microstructure_mae_mpa"])
        sur = PathSurrogate.load(root / el.get("outputs.path_surrogate_checkpoint"))
        assert sur.features == "fingerprint" and sur.n_features > 0
        assert all((root / p).stat().st_size > 5_000 for p in el.get("outputs.path_surrogate_plots"))
    finally:
        mf.unload_config()
