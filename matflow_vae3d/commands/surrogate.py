"""``vae3d train-surrogate | predict | evaluate-surrogate | acquire``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from matflow_vae3d.commands._options import parse_device

_FILES = click.Path(exists=True, dir_okay=False, path_type=Path)


def _fail(exc: Exception):
    raise click.ClickException(str(exc)) from exc


@click.command("train-surrogate")
@click.option(
    "--fingerprints",
    "-f",
    type=_FILES,
    multiple=True,
    required=True,
    help="Fingerprint HDF5 file(s) (vae3d fingerprint); repeat for several.",
)
@click.option(
    "--stresses",
    "-s",
    type=_FILES,
    multiple=True,
    required=True,
    help="CP result HDF5 file(s) (vae3d simulate); repeat for several.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Surrogate checkpoint to write (torch, weights_only-loadable).",
)
@click.option(
    "--inputs",
    type=click.Choice(["auto", "summary", "decoded", "summary+decoded"]),
    default="auto",
    show_default=True,
    help="Fingerprint input: the decoded orientation statistics (auto, when the files have them), "
    "the roll-invariant summary of mu (the paper's input), or both.",
)
@click.option(
    "--ensemble",
    "n_members",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of ensemble members (>= 2 gives a spread and enables `acquire`).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=10000,
    show_default=True,
    help="Maximum epochs (the paper's 10,000); early stopping usually ends sooner.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Stop when no member's validation loss improved for this many epochs.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the initialisation, shuffling and train/val/test split.",
)
@click.option(
    "--component", default="xx", show_default=True, help="Stress component to learn (xx = loading direction)."
)
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--test-fraction", type=float, default=0.1, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--hidden", type=click.IntRange(min=1), default=512, show_default=True)
@click.option(
    "--standardize/--no-standardize",
    default=False,
    show_default=True,
    help="Shift/scale each input feature by its training mean and sd (stored with the model); "
    "the default feeds the fingerprint as it is, as the paper does (better on the Mg reference set).",
)
@click.option(
    "--outputs",
    type=click.Choice(["non-trivial", "all"]),
    default="non-trivial",
    show_default=True,
    help="Predict the loaded states only (state 0 is 0 MPa) or all (the paper's 21).",
)
@click.option(
    "--scaling",
    type=click.Choice(["global", "per_increment"]),
    default="global",
    show_default=True,
    help="Min-max scaling of the targets.",
)
@click.option(
    "--scaling-margin",
    type=float,
    default=0.05,
    show_default=True,
    help="Widen [min, max] by this fraction of the range on each side (0 = paper).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch threads while training (1 is fastest for these small batches).",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="CSV log and loss.png [default: OUT without suffix + '_logs'].",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train_surrogate(
    fingerprints,
    stresses,
    out,
    inputs,
    n_members,
    epochs,
    patience,
    seed,
    component,
    val_fraction,
    test_fraction,
    batch_size,
    lr,
    hidden,
    standardize,
    outputs,
    scaling,
    scaling_margin,
    threads,
    log_dir,
    overwrite,
    progress,
):
    """Train the fingerprint -> stress-curve surrogate (the paper's MLP; an ensemble
    with --ensemble N).

    Joins fingerprints and CP results by VE id (failed runs excluded and counted),
    splits train/val/test by a seeded hash of the VE id, trains with early stopping on
    the validation loss, and writes the checkpoint, a CSV log and a loss-curve PNG.
    """
    from matflow_vae3d.surrogate.lightning import TrainConfig
    from matflow_vae3d.surrogate.lightning import train_surrogate as train
    from matflow_vae3d.surrogate.table import build_table

    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists; pass --overwrite to replace it")
    try:
        cfg = TrainConfig(
            n_members=n_members,
            hidden=hidden,
            lr=lr,
            batch_size=batch_size,
            max_epochs=epochs,
            patience=patience,
            outputs=outputs,
            scaling_mode=scaling,
            scaling_margin=scaling_margin,
            seed=seed,
            threads=threads,
            standardize_inputs=standardize,
        )
        table = build_table(
            list(fingerprints),
            list(stresses),
            component=component,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            inputs=inputs,
        )
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    click.echo(table.summary())
    log_dir = log_dir or out.with_name(out.stem + "_logs")
    t0 = time.perf_counter()
    try:
        model = train(table, cfg, log_dir=log_dir, progress=progress)
    except ValueError as exc:
        _fail(exc)
    wall = time.perf_counter() - t0
    model.meta["train_wall_s"] = wall
    model.save(out, overwrite=overwrite)
    best = model.meta["best_val_loss"]
    msg = f"trained {n_members} member(s) for {model.meta['epochs_run']} epochs in {wall:.1f} s" + (
        f"; best val MSE (scaled) {sum(best) / len(best):.3e}" if best else ""
    )
    if model.calibration_scale is not None:
        msg += f"; spread calibration x{model.calibration_scale:.3f}"
    click.echo(msg)
    click.echo(f"wrote {out} and {log_dir}/metrics.csv, {log_dir}/loss.png")


@click.command("predict")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Surrogate checkpoint, or 'pretrained' (the shipped Mg 16³ surrogate on the paper's "
    "load case, matched to the shipped hP VAE).",
)
@click.option(
    "--fingerprints", "-f", type=_FILES, multiple=True, help="Fingerprint HDF5 file(s) of the VEs to predict."
)
@click.option(
    "--data",
    "-d",
    multiple=True,
    type=click.Path(path_type=Path),
    help="VEs instead of fingerprints: a VE dataset (HDF5), a DAMASK .vti (+ material.yaml), "
    "a DREAM.3D file, a MatFlow volume_element, or a folder of them (repeatable); fingerprinted with "
    "the surrogate's VAE.",
)
@click.option(
    "--vae",
    type=_FILES,
    help="With --data: the VAE the surrogate was trained with (default: the shipped VAE with "
    "the surrogate's model_sha256).",
)
@click.option(
    "--material-yaml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With a .vti --data: its DAMASK material.yaml (default: material.yaml beside it).",
)
@click.option(
    "--save-fingerprints",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --data: also keep the fingerprint file.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Predictions HDF5 to write (sigma, sigma_std in MPa).",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the predicted curves with their +-2 sigma bands.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    help="Fingerprints per surrogate batch.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="With --data: device for fingerprinting (auto: CUDA when available), as vae3d fingerprint.",
)
@click.option(
    "--fallback",
    type=click.Choice(["none", "cp"]),
    default="none",
    show_default=True,
    help="With --data: answer VEs whose out-of-population score exceeds the surrogate's threshold by "
    "crystal plasticity (its material and load case) instead of the surrogate.",
)
@click.option(
    "--fallback-coarsen",
    default="auto",
    show_default=True,
    help="Coarsening factor of the fallback CP (an int or auto; docs/cp_solver.md 'Coarse CP').",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def predict(
    model,
    fingerprints,
    data,
    vae,
    material_yaml,
    save_fingerprints,
    out,
    png,
    batch_size,
    device,
    fallback,
    fallback_coarsen,
    overwrite,
    progress,
):
    """Predict stress-strain curves (MPa) from fingerprints, or from VEs directly.

    \b
      vae3d predict --model pretrained --data ves.h5 --out pred.h5 --png pred.png
      vae3d predict --model s.ckpt --fingerprints fp.h5 --out pred.h5

    Refuses fingerprints of another dimension or of another VAE than the one the
    surrogate was trained on, and VEs of another crystal structure or grid than
    that VAE's.
    """
    from matflow_vae3d.microstructure.sources import as_ve_dataset
    from matflow_vae3d.surrogate.ensemble import Surrogate, write_predictions
    from matflow_vae3d.surrogate.from_ves import plot_predictions, predict_ves, pretrained_surrogate_path
    from matflow_vae3d.surrogate.table import read_fingerprints

    if bool(fingerprints) == bool(data):
        raise click.UsageError("give exactly one of --fingerprints and --data")
    if fallback == "cp" and not data:
        raise click.UsageError("--fallback cp needs the VEs: give --data")
    answered_by = None
    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists; pass --overwrite to replace it")
    try:
        model_path = pretrained_surrogate_path() if model == "pretrained" else Path(model)
        sur = Surrogate.load(model_path)
        click.echo(f"surrogate {Path(model_path).name}: trained for {sur.trained_for_text()}")
        if data:
            with as_ve_dataset(data, material=material_yaml) as (ds_path, label):
                res = predict_ves(
                    sur,
                    ds_path,
                    vae=vae,
                    fingerprints_out=save_fingerprints,
                    device=str(parse_device(device)),
                    progress=progress,
                    label=label,
                )
                ids, mean, std, std_raw = res["ve_id"], res["mean"], res["std"], res["std_raw"]
                answered_by = _flag_and_fallback(sur, res, ds_path, fallback, fallback_coarsen, progress)
            wall = res["predict_s"]
        else:
            fp = read_fingerprints(list(fingerprints), sur.inputs)
            sur.check_fingerprints(fp)
            t0 = time.perf_counter()
            mean, std_raw = sur.predict(fp.mu, batch_size=batch_size, progress=progress, calibrated=False)
            wall = time.perf_counter() - t0
            std = std_raw * (sur.calibration_scale or 1.0)
            ids = fp.ve_id
            res = {"ood": sur.ood(fp.mu)}
            _flag_and_fallback(sur, dict(res, ve_id=ids), None, "none", None, False)
        write_predictions(
            out,
            ids,
            mean,
            std,
            std_raw,
            sur,
            model_path=str(model_path),
            overwrite=overwrite,
            ood=res["ood"],
            answered_by=answered_by,
        )
        if png:
            plot_predictions(ids, mean, std, sur.meta["strain"], png, component=sur.meta.get("component", "xx"))
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    msg = f"predicted {len(ids)} curves ({sur.n_members} member(s)) in {1000 * wall:.1f} ms"
    if data:
        n_s = res["fingerprint_s"] + res["predict_s"]
        msg += f" after fingerprinting in {res['fingerprint_s']:.1f} s ({len(ids) / n_s:.1f} VEs/s end to end)"
    click.echo(msg + f"; wrote {out}" + (f" and {png}" if png else ""))


def _flag_and_fallback(sur, res: dict, ves_path, fallback: str, coarsen, progress: bool) -> list[str]:
    """Print the out-of-population warnings and the fallback's outcome of
    :func:`~matflow_vae3d.surrogate.from_ves.flag_and_fallback` (stderr, one line each)."""
    from matflow_vae3d.surrogate.from_ves import flag_and_fallback

    answered, notes = flag_and_fallback(sur, res, ves_path, fallback, coarsen, progress)
    for line in notes:
        click.echo(line, err=line.startswith(("warning", "note")))
    return answered


@click.command("evaluate-surrogate")
@click.option("--model", "-m", type=_FILES, required=True, help="Surrogate checkpoint.")
@click.option("--fingerprints", "-f", type=_FILES, multiple=True, required=True)
@click.option("--stresses", "-s", type=_FILES, multiple=True, required=True)
@click.option(
    "--out-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for metrics.json, per_increment.csv, summary.txt and the PNGs.",
)
@click.option(
    "--split",
    type=click.Choice(["heldout", "test", "val", "train", "all"]),
    default="heldout",
    show_default=True,
    help="Rows to score: heldout = VEs neither trained on nor used for early "
    "stopping/calibration (the model's test VEs and any VE it never saw).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing results in --out-dir.")
def evaluate_surrogate(model, fingerprints, stresses, out_dir, split, overwrite):
    """Accuracy of a surrogate on held-out VEs: MSE (scaled), mean absolute error per
    increment (MPa and %), R^2, calibration of the ensemble spread, and plots (best /
    median / worst curves, error per increment, parity, calibration)."""
    from matflow_vae3d.surrogate.ensemble import Surrogate
    from matflow_vae3d.surrogate.evaluate import evaluate, per_increment_csv, summary_lines
    from matflow_vae3d.surrogate.table import build_table

    if (out_dir / "metrics.json").exists() and not overwrite:
        raise click.ClickException(f"{out_dir}/metrics.json exists; pass --overwrite to replace it")
    try:
        sur = Surrogate.load(model)
        sp = sur.meta.get("split", {})
        table = build_table(
            list(fingerprints),
            list(stresses),
            component=sur.meta.get("component", "xx"),
            val_fraction=sp.get("val_fraction", 0.1),
            test_fraction=sp.get("test_fraction", 0.1),
            seed=sp.get("seed", 0),
            inputs=sur.inputs,
        )
        res = evaluate(sur, table, split=split, out_dir=out_dir)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    res["model"] = str(model)
    res["table"] = table.summary()
    (out_dir / "metrics.json").write_text(json.dumps(res, indent=1))
    per_increment_csv(res, table.strain, out_dir / "per_increment.csv")
    lines = summary_lines(res)
    (out_dir / "summary.txt").write_text(table.summary() + "\n" + "\n".join(lines) + "\n")
    click.echo(table.summary())
    click.echo("\n".join(lines))
    click.echo(f"wrote {out_dir}/ (metrics.json, per_increment.csv, summary.txt, *.png)")


@click.command("acquire")
@click.option("--model", "-m", type=_FILES, required=True, help="Ensemble surrogate checkpoint.")
@click.option(
    "--fingerprints",
    "-f",
    type=_FILES,
    multiple=True,
    required=True,
    help="Fingerprints of candidate VEs (fingerprinted, not simulated).",
)
@click.option(
    "--top", "-k", type=click.IntRange(min=1), default=None, help="Keep the K highest-ranked candidates [default: all]."
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="CSV: rank, ve_id, score_mpa, pred_last_mpa, spread_last_mpa.",
)
@click.option(
    "--score",
    type=click.Choice(["spread", "spread-max"]),
    default="spread",
    show_default=True,
    help="spread: mean over loaded increments of the calibrated ensemble std (MPa); spread-max: its maximum.",
)
@click.option(
    "--include-simulated", is_flag=True, help="Also rank VEs that are in the surrogate's table (normally left out)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def acquire(model, fingerprints, top, out, score, include_simulated, overwrite):
    """Rank unsimulated VEs by the ensemble's predicted spread (active learning):
    simulate the top of the list next."""
    from matflow_vae3d.surrogate.acquisition import rank_candidates, write_ranking
    from matflow_vae3d.surrogate.ensemble import Surrogate
    from matflow_vae3d.surrogate.table import read_fingerprints

    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists; pass --overwrite to replace it")
    try:
        sur = Surrogate.load(model)
        fp = read_fingerprints(list(fingerprints), sur.inputs)
        rows = rank_candidates(sur, fp, top=top, score=score, skip_ids=set() if include_simulated else None)
        write_ranking(rows, out, overwrite=overwrite)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    seen = (
        set()
        if include_simulated
        else (set(sur.meta.get("train_ids", [])) | set(sur.meta.get("val_ids", [])) | set(sur.meta.get("test_ids", [])))
    )
    n_seen = sum(v in seen for v in fp.ve_id.tolist())
    click.echo(
        f"ranked {len(fp.ve_id) - n_seen} candidates by {score} ({n_seen} already "
        f"simulated left out); wrote {len(rows)} rows to {out}"
    )
    for r in rows[:5]:
        click.echo(f"  {r['rank']:4d}  {r['ve_id']}  {r['score_mpa']:.3f} MPa")
