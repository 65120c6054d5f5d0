"""``vae3d train-vae | fingerprint | evaluate | reconstruct | latent``.

Heavy imports (torch, Lightning) happen inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import click

from matflow_vae3d.commands._options import parse_device

#: the one help text of every VE input (microstructure.sources.as_ve_dataset reads them)
VES_HELP = (
    "VEs: a VE dataset (.h5), a DAMASK .vti (+ material.yaml beside it), a DREAM.3D file, a MatFlow "
    "volume_element (.json/.yaml/.npz), or a folder of such files; repeat for several."
)
MATERIAL_YAML_HELP = "material.yaml of .vti VEs (default: <stem>_material.yaml or material.yaml beside each)."


@contextlib.contextmanager
def _clear_errors(batch_size: int | None = None):
    """Turn expected failures into one-line click errors (no traceback)."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        hint = f" (batch size {batch_size}); try --batch-size {max(1, batch_size // 2)}" if batch_size else ""
        raise click.ClickException(f"GPU out of memory{hint}. Nothing was written.") from exc
    except (ValueError, FileNotFoundError, KeyError, OSError, FloatingPointError) as exc:
        raise click.ClickException(str(exc)) from exc


def _check_out(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise click.ClickException(f"{path} exists: pass --overwrite to replace it")


def _threads_option(f):
    return click.option(
        "--threads",
        type=click.IntRange(1),
        default=None,
        help="CPU threads for torch (default: torch's choice). On a loaded shared machine 1 can be 10x faster than 2.",
    )(f)


def _set_threads(threads):
    if threads:
        import torch

        torch.set_num_threads(threads)


def _load(model_path, data=None):
    """Load --model; the word 'pretrained' names the shipped model of the crystal
    structure of the dataset ``data`` (hP when unknown)."""
    from ..vae import dataset_lattice, pretrained_path
    from ..vae.checkpoint import load_model

    if str(model_path) == "pretrained":
        model_path = pretrained_path(dataset_lattice(data) if data else None)
    return load_model(model_path)


# ----------------------------------------------------------------------------- train
@click.command("train-vae")
@click.option(
    "--train", "train_path", required=True, type=click.Path(dir_okay=False), help="Training VE dataset (HDF5)."
)
@click.option("--val", "val_path", type=click.Path(dir_okay=False), help="Validation VE dataset (HDF5).")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: checkpoints/, history.csv, loss_curve.png, model.pt.",
)
@click.option(
    "--preset",
    default="periodic",
    show_default=True,
    type=click.Choice(
        ["periodic", "periodic-512", "periodic-256", "periodic-large", "resnet12", "resnet18", "resnet34", "small"],
        case_sensitive=False,
    ),
    help="periodic*: the spatial-latent periodic VAE on quaternions (the default design); "
    "resnet*/small: the paper's dense ResNet on Euler angles.",
)
@click.option(
    "--widths", help="Stage widths: 3 for periodic presets (e.g. 16,32,64), 4 for the paper's (default: preset's)."
)
@click.option(
    "--latent-channels",
    type=click.IntRange(1),
    help="periodic presets: latent numbers per coarse cell (fingerprint = channels x (grid/4)^3).",
)
@click.option(
    "--representation",
    type=click.Choice(["quaternion", "euler"]),
    help="periodic presets: per-voxel input/output, FZ quaternions with the symmetry-aware loss "
    "(default) or the paper's normalised Euler angles with BCE + spectral loss.",
)
@click.option("--hidden", type=int, help="Paper presets: hidden layer width (default: preset's).")
@click.option("--latent", type=int, help="Paper presets: latent (fingerprint) size (default: preset's).")
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", type=click.IntRange(1), help="Default: 16 periodic, 8 paper.")
@click.option(
    "--optimizer",
    type=click.Choice(["adam", "adamw"]),
    help="Default: adamw with warm-up + cosine (periodic), adam constant lr (paper).",
)
@click.option("--lr", type=float, help="Default: 2e-3 periodic, 1e-4 paper.")
@click.option("--warmup-steps", type=click.IntRange(0), help="adamw: linear warm-up steps (default 200).")
@click.option("--weight-decay", type=float, help="Default 1e-4.")
@click.option(
    "--alpha",
    default=0.999,
    show_default=True,
    type=float,
    help="Paper presets: weight of BCE; 1-alpha on the spectral term.",
)
@click.option(
    "--kl-weight", type=float, help="Weight of the KL term, 0: off (default: 1e-3 per element periodic, 1e-5 paper)."
)
@click.option(
    "--orientation-loss",
    default="angle",
    show_default=True,
    type=click.Choice(["angle", "squared", "angle+fz"]),  # vae.losses.ORIENTATION_LOSSES (torch-free import)
    help="periodic presets: per-voxel sin(theta/2) ('angle') or sin^2(theta/2), min over symmetry operators;"
    " 'angle+fz' adds the paper's 1-|q.q_hat| of fundamental-zone representatives.",
)
@click.option(
    "--roll/--no-roll",
    default=None,
    help="Random periodic roll of each training VE (default: on for periodic presets).",
)
@click.option("--gradient-clip", type=float, help="Gradient-norm clip, 0: off (default: 1 periodic, off paper).")
@click.option(
    "--checkpoint-every",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Also save last.ckpt every N steps (0: each epoch only).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--resume/--no-resume", default=None, help="Resume from OUT/checkpoints/last.ckpt (default: refuse if it exists)."
)
@click.option(
    "--init-from",
    type=click.Path(dir_okay=False, exists=True),
    help="Start a new run from this VAE's weights (same preset and lattice), "
    "e.g. to train a shipped model further with a fresh learning-rate schedule.",
)
@click.option("--accelerator", default="auto", show_default=True)
@click.option("--devices", default="auto", show_default=True, help="Number of devices (DDP over several GPUs).")
@click.option("--strategy", default="auto", show_default=True, help="Lightning strategy, e.g. ddp.")
@click.option("--precision", default=None, help="Lightning precision (default: bf16-mixed on CUDA, 32-true on CPU).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network.")
@click.option("--num-workers", default=0, show_default=True, type=click.IntRange(0))
@click.option("--progress/--no-progress", default=True)
@_threads_option
def train_vae(
    train_path,
    val_path,
    out_dir,
    preset,
    widths,
    latent_channels,
    representation,
    hidden,
    latent,
    epochs,
    batch_size,
    optimizer,
    lr,
    warmup_steps,
    weight_decay,
    alpha,
    kl_weight,
    orientation_loss,
    roll,
    gradient_clip,
    checkpoint_every,
    seed,
    resume,
    init_from,
    accelerator,
    devices,
    strategy,
    precision,
    compile_,
    num_workers,
    progress,
    threads,
):
    """Train a VAE on VE datasets (vae.train.train_vae).

    The grid and crystal structure are taken from the training set (the validation
    set must match). Checkpoints are written every epoch; a killed run continues
    with --resume to the same state. The final weights are exported to OUT/model.pt
    (the best validation epoch when --val is given, else the last).
    """
    _set_threads(threads)
    from ..vae.train import train_vae as run

    w = tuple(int(s) for s in widths.split(",")) if widths else None
    overrides = dict(
        widths=w, latent_channels=latent_channels, representation=representation, hidden=hidden, latent=latent
    )
    devs = int(devices) if str(devices).isdigit() else devices
    with _clear_errors(batch_size):
        t0 = time.perf_counter()
        rec = run(
            train_path,
            out_dir,
            val=val_path,
            preset=preset,
            overrides=overrides,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            optimizer=optimizer,
            warmup_steps=warmup_steps,
            kl_weight=kl_weight,
            alpha=alpha,
            orientation_loss=orientation_loss,
            roll=roll,
            gradient_clip=gradient_clip,
            seed=seed,
            resume=resume,
            accelerator=accelerator,
            devices=devs,
            strategy=strategy,
            precision=precision,
            compile=compile_,
            num_workers=num_workers,
            progress=progress,
            checkpoint_every_n_steps=checkpoint_every,
            init_from=init_from,
        )
    out = Path(out_dir)
    if rec:  # rank 0 of a DDP run (or the only process)
        click.echo(
            f"trained {epochs} epochs in {time.perf_counter() - t0:.0f} s; model -> {out / 'model.pt'} "
            f"(from {rec['exported_from']}); history -> {out / 'history.csv'}"
        )


# ----------------------------------------------------------------------------- fingerprint
@click.command("fingerprint")
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="VAE model file (model.pt or a .ckpt), or 'pretrained' for the shipped small model.",
)
@click.option("--data", required=True, multiple=True, type=click.Path(), help=VES_HELP)
@click.option("--material-yaml", type=click.Path(dir_okay=False), help=MATERIAL_YAML_HELP)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Fingerprint file (HDF5) to write.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--device", default="auto", show_default=True)
@click.option("--num-workers", default=0, show_default=True, type=click.IntRange(0))
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--progress/--no-progress", default=True)
@_threads_option
def fingerprint(model_path, data, material_yaml, out, batch_size, device, num_workers, overwrite, progress, threads):
    """Encode VEs to fingerprints (the encoder's mean mu, no noise).

    \b
      vae3d fingerprint --model pretrained --data ves.h5 --out fp.h5
      vae3d fingerprint --model pretrained --data grid.vti --out fp.h5     # DAMASK geometry + material.yaml
      vae3d fingerprint --model pretrained --data my_ves/ --out fp.h5      # a folder of VE files
    """
    _set_threads(threads)
    from ..microstructure.sources import as_ve_dataset
    from ..vae.encode import fingerprint_dataset

    _check_out(Path(out), overwrite)
    with _clear_errors(batch_size), as_ve_dataset(data, material=material_yaml) as (path, label):
        model, meta = _load(model_path, path)
        t0 = time.perf_counter()
        res = fingerprint_dataset(
            model,
            meta,
            path,
            out,
            batch_size=batch_size,
            device=parse_device(device),
            num_workers=num_workers,
            progress=progress,
            label=label,
            source=";".join(str(Path(d).resolve()) for d in data),
        )
        dt = time.perf_counter() - t0
    click.echo(f"{res['n']} fingerprints (latent {res['latent']}) -> {out} in {dt:.1f} s ({res['n'] / dt:.1f} VEs/s)")


# ----------------------------------------------------------------------------- evaluate
def _evaluate_sets(model_path, data, batch_size, device, max_ves, num_workers, progress, material=None, baselines=None):
    """Evaluate each set of ``data`` (any VE files, :func:`as_ve_dataset`); with
    ``baselines`` (a callable (dataset path, lattice) -> baseline dict) also those.
    Returns (meta, {set: summary}, {set: baselines})."""
    from ..microstructure.sources import as_ve_dataset
    from ..vae.encode import evaluate_dataset

    dev = parse_device(device)
    model = meta = None
    results, base = {}, {}
    for user_path in data:
        with as_ve_dataset(user_path, material=material) as (path, label):
            if model is None:
                model, meta = _load(model_path, path)
            results[user_path] = evaluate_dataset(
                model,
                meta,
                path,
                batch_size=batch_size,
                device=dev,
                num_workers=num_workers,
                max_ves=max_ves,
                progress=progress,
                label=label,
            )
            if baselines is not None:
                base[user_path] = baselines(path, meta["lattice"])
    return meta, results, base


def _table(results, baselines=None) -> str:
    from ..vae.evaluation import table

    return table(results, baselines)


_eval_options = [
    click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False)),
    click.option(
        "--data",
        required=True,
        multiple=True,
        type=click.Path(),
        help="VEs of one set (a VE dataset, .vti, .dream3d, MatFlow volume_element, or a folder of them); "
        "repeat for several sets.",
    ),
    click.option("--material-yaml", type=click.Path(dir_okay=False), help="material.yaml of .vti sets."),
    click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1)),
    click.option("--device", default="auto", show_default=True),
    click.option("--max-ves", type=click.IntRange(1), help="Use only the first N VEs of each set."),
    click.option("--num-workers", default=0, show_default=True, type=click.IntRange(0)),
    click.option("--progress/--no-progress", default=True),
]


def _with(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f

    return deco


@click.command("evaluate")
@_with(_eval_options)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), help="Write per-set summaries (and per-VE values) as JSON."
)
@click.option("--png", type=click.Path(dir_okay=False), help="Input vs reconstruction mid-slices of the first set.")
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="Also score the constant identity orientation and a mean image.",
)
@click.option(
    "--mean-image-from",
    type=click.Path(dir_okay=False),
    help="VE dataset (e.g. the training set) whose voxel-wise mean Euler image is the "
    "'mean image' baseline (default: the evaluated set's own).",
)
@_threads_option
def evaluate(
    model_path,
    data,
    material_yaml,
    batch_size,
    device,
    max_ves,
    num_workers,
    progress,
    json_out,
    png,
    baselines,
    mean_image_from,
    threads,
):
    """Reconstruction error of a VAE on VE datasets, next to trivial baselines: per VE
    the mean over voxels of the disorientation (deg), the fractions of voxels within
    5 and 15 deg and the paper's 1-|q.q^| (FZ quaternions), then mean ± std per set."""
    _set_threads(threads)
    from ..vae.encode import plot_reconstructions
    from ..vae.evaluation import LOO_MIN_VES, baseline_errors, mean_euler_image

    with _clear_errors(batch_size):
        fixed = mean_euler_image(mean_image_from) if (baselines and mean_image_from) else None

        def base_of(path, lattice):
            return baseline_errors(path, lattice, mean_image=fixed, max_ves=max_ves, leave_one_out=fixed is None)

        meta, results, base = _evaluate_sets(
            model_path,
            data,
            batch_size,
            device,
            max_ves,
            num_workers,
            progress,
            material=material_yaml,
            baselines=base_of if baselines else None,
        )
        click.echo(
            f"model {Path(model_path).name} ({meta['lattice']}, grid {meta['grid']}, sha256 {meta['sha256'][:12]})"
        )
        click.echo(_table(results, base))
        if baselines:
            src = (
                f"the VEs of {Path(mean_image_from).name}"
                if mean_image_from
                else f"the set's other VEs (leave-one-out; omitted for sets of fewer than {LOO_MIN_VES} VEs: "
                "give --mean-image-from TRAINING_SET)"
            )
            click.echo(f"identity: constant identity orientation; mean image: voxel-wise mean Euler image of {src}")
        if png:
            first = next(iter(results.values()))
            x, rec = first["examples"]
            plot_reconstructions(
                x,
                rec,
                png,
                titles=first["ve_id"][: len(x)],
                representation=meta["representation"],
                lattice=meta["lattice"],
            )
            click.echo(f"mid-slices -> {png}")
        if json_out:
            from ..vae.evaluation import plain_summary

            doc = {p: plain_summary(r) for p, r in results.items()}
            if base:
                doc = {p: dict(d, baselines={k: plain_summary(b) for k, b in base[p].items()}) for p, d in doc.items()}
            from ..fileio import atomic_output

            with atomic_output(json_out) as tmp:
                tmp.write_text(
                    json.dumps({"model": str(model_path), "model_sha256": meta["sha256"], "sets": doc}, indent=1)
                )


@click.command("reconstruct")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False))
@click.option("--data", required=True, multiple=True, type=click.Path(), help=VES_HELP)
@click.option("--material-yaml", type=click.Path(dir_okay=False), help=MATERIAL_YAML_HELP)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="PNG of input vs reconstruction mid-slices."
)
@click.option(
    "--index", "indices", multiple=True, type=click.IntRange(0), help="VE indices to draw (default: first 4)."
)
@click.option("--device", default="auto", show_default=True)
@_threads_option
def reconstruct(model_path, data, material_yaml, out, indices, device, threads):
    """Decode VEs and draw input vs reconstruction mid-slices, with each VE's error."""
    _set_threads(threads)
    from ..microstructure.sources import as_ve_dataset
    from ..vae.encode import misorientation, open_dataset, plot_reconstructions, prepare, to_input
    from ..vae.encode import reconstruct as rec_fn

    with _clear_errors(len(indices) or 4), as_ve_dataset(data, material=material_yaml) as (path, label):
        model, meta = _load(model_path, path)
        ds = open_dataset(path, meta, label)
        idx = list(indices) or list(range(min(4, len(ds))))
        bad = [i for i in idx if i >= len(ds)]
        if bad:
            raise ValueError(f"indices {bad} out of range: the dataset holds {len(ds)} VEs")
        dev = parse_device(device)
        model = prepare(model, dev)
        batch = ds.read_batch(idx)
        rep = meta["representation"]
        x = to_input(batch, dev, rep)
        _, rec = rec_fn(model, x)
        err = misorientation(x, rec, meta["lattice"], rep)
        for k, (i, vid) in enumerate(zip(idx, batch.ve_ids)):
            click.echo(
                f"VE {i} ({vid}): disorientation {float(err['deg'][k]):.2f} deg, "
                f"{100 * float(err['within5'][k]):.1f} % / {100 * float(err['within15'][k]):.1f} % "
                f"of voxels within 5 / 15 deg, 1-|q.q^| = {float(err['quat'][k]):.3e}"
            )
        plot_reconstructions(
            x, rec, out, titles=[str(v) for v in batch.ve_ids], representation=rep, lattice=meta["lattice"]
        )
    click.echo(f"mid-slices -> {out}")


# ----------------------------------------------------------------------------- latent
def _fingerprints_of(path, model, meta, device, batch_size, progress):
    """(ids, mu (n, latent), roll-invariant summary (n, F), latent shape) of a
    fingerprint file made by this model, or of VEs (any VE files, encoded now, any grid
    the model takes)."""
    import h5py
    import numpy as np

    from ..microstructure.sources import as_ve_dataset
    from ..vae.encode import encode_with_summary, latent_shape, loader, open_dataset, prepare, to_input, voxel_batch
    from ..vae.fingerprints import FINGERPRINT_FORMAT, check_same_vae, read_fingerprints

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"not found: {path}")
    fmt = None
    if p.is_file() and h5py.is_hdf5(p):
        with h5py.File(p, "r") as f:
            fmt = f.attrs.get("format")
    if fmt == FINGERPRINT_FORMAT:
        fp = read_fingerprints(path)
        check_same_vae(meta["sha256"], fp["model_sha256"], "this model's fingerprints", str(path))
        return fp["ve_id"], fp["mu"], fp["summary"], fp["latent_shape"]
    with as_ve_dataset(path) as (data, label):
        ds = open_dataset(data, meta, label)
        m = prepare(model, device)
        ids, mus, sums = [], [], []
        for batch in loader(data, voxel_batch(batch_size, ds.grid)):
            mu, summ = encode_with_summary(m, to_input(batch, device, meta["representation"]))
            mus.append(mu)
            sums.append(summ)
            ids.extend(str(v) for v in batch.ve_ids)
        return ids, np.concatenate(mus), np.concatenate(sums), latent_shape(model, ds.grid)


def _named(spec: str) -> tuple[str, str]:
    if "=" not in spec:
        raise click.BadParameter(f"expected NAME=PATH, got {spec!r}")
    name, path = spec.split("=", 1)
    return name, path


@click.command("latent")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--train",
    "train_path",
    required=True,
    type=click.Path(),
    help="Training fingerprints, or VEs (any VE file or a folder of them), to fit the PCA on.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=PATH",
    help="Labelled set (fingerprints, or VEs: any VE file or a folder); repeatable. Projected on the PCA "
    "and clustered.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--steps", default=8, show_default=True, type=click.IntRange(2))
@click.option(
    "--pca-components",
    default=3,
    show_default=True,
    type=click.IntRange(2),
    help="PCA components used for the clustering (paper: 3).",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@_threads_option
def latent(model_path, train_path, sets, out_dir, steps, pca_components, device, batch_size, seed, threads):
    """Latent space: decoded linear path between the first two training fingerprints
    (path.png), PCA scatter of training fingerprints with the sets projected
    (pca.png), and spectral clustering of the sets (accuracy after best matching)."""
    _set_threads(threads)
    from ..latent import decode_path, fit_pca, plot_path, plot_pca, spectral_clustering

    out = Path(out_dir)
    with _clear_errors(batch_size):
        model, meta = _load(model_path)
        dev = parse_device(device)
        # the decoded path runs between full fingerprints; PCA and clustering use the
        # roll-invariant summaries (for a dense model: the fingerprints themselves)
        _, path_mu, train_mu, path_shape = _fingerprints_of(train_path, model, meta, dev, batch_size, False)
        named = dict(_named(s) for s in sets)
        set_mu = {k: _fingerprints_of(p, model, meta, dev, batch_size, False)[2] for k, p in named.items()}
        out.mkdir(parents=True, exist_ok=True)
        if len(train_mu) < 2:
            raise ValueError("need at least two training fingerprints")
        model = model.to(dev)
        plot_path(
            decode_path(model, path_mu[0], path_mu[1], steps, latent_shape=path_shape),
            out / "path.png",
            representation=meta["representation"],
            lattice=meta["lattice"],
        )
        pca2 = fit_pca(train_mu, 2)
        plot_pca(pca2, train_mu, set_mu, out / "pca.png")
        summary = {"n_train": int(len(train_mu)), "explained_variance_2": pca2.explained_variance_ratio_.tolist()}
        if len(set_mu) >= 2:
            pca = fit_pca(train_mu, min(pca_components, train_mu.shape[1]))
            sc = spectral_clustering(set_mu, pca=pca, seed=seed)
            summary.update(
                clustering_accuracy=sc["accuracy"],
                sets={k: int(len(v)) for k, v in set_mu.items()},
                pca_components=int(pca.n_components_),
            )
            raw = spectral_clustering(set_mu, pca=None, seed=seed)
            summary["clustering_accuracy_full_latent"] = raw["accuracy"]
            click.echo(
                f"spectral clustering of {len(set_mu)} sets: accuracy {100 * sc['accuracy']:.1f} % "
                f"on {pca.n_components_} PCA components, {100 * raw['accuracy']:.1f} % on the full latent"
            )
        (out / "latent.json").write_text(json.dumps(summary, indent=1))
    click.echo(f"path.png, pca.png, latent.json -> {out}")
