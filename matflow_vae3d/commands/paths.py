"""``vae3d train-path-surrogate | predict-path``: the load-path surrogate."""

from __future__ import annotations

import json
from pathlib import Path

import click

_FILES = click.Path(exists=True, dir_okay=False, path_type=Path)


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from exc


def _metrics_line(name: str, m: dict) -> str:
    return f"{name:<28} {m['mae_mpa']:8.2f} ± {m['mae_mpa_sd']:5.2f} {m['r2']:7.3f}"


@click.command("train-path-surrogate")
@click.option(
    "--results",
    "-r",
    type=_FILES,
    multiple=True,
    required=True,
    help="Path results file(s) (vae3d simulate-paths); repeat for several.",
)
@click.option(
    "--fingerprints",
    "-f",
    type=_FILES,
    help="Per-VE features: VAE fingerprints (vae3d fingerprint) or orientation statistics. "
    "Omit for the no-microstructure baseline.",
)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Checkpoint (.pt).")
@click.option("--members", default=3, show_default=True, type=click.IntRange(min=1), help="Ensemble members.")
@click.option("--hidden", default=64, show_default=True, type=click.IntRange(min=1), help="GRU width.")
@click.option("--layers", default=1, show_default=True, type=click.IntRange(min=1), help="GRU layers.")
@click.option(
    "--feature-steps/--features-initial-only",
    default=True,
    show_default=True,
    help="Features in every step's input and the initial hidden state, or the initial state only (about 2x "
    "faster to predict).",
)
@click.option("--max-epochs", default=300, show_default=True, type=click.IntRange(min=1))
@click.option("--patience", default=30, show_default=True, type=click.IntRange(min=1), help="Early stopping.")
@click.option("--lr", default=3e-3, show_default=True, type=click.FloatRange(min=0, min_open=True), help="AdamW.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Rows per step.")
@click.option("--val-fraction", default=0.15, show_default=True, type=float, help="Share of VEs for validation.")
@click.option("--test-fraction", default=0.2, show_default=True, type=float, help="Share of VEs held out.")
@click.option("--seed", default=0, show_default=True, type=int, help="Split and initialisation seed.")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write metrics.json and held-out best/median/worst path plots here.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@click.option("--progress/--no-progress", default=True)
def train_path_surrogate(
    results,
    fingerprints,
    out,
    members,
    hidden,
    layers,
    feature_steps,
    max_epochs,
    patience,
    lr,
    batch_size,
    val_fraction,
    test_fraction,
    seed,
    report_dir,
    overwrite,
    progress,
):
    """Train the load-path surrogate (GRU started from the VE's features) on CP runs
    along load paths; prints held-out errors beside the zero-stress baseline.

    \b
      vae3d train-path-surrogate -r paths_cp.h5 -f fp.h5 -o path_model.pt
    """
    from matflow_vae3d.surrogate.path_evaluate import path_metrics, plot_paths, zero_prediction
    from matflow_vae3d.surrogate.path_surrogate import PathTrainConfig, train_path_surrogate
    from matflow_vae3d.surrogate.path_table import build_path_table, read_features

    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists; pass --overwrite to replace it")
    try:
        fp, kind = read_features(fingerprints) if fingerprints else (None, "none")
        table = build_path_table(list(results), fp, kind, val_fraction, test_fraction, seed)
        cfg = PathTrainConfig(
            n_members=members,
            hidden=hidden,
            layers=layers,
            max_epochs=max_epochs,
            patience=patience,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            feature_steps=feature_steps,
        )
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    click.echo(table.summary())
    sur = train_path_surrogate(table, cfg, progress=progress)
    sur.save(out, overwrite=overwrite)
    click.echo(f"wrote {out} ({sur.meta['epochs_run']} epochs)")
    test = table.rows("test")
    if len(test) == 0:
        return
    mean, std = sur.predict_targets(table.X, table.U)
    model = path_metrics(table, mean, test, std)
    zero = path_metrics(table, zero_prediction(table), test)
    click.echo(f"held-out rows: {model['n_rows']} ({model['n_ves']} VEs); stress MAE per row, MPa")
    click.echo(f"{'predictor':<28} {'MAE':>8}   {'sd':>5} {'R2':>7}")
    click.echo(_metrics_line("zero stress (constant)", zero))
    click.echo(_metrics_line(f"path surrogate ({kind})", model))
    if "coverage_2sigma" in model:
        click.echo(f"±2σ coverage (calibrated): {100 * model['coverage_2sigma']:.1f} %")
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        doc = {"model": str(out), "features": kind, "summary": table.summary(), "test": model, "zero_stress": zero}
        for m in (doc["test"], doc["zero_stress"]):
            m.pop("mae_mpa_per_row", None)
        (report_dir / "metrics.json").write_text(json.dumps(doc, indent=1))
        plot_paths(table, mean, test, report_dir / "paths_test.png", std)
        click.echo(f"wrote {report_dir / 'metrics.json'} and {report_dir / 'paths_test.png'}")


@click.command("predict-path")
@click.option("--model", "-m", "model_path", required=True, type=_FILES, help="Path-surrogate checkpoint.")
@click.option(
    "--fingerprints",
    "-f",
    type=_FILES,
    help="Features of the VEs to predict (the kind the model was trained on); not for a no-feature model.",
)
@click.option(
    "--path",
    "-p",
    "paths_file",
    required=True,
    type=_FILES,
    help="Load path(s): a paths YAML or one DAMASK load.yaml (docs/load_paths.md).",
)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Predictions HDF5.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Plot the first VE's paths here.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def predict_path(model_path, fingerprints, paths_file, out, png, overwrite):
    """Predict the stress response of fingerprinted VEs along load paths, without CP.

    \b
      vae3d predict-path -m path_model.pt -f fp.h5 -p path.yaml -o pred.h5 --png pred.png
    """
    import numpy as np

    from matflow_vae3d.cp.loadpaths import read_paths
    from matflow_vae3d.surrogate.path_predictions import write_path_predictions
    from matflow_vae3d.surrogate.path_surrogate import PathSurrogate
    from matflow_vae3d.surrogate.path_table import read_features

    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists; pass --overwrite to replace it")
    try:
        sur = PathSurrogate.load(model_path)
        fp = read_features(fingerprints, sur.meta.get("inputs") or "auto")[0] if fingerprints else None
        sur.check_features(fp)
        paths = read_paths(paths_file)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    if fp is None and fingerprints is None and sur.features != "none":
        raise click.ClickException("give --fingerprints")
    ids = list(fp.ve_id) if fp is not None else ["(mean microstructure)"]
    X = fp.mu if fp is not None else None
    longest = int(sur.meta.get("max_increments", 0))
    rows: dict[str, list] = {k: [] for k in ("ve_id", "path_id", "loadcase", "t", "sigma", "sigma_std", "F")}
    import yaml

    too_long = [pid for pid, lc in paths.items() if longest and lc.n_increments > longest]
    if too_long:
        raise click.ClickException(
            f"path {too_long[0]} has {paths[too_long[0]].n_increments} increments, more than any path the model "
            f"was trained on ({longest}); split it or train on longer paths"
        )
    for pid, lc in paths.items():
        try:
            p = sur.predict(X, lc)
        except ValueError as exc:
            _fail(ValueError(f"path {pid}: {exc}"))
        text = yaml.safe_dump(lc.to_damask(), sort_keys=False)
        for k, vid in enumerate(ids):
            rows["ve_id"].append(vid)
            rows["path_id"].append(pid)
            rows["loadcase"].append(text)
            rows["t"].append(p["t"])
            for key in ("sigma", "sigma_std", "F"):
                rows[key].append(p[key][k])
    attrs = {
        "model": str(model_path),
        "model_sha256": sur.model_sha256,
        "features": sur.features,
        "n_members": sur.net.n_members,
    }
    write_path_predictions(out, **rows, attrs=attrs, overwrite=overwrite)
    click.echo(f"wrote {out}: {len(ids)} VE(s) x {len(paths)} path(s)")
    if png is not None:
        _plot_first(rows, png, np)
        click.echo(f"wrote {png}")


def _plot_first(rows, png, np):
    """Stress components against time of the first VE, one panel per path (up to 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matflow_vae3d.fileio import save_figure
    from matflow_vae3d.surrogate.path_table import VOIGT

    first = [k for k, v in enumerate(rows["ve_id"]) if v == rows["ve_id"][0]][:4]
    fig, axes = plt.subplots(1, len(first), figsize=(4.2 * len(first), 3.6), dpi=110, squeeze=False)
    for ax, k in zip(axes[0], first):
        t, s, sd = rows["t"][k], rows["sigma"][k] / 1e6, rows["sigma_std"][k] / 1e6
        for i, j in VOIGT:
            if np.abs(s[:, i, j]).max() < 1.0:
                continue
            (line,) = ax.plot(t, s[:, i, j], label=f"σ_{'xyz'[i]}{'xyz'[j]}")
            ax.fill_between(
                t, s[:, i, j] - 2 * sd[:, i, j], s[:, i, j] + 2 * sd[:, i, j], color=line.get_color(), alpha=0.2
            )
        ax.set_title(f"{rows['path_id'][k]} (VE {rows['ve_id'][k]})", fontsize=8)
        ax.set_xlabel("time (s)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("predicted Cauchy stress (MPa), ±2σ")
    fig.tight_layout()
    save_figure(fig, png)
