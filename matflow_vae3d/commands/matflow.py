"""``vae3d matflow ...``: register the plugin with MatFlow, add a fingerprint task to
an existing workflow, export a workflow's results, show what is registered."""

from __future__ import annotations

import json
from pathlib import Path

import click

_config_dir = click.option(
    "--config-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="MatFlow config folder (default: $MATFLOW_CONFIG_DIR, else ~/.matflow).",
)


@click.group("matflow")
def matflow_group():
    """Use the plugin from MatFlow: `vae3d matflow install`, then
    `matflow go workflow_templates/uniaxial_campaign_demo.yaml`."""


@matflow_group.command("install")
@_config_dir
@click.option(
    "--python",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Interpreter that runs the actions (default: this one).",
)
@click.option(
    "--setup",
    "extra_setup",
    multiple=True,
    help="Extra shell line for the environment's setup (repeatable), e.g. 'module load damask'.",
)
@click.option(
    "--damask-env/--no-damask-env",
    default=True,
    show_default=True,
    help="Reuse the setup of MatFlow's `damask_env` (if configured) for CP_solver damask.",
)
def install_cmd(config_dir, python, extra_setup, damask_env):
    """Register task schemas, parameters and the `vae3d_env` environment (idempotent;
    re-running refreshes the rendered files)."""
    from ..matflow.install import install

    try:
        r = install(config_dir=config_dir, python=python, extra_setup=list(extra_setup), use_damask_env=damask_env)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"MatFlow config: {r['config_file']}")
    for key, path in r["rendered"].items():
        click.echo(f"  {key}: {path}" + ("  (added)" if key in r["added"] else "  (already registered, refreshed)"))


@matflow_group.command("uninstall")
@_config_dir
def uninstall_cmd(config_dir):
    """Remove the plugin's entries from the MatFlow config (idempotent)."""
    from ..matflow.install import uninstall

    r = uninstall(config_dir=config_dir)
    click.echo(f"MatFlow config: {r['config_file']}")
    click.echo("removed: " + (", ".join(r["removed"]) if r["removed"] else "nothing (not installed)"))


@matflow_group.command("status")
@_config_dir
def status_cmd(config_dir):
    """Show whether the plugin is registered and where its templates are."""
    from ..matflow.install import TEMPLATES_DIR, is_installed

    st = is_installed(config_dir=config_dir)
    for k, v in st.items():
        click.echo(f"{k}: {'registered' if v else 'missing'}")
    click.echo(f"workflow templates: {TEMPLATES_DIR}")
    if not all(st.values()):
        raise SystemExit(1)


@matflow_group.command("export")
@click.argument("workflow", type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output HDF5 file.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@_config_dir
def export_cmd(workflow, out, force, config_dir):
    """Export fingerprints (mu, the roll-invariant summary, the decoded statistics),
    stress curves (Pa), per-VE status/reasons and provenance of WORKFLOW (a workflow
    folder, or the folder `matflow go --path` made) to one HDF5 file."""
    from ..matflow.export import export_workflow, write_export
    from ..matflow.install import _load_config

    if Path(out).exists() and not force:
        raise click.ClickException(f"{out} exists; use --force to replace it")
    _load_config(config_dir)
    try:
        data = export_workflow(workflow)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    write_export(data, out, overwrite=force)
    st = data["status"]
    counts = {s: int((st == s).sum()) for s in sorted(set(st.tolist()))}
    click.echo(
        f"{len(st)} VEs -> {out}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"; {int(data['has_fingerprint'].sum())} fingerprinted"
    )


@matflow_group.command("query")
@click.argument("workflow", type=click.Path(exists=True))
@click.option(
    "--similar-to", "similar_to", metavar="VE_ID", help="The VEs most like this one (roll-invariant summary)."
)
@click.option(
    "--top",
    "top_q",
    metavar="QUANTITY",
    help="Rank converged VEs by a simulated stress: sigma_xx (last state) or sigma_xx@0.005 (at that strain).",
)
@click.option("--ascending", is_flag=True, help="With --top: lowest first.")
@click.option("--failed", "show_failed", is_flag=True, help="Every failed run and VE with its reason.")
@click.option("--k", "k", default=5, show_default=True, type=click.IntRange(1), help="How many answers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@_config_dir
def query_cmd(workflow, similar_to, top_q, ascending, show_failed, k, as_json, as_csv, config_dir):
    """Ask WORKFLOW (a workflow folder, or the folder `matflow go --path` made) one
    question: --similar-to VE_ID, --top QUANTITY or --failed. Stresses in MPa.

    \b
      vae3d matflow query wk --similar-to demo-00000-000001 --k 3
      vae3d matflow query wk --top sigma_xx --k 3
      vae3d matflow query wk --failed --csv
    """
    from ..matflow import query
    from ..matflow.export import export_workflow, workflow_elements
    from ..matflow.install import _load_config

    if sum(map(bool, (similar_to, top_q, show_failed))) != 1:
        raise click.UsageError("ask one question: --similar-to VE_ID, --top QUANTITY or --failed")
    _load_config(config_dir)
    try:
        from ..matflow.workflows import open_workflow

        wk = open_workflow(workflow)
        data = export_workflow(wk)
        if similar_to:
            rows = query.similar(data, similar_to, k)
        elif top_q:
            rows = query.top(data, top_q, k, ascending)
        else:
            rows = query.failed(data, workflow_elements(wk))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    _print_rows(rows, as_json, as_csv)


def _print_rows(rows: list[dict], as_json: bool, as_csv: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("(none)")
        return
    keys = list(rows[0])
    if as_csv:
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
        click.echo(buf.getvalue().rstrip())
        return

    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    width = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in keys}
    click.echo("  ".join(c.ljust(width[c]) for c in keys))
    for r in rows:
        click.echo("  ".join(fmt(r[c]).ljust(width[c]) for c in keys))


@matflow_group.command("add-fingerprint")
@click.argument("workflow", type=click.Path(exists=True))
@click.option(
    "--model",
    default="pretrained",
    show_default=True,
    help="VAE checkpoint (path, or 'pretrained' for the shipped model).",
)
@click.option(
    "--source",
    type=click.Choice(["auto", "VE_dataset", "volume_element"]),
    default="auto",
    show_default=True,
    help="Which VEs to fingerprint (auto: VE_dataset if present).",
)
@click.option(
    "--crystal-structure",
    default=None,
    help="Crystal structure of the VEs (hP, cF, ...); default: read from the workflow "
    "(crystal_structure or damask_phases inputs). A VAE of another structure is refused.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the new task to finish.")
@_config_dir
def add_fingerprint_cmd(workflow, model, source, crystal_structure, wait, config_dir):
    """Add a fingerprint_VE task to WORKFLOW (which must have VEs: ours or MatFlow's
    `volume_element`) and run only that task."""
    from ..matflow.install import _load_config
    from ..matflow.workflows import add_fingerprint

    _load_config(config_dir)
    try:
        r = add_fingerprint(workflow, model=model, wait=wait, source=source, crystal_structure=crystal_structure)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(r, indent=1, default=str))
    bad = [i for i, st in enumerate(r["statuses"]) if st != "success"]
    if bad:
        from ..matflow.export import workflow_elements

        why = {
            e["element"]: e["error"] for e in workflow_elements(r["workflow"])["fingerprint"] if e["task"] == r["task"]
        }
        first = why.get(bad[0]) or "no message recorded"
        raise click.ClickException(
            f"{len(bad)} of {len(r['statuses'])} elements of {r['task']} failed; element {bad[0]}: {first}"
        )


def _vars(pairs) -> dict[str, str]:
    return {k: v for k, v in pairs}


@matflow_group.command("demo")
@click.option(
    "--out",
    "out_dir",
    default="out/demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the workflow, the exported dataset and the plots.",
)
@click.option(
    "-v",
    "--var",
    "variables",
    type=(str, str),
    multiple=True,
    help="Template variable, e.g. --var n_shards 2 (see the template's header).",
)
@click.option(
    "--template",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Workflow template (default: the packaged uniaxial_campaign_demo.yaml).",
)
@_config_dir
def demo_cmd(out_dir, variables, template, config_dir):
    """Register the plugin and run the demo campaign through MatFlow (the same as
    `matflow go workflow_templates/uniaxial_campaign_demo.yaml --wait`), then export
    its dataset and copy the surrogate evaluation plots to OUT."""
    import shutil
    import time

    from ..matflow.export import export_workflow, write_export
    from ..matflow.install import TEMPLATES_DIR, install

    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    install(config_dir=config_dir)
    import matflow as mf

    tpl = Path(template) if template else TEMPLATES_DIR / "uniaxial_campaign_demo.yaml"
    wk = mf.Workflow.from_YAML_file(str(tpl), path=str(out), variables=_vars(variables), overwrite=False, store="zarr")
    click.echo(f"workflow: {wk.path}")
    wk.submit(wait=True, add_to_known=False, status=False, quiet=True)
    wall = time.perf_counter() - t0
    failed = []
    for task in wk.tasks:
        st = [el.action_runs[-1].status.name if el.action_runs else "pending" for el in task.elements]
        click.echo(f"  {task.unique_name:<22} " + " ".join(st))
        failed += [(task.unique_name, i) for i, s in enumerate(st) if s != "success"]
    data = export_workflow(wk)
    ds = write_export(data, out / "demo_dataset.h5", overwrite=True)
    st = data["status"]
    click.echo(
        f"dataset: {ds} ({len(st)} VEs: {int((st == 'converged').sum())} converged, "
        f"{int((st == 'failed').sum())} failed)"
    )
    for t in wk.tasks:
        if (
            t.template.schema.name == "plot_latent_PCA"
            and t.elements
            and t.elements[0].action_runs[-1].status.name == "success"
        ):
            for p in t.elements[0].outputs.latent_plots.value:
                shutil.copy2(Path(wk.path) / p, out / "latent_pca.png")
    ev = [t for t in wk.tasks if t.template.schema.name == "evaluate_surrogate"]
    if ev and ev[0].elements and ev[0].elements[0].action_runs[-1].status.name == "success":
        el = ev[0].elements[0]
        for p in el.outputs.surrogate_plots.value:
            shutil.copy2(Path(wk.path) / p, out / f"surrogate_{Path(p).name}")
        m = el.outputs.surrogate_metrics.value
        click.echo(
            f"freshly trained surrogate (this workflow's train_surrogate) on {m['n_ve']} held-out VEs: "
            f"MAE {m['mae_mpa_mean']:.2f} MPa, R^2 {m['r2']:.3f}; plots: {out}/surrogate_*.png, {out}/latent_pca.png"
        )
    _shipped_surrogate_summary(wk)
    click.echo(f"wall time {wall:.0f} s")
    if failed:
        raise click.ClickException(f"{len(failed)} run(s) did not succeed: {failed}")


def _shipped_surrogate_summary(wk) -> None:
    """Score the shipped Mg surrogate on the workflow's fingerprinted and simulated VEs
    (when they are what it was trained for), beside the freshly trained one."""
    from ..matflow.export import output_files
    from ..surrogate.ensemble import Surrogate
    from ..surrogate.evaluate import evaluate
    from ..surrogate.from_ves import pretrained_surrogate_path
    from ..surrogate.table import build_table

    fps = output_files(wk, "fingerprint_VE", "fingerprints")
    cps = output_files(wk, "simulate_uniaxial", "CP_results")
    if not fps or not cps:
        return
    try:
        sur = Surrogate.load(pretrained_surrogate_path())
        table = build_table(fps, cps, val_fraction=0.0, test_fraction=0.0, inputs=sur.inputs)
        if table.loadcase and sur.meta.get("loadcase") and table.loadcase != sur.meta["loadcase"]:
            raise ValueError("the CP load case differs from the surrogate's (the paper's, x to 1 % in 20)")
        res = evaluate(sur, table, split="all")
    except (ValueError, FileNotFoundError) as exc:  # another VAE, load case or material
        click.echo(f"shipped surrogate: not comparable with this workflow ({str(exc).splitlines()[0]})")
        return
    m, b = res["metrics"], res["baseline_mean_curve"]
    from ..microstructure.symmetry import base_id

    n_ves = len({base_id(v) for v in sur.meta["train_ids"]})
    rows = len(sur.meta["train_ids"])
    copies = f" ({rows} rows with rotated copies)" if rows != n_ves else ""
    click.echo(
        f"shipped surrogate (Mg 16³, trained on {n_ves} VEs{copies} outside this workflow) "
        f"on all {res['n_ve']} converged VEs here: MAE {m['mae_mpa_mean']:.2f} MPa, R^2 {m['r2']:.3f} "
        f"(its training mean curve: {b['mae_mpa_mean']:.2f} MPa)"
    )


@matflow_group.command("jobscripts")
@click.argument("template", type=click.Path(dir_okay=False, exists=True))
@click.option("--scheduler", type=click.Choice(["slurm", "sge", "direct"]), default="slurm", show_default=True)
@click.option("-v", "--var", "variables", type=(str, str), multiple=True, help="Template variable.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the throw-away workflow and the composed jobscripts.",
)
def jobscripts_cmd(template, scheduler, variables, out_dir):
    """Compose the jobscripts of TEMPLATE for a scheduler without submitting anything
    (no scheduler needed): prints directives and submit commands, writes the scripts."""
    import tempfile

    import matflow as mf

    from ..matflow.install import hermetic_overrides
    from ..matflow.workflows import preview_jobscripts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scheds = {
        "direct": {"defaults": {}},
        "slurm": {"defaults": {}},
        "sge": {
            "defaults": {},
            "parallel_environments": {None: {"num_cores": [1, 1, 1]}, "smp": {"num_cores": [2, 1, 1024]}},
        },
    }
    cfg = Path(tempfile.mkdtemp(prefix="cfg_", dir=out))
    if mf.is_config_loaded:
        mf.unload_config()
    mf.load_config(
        config_dir=str(cfg), warn=False, overrides={**hermetic_overrides(cfg / "plugin"), "schedulers": scheds}
    )
    mf.reload_template_components(warn=False)
    v = {"scheduler": scheduler, "combine_scripts": "false", **_vars(variables)}
    wk = mf.Workflow.from_YAML_file(str(template), path=str(out), variables=v)
    for j in preview_jobscripts(wk):
        p = out / f"js_{j['index']}_{'_'.join(j['tasks'])}.sh"
        p.write_text(j["text"])
        kind = f"array of {j['num_elements']}" if j["is_array"] else f"{j['num_elements']} element(s)"
        click.echo(f"[{j['index']}] {', '.join(j['tasks'])}: {kind}, {j['num_cores']} core(s) -> {p}")
        for line in j["directives"]:
            click.echo(f"      {line}")
        click.echo(f"      submit: {' '.join(j['submit_command'])}")
