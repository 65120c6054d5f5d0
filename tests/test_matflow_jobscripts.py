"""The campaign template's jobscripts for SLURM and SGE, composed without a scheduler:
job arrays per shard task, element-wise (aftercorr / -hold_jid_ad) dependencies,
shared-memory cores and per-task directives (GPU tasks vs CP tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "workflow_templates" / "uniaxial_campaign_train_vae.yaml"
SCHEDULERS = {
    "direct": {"defaults": {}},
    "slurm": {"defaults": {}},
    "sge": {
        "defaults": {},
        "parallel_environments": {None: {"num_cores": [1, 1, 1]}, "smp": {"num_cores": [2, 1, 64]}},
    },
}


@pytest.fixture(scope="module")
def mf_hermetic(tmp_path_factory):
    import matflow as mf

    from matflow_vae3d.matflow.install import hermetic_overrides

    d = tmp_path_factory.mktemp("mf_js")
    if mf.is_config_loaded:
        mf.unload_config()
    mf.load_config(
        config_dir=str(d / "cfg"), warn=False, overrides={**hermetic_overrides(d / "r"), "schedulers": SCHEDULERS}
    )
    mf.reload_template_components(warn=False)
    yield mf, d
    mf.unload_config()


def _preview(mf, d, name, variables):
    from matflow_vae3d.matflow.workflows import preview_jobscripts

    wk = mf.Workflow.from_YAML_file(str(CAMPAIGN), path=str(d / name), overwrite=True, variables=variables)
    return {tuple(j["tasks"]): j for j in preview_jobscripts(wk)}


def test_slurm_jobscripts(mf_hermetic):
    mf, d = mf_hermetic
    js = _preview(
        mf,
        d,
        "slurm",
        {
            "scheduler": "slurm",
            "combine_scripts": "false",
            "n_train_shards": "5",
            "n_campaign_shards": "7",
            "VEs_per_shard": "20",
            "n_val_VEs": "10",
            "cores_cp": "4",
            "cores_vae": "8",
            "gpu_scheduler_args": '{"directives": {"--gres": "gpu:1", "--time": "24:00:00"}}',
            "cp_scheduler_args": '{"directives": {"--time": "12:00:00"}}',
        },
    )
    assert set(js) == {
        ("check_campaign_scale",),
        ("generate_VE_1",),
        ("train_VAE",),
        ("generate_VE_2",),
        ("fingerprint_VE",),
        ("simulate_uniaxial",),
        ("plot_latent_PCA",),
        ("train_surrogate",),
        ("evaluate_surrogate",),
    }
    gen, fp, sim = js[("generate_VE_2",)], js[("fingerprint_VE",)], js[("simulate_uniaxial",)]
    # the scale check runs first: VE generation waits for it (a refusal stops the campaign)
    check = js[("check_campaign_scale",)]
    gen1 = js[("generate_VE_1",)]
    assert f"JOB{check['index']}" in gen1["submit_command"][gen1["submit_command"].index("--dependency") + 1]
    assert js[("generate_VE_1",)]["is_array"] and "#SBATCH --array 1-5" in js[("generate_VE_1",)]["directives"]
    for j in (gen, fp, sim):
        assert j["is_array"] and "#SBATCH --array 1-7" in j["directives"], j["directives"]
    # one process with several threads; GPU directive only on the VAE tasks
    assert "#SBATCH --cpus-per-task 4" in sim["directives"] and "#SBATCH --ntasks 1" in sim["directives"]
    assert "#SBATCH --time 12:00:00" in sim["directives"]
    for j in (fp, js[("train_VAE",)]):
        assert "#SBATCH --gres gpu:1" in j["directives"] and "#SBATCH --cpus-per-task 8" in j["directives"]
    assert not any("gres" in line for line in sim["directives"] + gen["directives"])
    # element-wise pipelining: CP shard i starts when VE shard i exists
    dep = sim["submit_command"][sim["submit_command"].index("--dependency") + 1]
    assert dep == f"aftercorr:JOB{gen['index']}"
    fp_dep = fp["submit_command"][fp["submit_command"].index("--dependency") + 1].split(",")
    assert f"aftercorr:JOB{gen['index']}" in fp_dep and f"afterany:JOB{js[('train_VAE',)]['index']}" in fp_dep
    ts = js[("train_surrogate",)]
    assert not ts["is_array"]
    ts_dep = ts["submit_command"][ts["submit_command"].index("--dependency") + 1].split(",")
    assert sorted(ts_dep) == sorted([f"afterany:JOB{fp['index']}", f"afterany:JOB{sim['index']}"])
    # the action command runs our script through the registered interpreter
    assert "python_script" not in sim["text"]


def test_sge_jobscripts(mf_hermetic):
    mf, d = mf_hermetic
    js = _preview(
        mf,
        d,
        "sge",
        {
            "scheduler": "sge",
            "combine_scripts": "false",
            "n_train_shards": "2",
            "n_campaign_shards": "3",
            "VEs_per_shard": "10",
            "n_val_VEs": "5",
            "cp_scheduler_args": '{"directives": {"-l": "h_rt=12:00:00"}}',
        },
    )
    gen, sim = js[("generate_VE_2",)], js[("simulate_uniaxial",)]
    assert "#$ -t 1-3" in sim["directives"] and "#$ -pe smp 4" in sim["directives"]
    assert "#$ -l h_rt=12:00:00" in sim["directives"]
    assert sim["submit_command"][sim["submit_command"].index("-hold_jid_ad") + 1] == f"JOB{gen['index']}"


def test_combine_scripts_default_turns_arrays_off(mf_hermetic):
    """The template's local default (combine_scripts true: one Python process per
    jobscript) gives no job arrays even on SLURM: the cluster recipe in
    docs/matflow.md sets combine_scripts false. The direct scheduler takes it as is."""
    mf, d = mf_hermetic
    small = {"n_train_shards": "2", "n_campaign_shards": "3", "VEs_per_shard": "10", "n_val_VEs": "5"}
    js = _preview(mf, d, "slurm_combined", {**small, "scheduler": "slurm"})
    assert not any(j["is_array"] for j in js.values())
    assert not any("--array" in line for j in js.values() for line in j["directives"])
    js = _preview(mf, d, "direct", small)
    assert all(j["directives"] == [] for j in js.values())


def test_add_fingerprint_to_matflow_volume_elements(mf_hermetic):
    """add_fingerprint picks the volume_element schema for MatFlow VEs and sources its
    input from the upstream task (structure only: nothing is submitted)."""
    from matflow_vae3d.matflow.workflows import add_fingerprint

    mf, d = mf_hermetic
    yml = d / "ve_only.yaml"
    yml.write_text(
        "tasks:\n"
        "  - schema: generate_VE\n"
        "    inputs: {VEs_per_shard: 1, VE_grid: 16, crystal_structure: hP}\n"
        "  - schema: to_volume_element\n"
    )
    wk = mf.Workflow.from_YAML_file(str(yml), path=str(d / "ve_only"), overwrite=True)
    with pytest.raises(ValueError, match="source must be"):
        add_fingerprint(wk, source="grains", submit=False)
    # the structure comes from the workflow (generate_VE's crystal_structure) and must fit
    with pytest.raises(ValueError, match="'cF' given, but workflow .* states hP"):
        add_fingerprint(wk, source="volume_element", crystal_structure="cF", submit=False)
    from matflow_vae3d.vae import pretrained_path

    with pytest.raises(ValueError, match="trained on crystal structure 'cF', the VEs are 'hP'"):
        add_fingerprint(wk, source="volume_element", model=str(pretrained_path("cF")), submit=False)
    r = add_fingerprint(wk, source="volume_element", submit=False)
    assert r["schema"] == "fingerprint_VE_from_volume_element" and r["elements"] == 1
    assert r["crystal_structure"] == "hP"
    assert wk.tasks[r["task_index"]].elements[0].get("inputs.crystal_structure") == "hP"
    new = wk.tasks[r["task_index"]]
    src = new.template.element_sets[0].input_sources["volume_element"][0]
    assert src.source_type.name == "TASK" and src.task_ref == wk.tasks[1].insert_ID
    r2 = add_fingerprint(wk, submit=False)  # auto: our VE_dataset wins
    assert r2["schema"] == "fingerprint_VE"
