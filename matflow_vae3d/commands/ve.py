"""``vae3d generate``, ``vae3d show`` and ``vae3d convert``: volume elements on disk."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from ..datasets import COMPRESSIONS
from ..microstructure.generate import ve_seed as derive_seed  # the one seed rule, shared with MatFlow
from ..microstructure.sources import FORMATS, detect_format, load_ves

_FORMAT_SUFFIX = {"dataset": ".h5", "damask": ".vti", "dream3d": ".dream3d", "matflow": ".yaml"}


def ve_id_for(preset: str, seed: int, index: int) -> str:
    """Id of VE ``index`` of ``vae3d generate --preset P --seed S``."""
    return f"{preset}-s{seed}-{index:06d}"


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _resampled(ves, grid, reports: list):
    """VEs resampled to ``grid`` (nearest neighbour), appending each report."""
    from ..microstructure.resample import resample_ve

    for ve in ves:
        new, rep = resample_ve(ve, grid)
        reports.append(rep)
        yield new


def _vanished_text(reports) -> str:
    if not reports:
        return ""
    g = sum(r.vanished_grains for r in reports)
    total = sum(r.grains_before for r in reports)
    vf = max(r.vanished_volume_fraction for r in reports)
    return (
        f"; resampled {'x'.join(map(str, reports[0].grid_before))} -> {'x'.join(map(str, reports[0].grid_after))}: "
        f"{g} of {total} grains vanished (at most {100 * vf:.2f} % of a VE's volume)"
    )


# ----------------------------------------------------------------------------- generate
def _params_for(preset: str, grid, lattice: str | None):
    """Preset parameters with the grid (and lattice) replaced."""
    from ..microstructure import get_preset

    try:
        params = get_preset(preset)
    except (KeyError, ValueError) as exc:
        raise click.BadParameter(str(exc).strip("'\""), param_hint="--preset") from None
    names = {f.name for f in dataclasses.fields(params)}
    changes: dict[str, Any] = {}
    for name in ("grid", "cells", "grid_size"):
        if name in names:
            changes[name] = tuple(grid)
            break
    if lattice is not None:
        if "lattice" not in names:  # pragma: no cover - VEParams has a lattice
            raise click.BadParameter("this preset has no lattice parameter", param_hint="--lattice")
        changes["lattice"] = lattice
    try:
        return dataclasses.replace(params, **changes)
    except (ValueError, TypeError) as exc:
        raise _fail(exc) from None


class GridType(click.ParamType):
    """A grid on the command line: ``N`` (N³) or ``NXxNYxNZ`` (e.g. 16x32x48)."""

    name = "GRID"

    def __init__(self, minimum: int = 1):
        self.minimum = int(minimum)

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).lower().replace("×", "x").replace(",", "x")
        parts = text.split("x")
        try:
            g = tuple(int(p) for p in parts)
        except ValueError:
            self.fail(f"{value!r} is not a grid: give N (N^3) or NXxNYxNZ, e.g. 32 or 16x32x48", param, ctx)
        if len(g) == 1:
            g = g * 3
        if len(g) != 3:
            self.fail(f"{value!r} is not a grid: give N (N^3) or NXxNYxNZ, e.g. 32 or 16x32x48", param, ctx)
        if min(g) < self.minimum:
            self.fail(f"grid must be at least {self.minimum} cells per edge, got {value}", param, ctx)
        return g


def _check_lattice(ctx, param, value):
    if value is None:
        return None
    from ..crystal import canonical_lattice

    try:
        return canonical_lattice(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("generate")
@click.option(
    "--preset",
    "-p",
    default="train",
    show_default=True,
    help="Generator preset (the paper's datasets, and the S texture component): train, large, small, "
    "elongated, brass, copper, cube, goss, s.",
)
@click.option(
    "--count", "-n", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of VEs to generate."
)
@click.option(
    "--grid",
    type=GridType(minimum=8),
    default="64",
    show_default=True,
    help="Cells per edge: N for an N^3 grid or NXxNYxNZ (e.g. 16x32x48), each >= 8; the "
    "periodic VAE takes edges that are multiples of 4.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Run seed; VE i gets a seed derived from (seed, i).",
)
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output VE dataset (HDF5)."
)
@click.option(
    "--lattice",
    default=None,
    callback=_check_lattice,
    help="Crystal structure (cF, cI, hP or fcc/bcc/hcp); default: the preset's.",
)
@click.option("--workers", "-j", type=click.IntRange(min=1), default=1, show_default=True, help="Generator processes.")
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=None,
    help="Index of the first VE. Default 0, or with --append the index after "
    "the last VE of this preset and seed already in the file.",
)
@click.option("--append", is_flag=True, help="Add to an existing dataset (same lattice and grid).")
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing file (the old one stays until the new one is complete)."
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default="zstd",
    show_default=True,
    help="Grain-map codec of a new file: zstd (fast, needs hdf5plugin in other "
    "HDF5 tools), gzip (readable everywhere), lzf, none.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def generate(preset, count, grid, seed, out, lattice, workers, start, append, overwrite, compression, progress):
    """Generate synthetic polycrystal VEs into an HDF5 VE dataset.

    VE i has id PRESET-sSEED-iiiiii and a seed derived from (SEED, i), so the same
    command always makes the same VEs, and `--append` continues a sequence. A new
    file appears only when complete; an interrupted `--append` leaves the previous
    content intact.

    \b
    Example:
      vae3d generate --preset train --count 1000 --grid 64 --seed 0 --out train.h5
      vae3d generate --preset train --count 1000 --seed 0 --out train.h5 --append
      vae3d generate --preset train --count 10 --grid 16x32x48 --seed 0 --out slab.h5
    """
    from ..datasets import VEDataset, write_ves
    from ..microstructure import generate_ves

    if append and overwrite:
        raise click.UsageError("use --append or --overwrite, not both")
    if out.exists() and not (append or overwrite):
        raise click.ClickException(f"{out} exists: pass --append to add VEs to it or --overwrite to replace it")
    params = _params_for(preset, grid, lattice)
    prefix = ve_id_for(preset, seed, 0)[:-6]
    if append and out.exists():
        try:
            with VEDataset(out) as ds:
                lat = getattr(params, "lattice", ds.lattice)
                if ds.grid != tuple(grid) or ds.lattice != lat:
                    raise click.ClickException(
                        f"{out} holds {ds.lattice} VEs on a {ds.grid} grid; cannot append "
                        f"{lat} VEs on a {tuple(grid)} grid"
                    )
                taken = [
                    int(v[len(prefix) :]) for v in ds.ve_ids if v.startswith(prefix) and v[len(prefix) :].isdigit()
                ]
        except (ValueError, FileNotFoundError) as exc:
            raise _fail(exc) from None
        if start is None:
            start = max(taken) + 1 if taken else 0
    start = start or 0
    indices = list(range(start, start + count))
    seeds = [derive_seed(seed, i) for i in indices]
    index_of = dict(zip(seeds, indices))

    def stream():
        for k, ve in enumerate(generate_ves(params, seeds, workers=workers, progress=progress)):
            i = index_of.get(ve.seed, indices[k])
            ve.ve_id = ve_id_for(preset, seed, i)
            yield ve

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        n = write_ves(
            out, stream(), append=append, overwrite=overwrite, progress=False, total=count, compression=compression
        )
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        raise _fail(exc) from None
    click.echo(
        f"wrote {n} VEs ({ve_id_for(preset, seed, indices[0])} .. {ve_id_for(preset, seed, indices[-1])}) to {out}"
    )


# ----------------------------------------------------------------------------- show
@click.command("show")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--index",
    "-i",
    type=int,
    default=0,
    show_default=True,
    help="Row of the VE in a VE dataset (negative counts from the end).",
)
@click.option("--ve-id", default=None, help="Pick the VE by id instead of --index.")
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image to write (.png, .pdf, .svg).",
)
@click.option(
    "--lattice", default=None, callback=_check_lattice, help="Crystal structure, for sources that do not record it."
)
@click.option(
    "--material",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="material.yaml of a .vti source.",
)
@click.option("--dpi", type=click.IntRange(min=10), default=150, show_default=True)
def show(source, index, ve_id, out, lattice, material, dpi):
    """Draw the three mid-slices of a VE coloured by normalised Euler angles.

    RGB = (phi1/2pi, Phi/pi, phi2/2pi) of each voxel's FZ Bunge angles (the paper's
    convention); the title gives the VE id, lattice, grid and grain count. SOURCE is
    a VE dataset (.h5), any file `vae3d convert` reads, or a folder of them (--index
    counts the VEs of the folder's files in name order).

    \b
    Example:
      vae3d show train.h5 --index 0 --out ve.png
    """
    from ..plots import plot_mid_slices

    try:
        if Path(source).is_dir():  # a folder of VE files: the one reader, then --index / --ve-id
            from ..datasets import VEDataset
            from ..microstructure.sources import as_ve_dataset

            with as_ve_dataset(source, material=material, lattice=lattice) as (path, _), VEDataset(path) as ds:
                ve = ds[ds.index_of(ve_id) if ve_id else index]
        elif (fmt := detect_format(source)) == "dataset":
            from ..datasets import VEDataset

            with VEDataset(source) as ds:
                ve = ds[ds.index_of(ve_id) if ve_id else index]
        else:
            ve = next(load_ves(source, fmt, lattice=lattice, material=material)[1])
    except (ValueError, FileNotFoundError, KeyError, IndexError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    if out.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise click.BadParameter(f"unsupported image type {out.suffix!r}", param_hint="--out")
    plot_mid_slices(ve, out, dpi=dpi)
    click.echo(f"{ve.ve_id}: {ve.lattice}, grid {ve.grid}, {ve.n_grains} grains -> {out}")


# ----------------------------------------------------------------------------- convert
def _read_phase(path: Path | None):
    if path is None:
        return None, None
    import yaml

    d = yaml.safe_load(path.read_text())
    if isinstance(d, dict) and "phase" in d and isinstance(d["phase"], dict):
        d = d["phase"]  # a whole material.yaml: take its phase section
    if isinstance(d, dict) and "lattice" in d:
        return d, None
    if isinstance(d, dict) and len(d) == 1:
        ((label, phase),) = d.items()
        if isinstance(phase, dict):
            return phase, str(label)
    raise click.BadParameter(
        f"{path} must hold one DAMASK phase definition ({{lattice: ..., mechanical: ...}} or {{label: {{...}}}})",
        param_hint="--phase",
    )


def _write_one(ve, dst: Path, fmt: str, *, phase, phase_label, material, overwrite):
    from ..microstructure import io

    if fmt == "damask":
        mat = material.name if material is not None else f"{dst.stem}_material.yaml"
        vti, m = io.save_damask(
            ve, dst.parent, phase, phase_label=phase_label, name=dst.stem, material_name=mat, overwrite=overwrite
        )
        return f"{vti} + {m}"
    if fmt == "dream3d":
        return str(io.save_dream3d(ve, dst, phase_name=phase_label, overwrite=overwrite))
    if fmt == "matflow":
        d = io.to_matflow_volume_element(ve, phase_label=phase_label)
        return str(io.save_matflow_volume_element(d, dst, overwrite=overwrite))
    raise ValueError(f"unknown format {fmt!r}")


@click.command("convert")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--from",
    "from_",
    type=click.Choice(FORMATS),
    default=None,
    help="Format of SOURCE (default: from its extension/content).",
)
@click.option(
    "--to",
    "to",
    type=click.Choice(FORMATS),
    default=None,
    help="Format of DEST (default: from its extension). Required when DEST is a directory receiving one file per VE.",
)
@click.option(
    "--index",
    "-i",
    "indices",
    type=int,
    multiple=True,
    help="Row of a VE in a dataset SOURCE (repeatable; default all).",
)
@click.option("--ve-id", "ve_ids", multiple=True, help="Id of a VE in a dataset SOURCE (repeatable).")
@click.option(
    "--lattice",
    default=None,
    callback=_check_lattice,
    help="Crystal structure for sources that do not record it (MatFlow dicts; "
    "cubic DREAM.3D files: cF unless cI is given).",
)
@click.option(
    "--material",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="material.yaml of a .vti SOURCE (default: <stem>_material.yaml or "
    "material.yaml next to it), or the material file name for a .vti DEST "
    "(default <stem>_material.yaml).",
)
@click.option(
    "--phase",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML with the DAMASK phase for .vti/material.yaml export (default: a "
    "minimal elastic phase of the VE's lattice).",
)
@click.option("--phase-label", default=None, help="Phase name in exports (default Al/Fe/Mg for cF/cI/hP).")
@click.option("--append", is_flag=True, help="Add to an existing VE dataset DEST.")
@click.option("--overwrite", is_flag=True, help="Replace existing DEST files.")
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default="zstd",
    show_default=True,
    help="Grain-map codec of a new VE dataset DEST.",
)
@click.option(
    "--grid",
    type=GridType(minimum=1),
    default=None,
    help="Resample every VE to this grid on the way (N or NXxNYxNZ): nearest neighbour, periodic, same "
    "physical size and orientations; vanished grains are dropped and counted.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar for several VEs.")
def convert(
    source,
    dest,
    from_,
    to,
    indices,
    ve_ids,
    lattice,
    material,
    phase,
    phase_label,
    append,
    overwrite,
    compression,
    grid,
    progress,
):
    """Import/export VEs between a VE dataset and DAMASK, DREAM.3D and MatFlow files,
    optionally resampled to another grid (--grid).

    \b
    Formats (from the extension unless --from/--to is given):
      dataset  .h5        matflow-vae3d VE dataset (many VEs)
      damask   .vti       DAMASK grid geometry + material.yaml (one material per
                          grain, homogenization SX, viewable in ParaView)
      dream3d  .dream3d   DREAM.3D file (read by damask.GeomGrid.load_DREAM3D)
      matflow  .yaml/.json/.npz   MatFlow `volume_element` parameter dict

    \b
    Examples:
      vae3d convert train.h5 ve0.vti --index 0            # + ve0_material.yaml
      vae3d convert train.h5 out/ --to damask --index 0 --index 1
      vae3d convert train.h5 ve0.yaml --ve-id train-s0-000000
      vae3d convert synthetic.dream3d ves.h5 --append
      vae3d convert volume_element.yaml ves.h5 --lattice hP
      vae3d convert grain18.vti grain16.h5 --grid 16        # nearest-neighbour resampling
    """
    from ..datasets import write_ves

    if append and overwrite:
        raise click.UsageError("use --append or --overwrite, not both")
    try:
        src_fmt = from_ or detect_format(source)
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
        is_dir = dest.is_dir() or (dest.suffix == "" and to is not None)
        dst_fmt = to or (None if is_dir else detect_format(dest, must_exist=False))
        if dst_fmt is None:
            raise click.UsageError(f"{dest} is a directory: pass --to FORMAT")
        phase_def, label = _read_phase(phase)
        phase_label = phase_label or label
        src_material = material if src_fmt == "damask" else None
        if dst_fmt == "dataset" and is_dir:
            raise click.UsageError("a VE dataset DEST is a file (.h5), not a directory")
        if dst_fmt != "dataset" and append:
            raise click.UsageError("--append only applies to a VE dataset DEST")
        count, ves = load_ves(source, src_fmt, indices=indices, ve_ids=ve_ids, lattice=lattice, material=src_material)
        vanished: list = []
        if grid is not None:
            ves = _resampled(ves, grid, vanished)
        if dst_fmt == "dataset":
            n = write_ves(
                dest,
                ves,
                append=append,
                overwrite=overwrite,
                progress=progress and count > 1,
                total=count,
                compression=compression,
            )
            click.echo(f"wrote {n} VE(s) to {dest}{_vanished_text(vanished)}")
            return
        if not is_dir and count != 1:
            ves.close()
            raise click.UsageError(
                f"{source} holds {count} VEs: select one with --index/--ve-id, or give a "
                f"directory DEST with --to {dst_fmt}"
            )
        if is_dir:
            dest.mkdir(parents=True, exist_ok=True)
        from tqdm.auto import tqdm

        for k, ve in enumerate(tqdm(ves, total=count, desc="export", unit="VE", disable=not progress or count == 1)):
            t = dest / f"{ve.ve_id or f've{k:06d}'}{_FORMAT_SUFFIX[dst_fmt]}" if is_dir else dest
            where = _write_one(
                ve,
                t,
                dst_fmt,
                phase=phase_def,
                phase_label=phase_label,
                material=None if src_material is not None else material,
                overwrite=overwrite,
            )
            if count <= 20:
                click.echo(f"{ve.ve_id}: {ve.lattice}, grid {ve.grid}, {ve.n_grains} grains -> {where}")
        if count > 20:
            click.echo(f"exported {count} VEs to {dest}")
        if vanished:
            click.echo(_vanished_text(vanished).strip("; "))
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, IndexError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
