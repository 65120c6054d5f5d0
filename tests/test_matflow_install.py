"""Registration of the MatFlow plugin: idempotent install/uninstall into a throw-away
config dir, rendered YAML (absolute script paths, docs, declared parameters), the
top-level task_schemas/ folder, the environment, and the packaged files."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from matflow_vae3d.matflow import install as inst

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def unloaded():
    import matflow as mf

    yield mf
    if mf.is_config_loaded:
        mf.unload_config()


def _config_lists(config_dir: Path) -> dict[str, list]:
    cfg = yaml.safe_load((config_dir / "config.yaml").read_text())
    c = cfg["configs"]["default"]["config"]
    return {k: c.get(k, []) for k in ("task_schema_sources", "parameter_sources", "environment_sources")}


def test_install_uninstall_idempotent_custom_dir(tmp_path, unloaded):
    mf = unloaded
    cdir = tmp_path / "cfg"
    r1 = inst.install(config_dir=cdir)
    r2 = inst.install(config_dir=cdir)
    assert sorted(r1["added"]) == sorted(inst._SOURCES) and r2["added"] == []
    lists = _config_lists(cdir)
    for key, name in inst._SOURCES.items():
        assert lists[key] == [str(cdir / inst.RENDER_DIRNAME / name)], key
    names = {s.name for s in mf.task_schemas}
    for s in (
        "generate_VE",
        "train_VAE",
        "fingerprint_VE",
        "fingerprint_VE_from_volume_element",
        "simulate_uniaxial",
        "simulate_uniaxial_from_volume_element",
        "train_surrogate",
        "evaluate_surrogate",
        "evaluate_VAE",
        "to_volume_element",
        "plot_latent_PCA",
    ):
        assert s in names, s
    assert "vae3d_env" in {e.name for e in mf.envs}
    assert all(inst.is_installed(cdir).values())
    # nothing but our config dir was written
    assert sorted(p.name for p in (cdir / inst.RENDER_DIRNAME).iterdir()) == sorted(inst._SOURCES.values())

    u1 = inst.uninstall(config_dir=cdir)
    u2 = inst.uninstall(config_dir=cdir)
    assert sorted(u1["removed"]) == sorted(inst._SOURCES) and u2["removed"] == []
    assert all(v == [] for v in _config_lists(cdir).values())
    assert not (cdir / inst.RENDER_DIRNAME).exists()
    assert not any(inst.is_installed(cdir).values())


def test_install_keeps_foreign_entries_and_honours_env_var(tmp_path, unloaded, monkeypatch):
    mf = unloaded
    cdir = tmp_path / "envcfg"
    other = tmp_path / "other_params.yaml"
    other.write_text("- type: someone_elses_param\n")
    monkeypatch.setenv("MATFLOW_CONFIG_DIR", str(cdir))
    mf.load_config(warn=False)
    mf.config.append("parameter_sources", str(other))
    mf.config.save()
    inst.install()  # no config_dir: MATFLOW_CONFIG_DIR decides
    assert (cdir / inst.RENDER_DIRNAME / "task_schemas.yaml").is_file()
    assert _config_lists(cdir)["parameter_sources"] == [str(other), str(cdir / inst.RENDER_DIRNAME / "parameters.yaml")]
    inst.uninstall()
    assert _config_lists(cdir)["parameter_sources"] == [str(other)]


def test_rendered_schemas(tmp_path):
    paths = inst.render(tmp_path)
    schemas = yaml.safe_load(paths["task_schema_sources"].read_text())
    declared = {p["type"] for p in yaml.safe_load(paths["parameter_sources"].read_text())}
    # MatFlow's own parameters (volume_element, phase_label) are shared, not redeclared
    import matflow

    builtin = Path(matflow.__file__).parent / "data" / "template_components" / "parameters.yaml"
    declared |= {p["type"] for p in yaml.safe_load(builtin.read_text())}
    assert {"volume_element", "phase_label"} <= declared
    assert inst.SCRIPTS_PLACEHOLDER not in paths["task_schema_sources"].read_text()
    for s in schemas:
        assert s.get("doc", "").strip(), f"schema {s['objective']} has no doc"
        for p in s["inputs"] + s["outputs"]:
            assert p["parameter"] in declared, p
        for a in s["actions"]:
            script = a["script"][len("<<script:") : -2]
            path = Path(script)
            assert path.is_absolute() and path.is_file(), script
            assert path.parent == inst.SCRIPTS_DIR
            tree = ast.parse(path.read_text())
            funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
            assert funcs == [path.stem], f"{path.name} must define exactly {path.stem}()"
            assert a["environments"][0]["environment"] == inst.ENV_NAME


def test_environment_spec(monkeypatch):
    env = inst.environment_spec(python=sys.executable, extra_setup=["module load damask"])[0]
    assert env["name"] == "vae3d_env"
    inst_list = env["executables"][0]["instances"]
    assert {i["parallel_mode"] for i in inst_list} == {None, "shared"}
    assert all(i["command"].startswith(f'"{Path(sys.executable).absolute()}"') for i in inst_list)
    assert env["setup"][-1] == "module load damask"
    # from a checkout the package folder goes on PYTHONPATH; from site-packages not
    assert any("PYTHONPATH" in line and str(ROOT) in line for line in env["setup"])
    monkeypatch.setattr(inst, "_package_in_site_packages", lambda: True)
    env2 = inst.environment_spec(python=sys.executable)[0]
    assert not any("PYTHONPATH" in line for line in env2["setup"])


def test_top_level_folders_match_package():
    for top, pkg in (("task_schemas", inst.SCHEMAS_DIR), ("workflow_templates", inst.TEMPLATES_DIR)):
        top_files = sorted(p.name for p in (ROOT / top).glob("*.yaml"))
        assert top_files == sorted(p.name for p in pkg.glob("*.yaml")) and top_files
        for name in top_files:
            assert (ROOT / top / name).read_bytes() == (pkg / name).read_bytes()


def test_wheel_ships_plugin_files(tmp_path):
    """A plain (non-editable) install: build the wheel, unpack it like site-packages,
    and render from there in a fresh interpreter."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for rel in (
        "matflow/task_schemas/vae3d_task_schemas.yaml",
        "matflow/task_schemas/vae3d_parameters.yaml",
        "matflow/workflow_templates/uniaxial_campaign_demo.yaml",
        "matflow/workflow_templates/uniaxial_campaign.yaml",
        "matflow/workflow_templates/uniaxial_campaign_train_vae.yaml",
        "matflow/scripts/fingerprint_VE.py",
    ):
        assert f"matflow_vae3d/{rel}" in names, rel
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; from pathlib import Path; "
        "from matflow_vae3d.matflow.install import render, PLUGIN_DIR; "
        f"p = render(Path({str(tmp_path / 'r')!r})); t = p['task_schema_sources'].read_text(); "
        f"assert str(PLUGIN_DIR).startswith({str(site)!r}), PLUGIN_DIR; "
        f"assert {str(site)!r} + '/matflow_vae3d/matflow/scripts/generate_VE.py' in t; print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_damask_env_reused(tmp_path, unloaded):
    """MatFlow's own damask_env (as env_configure_damask writes it) is folded into
    vae3d_env: its setup and DAMASK_GRID for a plain executable."""
    mf = unloaded
    envs = tmp_path / "damask_envs.yaml"
    envs.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "damask_env",
                    "setup": ["module load damask/3.0"],
                    "executables": [
                        {
                            "label": "damask_grid",
                            "instances": [
                                {
                                    "command": "/opt/damask/bin/DAMASK_grid",
                                    "num_cores": {"start": 1, "stop": 100},
                                    "parallel_mode": None,
                                }
                            ],
                        }
                    ],
                }
            ]
        )
    )
    cdir = tmp_path / "cfg"
    mf.load_config(config_dir=cdir, warn=False)
    mf.config.append("environment_sources", str(envs))
    mf.config.save()
    inst.install(config_dir=cdir)
    ours = yaml.safe_load((cdir / inst.RENDER_DIRNAME / "environments.yaml").read_text())[0]
    assert "module load damask/3.0" in ours["setup"]
    assert 'export DAMASK_GRID="/opt/damask/bin/DAMASK_grid"' in ours["setup"]
    assert {e.name for e in mf.envs} >= {"damask_env", "vae3d_env"}


@pytest.mark.parametrize(
    "name",
    [
        "uniaxial_campaign.yaml",
        "uniaxial_campaign_train_vae.yaml",
        "uniaxial_campaign_demo.yaml",
        "load_path_campaign.yaml",
    ],
)
def test_templates_parse_with_defaults(name, tmp_path):
    """Both templates load with their default variables and use only registered schemas
    (one template variable per line: MatFlow's substitution is greedy within a line)."""
    import re

    from hpcflow.sdk.core.utils import read_YAML_str

    text = (inst.TEMPLATES_DIR / name).read_text()
    for line in text.splitlines():
        assert line.count("<<var:") <= 1, line
    data = read_YAML_str(text, variables={})
    paths = inst.render(tmp_path)
    schemas = yaml.safe_load(paths["task_schema_sources"].read_text())
    names = {s["objective"] + (f"_{s['method']}" if "method" in s else "") for s in schemas}
    assert [t["schema"] for t in data["tasks"]] and all(t["schema"] in names for t in data["tasks"])
    assert data["resources"]["any"]["combine_scripts"] is True
    assert re.search(r"VEs_per_shard", text)
