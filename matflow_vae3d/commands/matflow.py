"""``vae3d matflow ...``: register the plugin with MatFlow, add a fingerprint task to
an existing workflow, export a workflow's results, show what is registered."""

from __future__ import annotations

import json
from pathlib import Path

import click

_config_dir = click.option(
    "--config-dir", type=click.Path(file_okay=False), default=None,
    help="MatFlow config folder (default: $MATFLOW_CONFIG_DIR, else ~/.matflow).",
)


@click.group("matflow")
def matflow_group():
    """Use the plugin from MatFlow: `vae3d matflow install`, then
    `matflow go workflow_templates/uniaxial_campaign_demo.yaml`."""


@matflow_group.command("install")
@_config_dir
@click.option("--python", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Interpreter that runs the actions (default: this one).")
@click.option("--setup", "extra_setup", multiple=True,
              help="Extra shell line for the environment's setup (repeatable), e.g. "
                   "'module load damask'.")
def install_cmd(config_dir, python, extra_setup):
    """Register task schemas, parameters and the `vae3d_env` environment (idempotent)."""
    from ..matflow.install import install

    try:
        r = install(config_dir=config_dir, python=python, extra_setup=list(extra_setup))
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
    """Export fingerprints, stress curves, per-VE status/reasons and provenance of
    WORKFLOW to one HDF5 file."""
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
    click.echo(f"{len(st)} VEs -> {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
               + f"; {int(data['has_fingerprint'].sum())} fingerprinted")


@matflow_group.command("add-fingerprint")
@click.argument("workflow", type=click.Path(exists=True))
@click.option("--model", default="pretrained", show_default=True,
              help="VAE checkpoint (path, or 'pretrained' for the shipped model).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the new task to finish.")
@_config_dir
def add_fingerprint_cmd(workflow, model, wait, config_dir):
    """Add a fingerprint_VE task to WORKFLOW (which must have VEs: ours or MatFlow's
    `volume_element`) and run only that task."""
    from ..matflow.install import _load_config
    from ..matflow.workflows import add_fingerprint

    _load_config(config_dir)
    try:
        r = add_fingerprint(workflow, model=model, wait=wait)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(r, indent=1, default=str))
