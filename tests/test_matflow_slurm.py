"""The cluster path on a real SLURM: the tiny campaign of test_matflow_e2e submitted
through MatFlow to a single-node SLURM (scripts/local_slurm.sh, started here if it is
not running), shard tasks as job arrays with dependencies, one shard failing on
purpose. Checks what SLURM saw (its job-completion log) against
MatFlow's run statuses and our export. Skipped, with the reason, where SLURM cannot be
started (not root, slurm-wlm/munge not installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_matflow_e2e import BAD_SHARD, MATFLOW, N_SHARDS, PER_SHARD, TEMPLATE, _tiny_vae

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = Path(os.environ.get("LOCAL_SLURM_DIR", "/tmp/vae3d-slurm"))


def _running() -> bool:
    pid = SLURM_DIR / "slurmctld.pid"
    try:
        os.kill(int(pid.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def _start_slurm() -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("local SLURM needs root (scripts/local_slurm.sh)")
    if not (shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()) or not shutil.which("sbatch"):
        pytest.skip("SLURM not installed (apt-get install slurm-wlm munge)")
    env = {**os.environ, "LOCAL_SLURM_DIR": str(SLURM_DIR)}
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "local_slurm.sh"), "start"], env=env, capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"local SLURM did not start: {(r.stderr or r.stdout).strip()[-300:]}")
    return {**env, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}


@pytest.fixture(scope="module")
def slurm_campaign(tmp_path_factory):
    import matflow as mf

    from matflow_vae3d.matflow.install import install

    was_running = _running()
    env = _start_slurm()
    d = tmp_path_factory.mktemp("mf_slurm")
    cfg = d / "cfg"
    ckpt = _tiny_vae(d / "vae.pt")
    if mf.is_config_loaded:
        mf.unload_config()
    install(config_dir=cfg)
    env["MATFLOW_CONFIG_DIR"] = str(cfg)
    r = subprocess.run(
        [MATFLOW, "config", "set", "schedulers", '{"direct": {"defaults": {}}, "slurm": {"defaults": {}}}', "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    materials = ["Mg"] * N_SHARDS
    materials[BAD_SHARD] = "NoSuchMaterial"
    text = TEMPLATE.format(per=PER_SHARD, n=N_SHARDS, ckpt=ckpt, materials=json.dumps(materials))
    text = text.replace("    combine_scripts: true\n", "    combine_scripts: false\n    scheduler: slurm\n")
    tpl = d / "tiny_slurm.yaml"
    tpl.write_text(text)
    (d / "wk").mkdir()
    comp = SLURM_DIR / "jobcomp.log"
    done_before = comp.read_text().count("\n") if comp.exists() else 0
    go = [MATFLOW, "go", str(tpl), "--path", str(d / "wk"), "--wait", "--no-status", "--name", "tiny"]
    r = subprocess.run(
        go + ["--name-no-timestamp", "--store", "zarr"], env=env, capture_output=True, text=True, timeout=900, cwd=d
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jobs = comp.read_text().splitlines()[done_before:] if comp.exists() else []
    wk = mf.Workflow(str(d / "wk" / "tiny"))
    yield {"wk": wk, "jobs": jobs}
    mf.unload_config()
    if not was_running:  # stop only what this test started
        subprocess.run(["bash", str(ROOT / "scripts" / "local_slurm.sh"), "stop"], env=env, capture_output=True)


def test_campaign_on_slurm_arrays_dependencies_and_failure(slurm_campaign):
    from matflow_vae3d.matflow.export import export_workflow

    wk, jobs = slurm_campaign["wk"], slurm_campaign["jobs"]
    status = {t.unique_name: [el.action_runs[-1].status.name for el in t.elements] for t in wk.tasks}
    sim = status["simulate_uniaxial"]
    # the injected failure is the only failed run; everything downstream still ran
    assert sim[BAD_SHARD] == "error" and all(s == "success" for i, s in enumerate(sim) if i != BAD_SHARD)
    for name, st in status.items():
        if name != "simulate_uniaxial":
            assert set(st) == {"success"}, (name, st)
    # SLURM's view (its job-completion log): the shard tasks ran as one job array of
    # N_SHARDS tasks, the jobscripts that depend on it became eligible only after all
    # of its tasks ended, and every job exited 0 -- MatFlow's jobscripts exit 0 after a
    # failed action, so the failure shows in MatFlow's run status and in our export
    recs = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in jobs]
    assert recs and all(r["ExitCode"] == "0:0" and r["JobState"] == "COMPLETED" for r in recs), jobs
    sub = wk.submissions[0]
    by_js = {}
    for js in sub.jobscripts:
        jid = str(js.scheduler_job_ID)
        by_js[js.index] = [r for r in recs if r.get("ArrayJobId", r["JobId"]) == jid or r["JobId"] == jid]
    arrays = [js for js in sub.jobscripts if js.is_array]
    assert arrays and all(len(by_js[js.index]) == N_SHARDS for js in arrays), by_js
    dependent = [js for js in sub.jobscripts if js.dependencies]
    assert dependent
    for js in dependent:
        for dep_idx, _ in js.dependencies:
            ended = max(r["EndTime"] for r in by_js[dep_idx])
            assert all(r["EligibleTime"] >= ended for r in by_js[js.index]), (js.index, dep_idx)
    data = export_workflow(wk.path)
    bad = np.array([v.startswith(f"t-{BAD_SHARD:05d}") for v in data["ve_id"]])
    assert set(data["status"][bad]) == {"failed"} and set(data["status"][~bad]) == {"converged"}
    assert all("NoSuchMaterial" in r for r in data["reason"][bad])
