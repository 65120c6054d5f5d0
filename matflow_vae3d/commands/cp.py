"""``vae3d simulate``: crystal-plasticity uniaxial tension on VEs or on a DAMASK grid job.

Heavy imports (torch, damask) happen inside the command so ``--help`` is fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from matflow_vae3d.commands._options import parse_device


class CoarsenType(click.ParamType):
    """A coarsening factor: a positive integer or 'auto'."""

    name = "K|auto"

    def convert(self, value, param, ctx):
        if str(value).strip().lower() == "auto":
            return "auto"
        try:
            k = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a coarsening factor: give a positive integer or auto", param, ctx)
        if k < 1:
            self.fail(f"the coarsening factor must be >= 1, got {k}", param, ctx)
        return k


_coarsen_options = [
    click.option(
        "--coarsen",
        type=CoarsenType(),
        default="1",
        show_default=True,
        help="Solve every VE on its grid divided by K (coarse CP: 5-30x less CPU; curve error in "
        "docs/cp_solver.md 'Coarse CP'); K must divide every edge. 1 = the VE's own grid; auto = the "
        "largest K the accuracy table supports for the VEs' grid and grain size.",
    ),
    click.option(
        "--coarsen-rule",
        type=click.Choice(["majority", "nearest"]),
        default="majority",
        show_default=True,
        help="How a K^3 block becomes one voxel: the grain holding most of it, or the grain at its centre.",
    ),
]


def _with_coarsen(f):
    for o in reversed(_coarsen_options):
        f = o(f)
    return f


@click.command("simulate")
@click.option(
    "--data",
    "data_path",
    multiple=True,
    type=click.Path(),
    help="VEs: a VE dataset (.h5), a DAMASK .vti, a DREAM.3D file, a MatFlow volume_element, or a folder of "
    "them (repeatable). The material is --material's.",
)
@click.option(
    "--damask-inputs",
    nargs=3,
    type=click.Path(dir_okay=False),
    metavar="GRID.vti MATERIAL.yaml LOAD.yaml",
    help="Run an existing DAMASK grid job (geometry, material, load case) instead of a dataset.",
)
@click.option(
    "--material",
    default="Mg",
    show_default=True,
    help="Material preset (Mg, Cu), a phase YAML file or a material.yaml with one phase "
    "(ignored with --damask-inputs, whose material.yaml is used).",
)
@click.option(
    "--solver",
    type=click.Choice(["builtin", "damask"]),
    default="builtin",
    show_default=True,
    help="builtin: embedded torch spectral solver; damask: DAMASK_grid (PATH or $DAMASK_GRID).",
)
@click.option(
    "--load",
    "load_path",
    type=click.Path(dir_okay=False),
    help="DAMASK load.yaml (default: uniaxial tension along x, F_xx = 1.01 in 20 increments).",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="CP results file (HDF5). An existing one is resumed: VEs already in it are skipped.",
)
@click.option(
    "--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="VEs per builtin-solver batch."
)
@click.option("--device", default="cpu", show_default=True, help="Builtin solver device: cpu, cuda, cuda:N or auto.")
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Builtin solver precision.",
)
@click.option("--limit", type=click.IntRange(min=0), help="Only the first N VEs of the dataset.")
@click.option(
    "--damask-np",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="MPI processes per DAMASK_grid job (mpirun -np N when N > 1).",
)
@click.option(
    "--damask-exe", type=click.Path(dir_okay=False), help="DAMASK_grid executable (default: $DAMASK_GRID or PATH)."
)
@click.option("--mpiexec", default="mpirun", show_default=True, help="MPI launcher for --damask-np > 1.")
@click.option(
    "--keep-jobs",
    type=click.Path(file_okay=False),
    help="Keep every DAMASK job directory under DIR/<ve_id> (with --damask-inputs: DIR is the job "
    "directory). Default: temporary, kept only when a run fails.",
)
@click.option("--timeout", type=float, help="Seconds allowed per DAMASK_grid job.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch CPU threads for the builtin solver (1 is fastest on a busy 2-core machine: "
    "its small batched kernels lose to thread contention).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Solver processes side by side (--data only), each with --threads torch threads "
    "and --batch-size VEs per chunk (DAMASK: one job each). Rows are written in dataset "
    "order whatever the count.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@_with_coarsen
def simulate(
    data_path,
    damask_inputs,
    material,
    solver,
    load_path,
    out_path,
    batch_size,
    device,
    dtype,
    limit,
    damask_np,
    damask_exe,
    mpiexec,
    keep_jobs,
    timeout,
    threads,
    workers,
    no_progress,
    coarsen,
    coarsen_rule,
):
    """Run crystal-plasticity uniaxial tension and store per-increment volume averages.

    \b
    Campaign over a VE dataset (appended as VEs finish; rerun to resume):
      vae3d simulate --data ves.h5 --material Mg --solver builtin --out stress.h5
    The same on 4 cores (4 solver processes of one thread each):
      vae3d simulate --data ves.h5 --material Mg --out stress.h5 --workers 4
    Coarse CP, each 32^3 VE solved on 16^3 (about 6x less CPU):
      vae3d simulate --data ves32.h5 --material Mg --out stress_k2.h5 --coarsen 2
    An existing DAMASK grid job on the embedded solver (no DAMASK needed):
      vae3d simulate --damask-inputs grid.vti material.yaml load.yaml --out result.h5

    Each VE ends 'converged' or 'failed' with a reason; failures do not stop the batch.
    The results file holds sigma, F, P (n, n_inc+1, 3, 3), t (n_inc+1,), status, reason
    (see docs/cp_driver.md).
    """
    import torch

    from matflow_vae3d.cp import simulate as sim

    torch.set_num_threads(threads)
    if bool(data_path) == bool(damask_inputs):
        raise click.UsageError("give exactly one of --data and --damask-inputs")
    dev = str(parse_device(device)) if solver == "builtin" else "cpu"
    try:
        if damask_inputs:
            vti, mat, load = damask_inputs
            if load_path:
                raise click.UsageError("--load cannot be combined with --damask-inputs (its load.yaml is used)")
            if str(coarsen) != "1":
                raise click.UsageError(
                    "--coarsen applies to --data: run --data GRID.vti --material MATERIAL.yaml --load LOAD.yaml "
                    "--coarsen K"
                )
            rec = sim.simulate_damask_inputs(
                vti,
                mat,
                load,
                solver=solver,
                out=out_path,
                device=dev,
                dtype=dtype,
                progress=not no_progress,
                job_dir=keep_jobs,
                damask_executable=damask_exe,
                n_proc=damask_np,
                mpiexec=mpiexec,
                timeout=timeout,
            )
            s = rec.sigma_xx_MPa
            click.echo(
                f"{rec.ve_id}: {rec.status}, {rec.n_converged}/{len(s) - 1} increments, "
                f"sigma_xx at the last converged increment {s[rec.n_converged]:.2f} MPa, "
                f"{rec.wall_s:.1f} s -> {out_path}"
            )
            if not rec.converged:
                raise click.ClickException(f"simulation failed: {rec.reason}")
            return
        from matflow_vae3d.microstructure.sources import as_ve_dataset

        vti_material = material if Path(str(material)).is_file() else None
        with as_ve_dataset(data_path, material=vti_material) as (ves_path, _):
            summary = sim.simulate_dataset(
                ves_path,
                out_path,
                source=";".join(str(Path(p).resolve()) for p in data_path),
                material=material,
                solver=solver,
                load=load_path,
                batch_size=batch_size,
                device=dev,
                limit=limit,
                progress=not no_progress,
                dtype=dtype,
                keep_jobs=keep_jobs,
                damask_executable=damask_exe,
                n_proc=damask_np,
                mpiexec=mpiexec,
                timeout=timeout,
                workers=workers,
                worker_threads=threads,
                coarsen=coarsen,
                coarsen_rule=coarsen_rule,
            )
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    for ve_id, reason in summary["failed"][:10]:
        click.echo(f"failed {ve_id}: {reason}", err=True)
    if len(summary["failed"]) > 10:
        click.echo(f"... and {len(summary['failed']) - 10} more failures (see 'reason' in {out_path})", err=True)
    k = summary.get("coarsen", 1)
    click.echo(
        f"converged {summary['n_converged']}, failed {summary['n_failed']}, "
        f"skipped {summary['n_skipped']} already in {Path(out_path).name} "
        f"({summary['wall_s']:.1f} s{f'; each VE solved on its grid / {k}' if k != 1 else ''})"
    )


@click.command("simulate-paths")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False), help="VE dataset (HDF5).")
@click.option(
    "--paths",
    "paths_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Load paths: a paths YAML (docs/load_paths.md) or one DAMASK load.yaml; every VE runs every path.",
)
@click.option(
    "--random-paths",
    "random_per_ve",
    type=click.IntRange(min=1),
    help="Instead of --paths: this many random paths per VE (uniaxial +-, biaxial, plane strain, shear, "
    "reversal, change of axis; equivalent strain <= --max-strain).",
)
@click.option("--path-seed", type=int, default=0, show_default=True, help="Seed of the random paths.")
@click.option(
    "--path-offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random paths: VE row v takes paths OFFSET + v*K ... (a shard's first VE index x K).",
)
@click.option(
    "--path-pool",
    type=click.IntRange(min=1),
    help="Random paths: draw from a pool of this many paths (indices modulo the pool), so VEs share paths.",
)
@click.option("--max-strain", type=float, default=0.02, show_default=True, help="Random paths: strain budget.")
@click.option(
    "--increments",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Random paths: increments per load step.",
)
@click.option("--material", default="Mg", show_default=True, help="Material preset or phase YAML.")
@click.option("--solver", type=click.Choice(["builtin", "damask"]), default="builtin", show_default=True)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Path results file (HDF5); an existing one is resumed.",
)
@click.option("--limit", type=click.IntRange(min=0), help="Only the first N VEs.")
@click.option(
    "--batch-size",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="VEs per builtin-solver batch (VEs sharing a path).",
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--no-progress", is_flag=True)
@_with_coarsen
def simulate_paths_cmd(
    data_path,
    paths_file,
    random_per_ve,
    path_seed,
    path_offset,
    path_pool,
    max_strain,
    increments,
    material,
    solver,
    out_path,
    limit,
    batch_size,
    device,
    threads,
    no_progress,
    coarsen,
    coarsen_rule,
):
    """Run crystal plasticity along load paths: one row per (VE, path) with F, P and
    sigma at every state (docs/load_paths.md).

    \b
      vae3d simulate-paths --data ves.h5 --paths paths.yaml --out paths_cp.h5
      vae3d simulate-paths --data ves.h5 --random-paths 2 --path-seed 1 --out paths_cp.h5
    """
    import torch

    from matflow_vae3d.cp.loadpaths import read_paths
    from matflow_vae3d.cp.simulate_paths import simulate_paths

    torch.set_num_threads(threads)
    if bool(paths_file) == bool(random_per_ve):
        raise click.UsageError("give exactly one of --paths and --random-paths")
    try:
        s = simulate_paths(
            data_path,
            out_path,
            material,
            paths=read_paths(paths_file) if paths_file else None,
            random_per_ve=random_per_ve,
            path_seed=path_seed,
            random_kw={"max_strain": max_strain, "N": increments},
            path_offset=path_offset,
            path_pool=path_pool,
            solver=solver,
            limit=limit,
            batch_size=batch_size,
            device=str(parse_device(device)),
            progress=not no_progress,
            coarsen=coarsen,
            coarsen_rule=coarsen_rule,
        )
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    for ve_id, pid, reason in s["failed"][:10]:
        click.echo(f"failed {ve_id} / {pid}: {reason}", err=True)
    click.echo(
        f"{s['n_converged']} converged, {s['n_failed']} failed, {s['n_skipped']} of {s['n_pairs']} pairs already "
        f"in {Path(out_path).name} ({s['wall_s']:.1f} s)"
    )


@click.command("rotate-cp")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, exists=True), help="VE dataset.")
@click.option(
    "--cp",
    "cp_specs",
    required=True,
    multiple=True,
    metavar="FILE[:ROTATIONS]",
    help="CP results of those VEs (path results, or uniaxial results) and the rotations to write: "
    "'all' (default, 24), 'axes' (x, y, z: 3) or indices 0..23 (0 = as is); repeat for several files.",
)
@click.option(
    "--uniaxial-path-id",
    default="uniaxial_results",
    show_default=True,
    help="Path id the rows of a uniaxial CP results file get.",
)
@click.option("--out-ves", required=True, type=click.Path(dir_okay=False), help="VE dataset of originals and copies.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Path results file.")
@click.option(
    "--keep-uniaxial",
    is_flag=True,
    help="Write a uniaxial CP results file instead (one --cp, a uniaxial results file; only rotations that "
    "leave its load case unchanged: ROTATIONS 'invariant' takes all of them, 8 for tension along x).",
)
@click.option("--no-progress", is_flag=True)
def rotate_cp(data_path, cp_specs, uniaxial_path_id, out_ves, out_path, keep_uniaxial, no_progress):
    """Rotated copies of CP results, exact without a new solve: each VE turned by the
    cube's 90° rotations, each load path and its stresses turned with it (the CP model
    is frame-indifferent). Training data for a path surrogate; copies keep their
    original's train/val/test split. Resumable.

    \b
      vae3d rotate-cp --data ves.h5 --cp paths_cp.h5 --cp uniaxial_cp.h5:axes --out-ves aug_ves.h5 --out aug_cp.h5
      vae3d rotate-cp --data ves.h5 --cp cp.h5:invariant --keep-uniaxial --out-ves aug_ves.h5 --out aug_cp.h5
    """
    from matflow_vae3d.cp.rotations import write_rotated_dataset, write_rotated_results
    from matflow_vae3d.microstructure.symmetry import parse_rotations

    try:
        plan = []
        for spec in cp_specs:
            path, _, rots = spec.rpartition(":") if ":" in Path(spec).name else (spec, "", "all")
            if not Path(path).is_file():
                raise ValueError(f"--cp {spec}: no such file {path}")
            plan.append((path, rots if keep_uniaxial and rots == "invariant" else parse_rotations(rots)))
        if keep_uniaxial:
            if len(plan) != 1:
                raise ValueError("--keep-uniaxial takes exactly one --cp (a uniaxial CP results file)")
            c = write_rotated_results(data_path, plan[0][0], plan[0][1], out_ves, out_path, progress=not no_progress)
        else:
            c = write_rotated_dataset(
                data_path, plan, out_ves, out_path, uniaxial_path_id=uniaxial_path_id, progress=not no_progress
            )
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"wrote {c['rows']} rows ({c['rows_already_there']} already there) to {out_path} "
        f"and {c['ves']} VEs to {out_ves}"
    )
