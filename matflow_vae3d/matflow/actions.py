"""The work behind each MatFlow action of the plugin.

Each public function takes the task's inputs as keyword arguments and returns the
outputs dict (``script_data_in/out: direct``). Files are written under
``<workflow>/vae3d_data/<action>/`` and returned as paths relative to the workflow
folder, so that the workflow can be moved. Outside MatFlow (tests, direct calls) the
current directory plays the workflow's role.

:func:`run_action` wraps every call: an exception is recorded in
``vae3d_data/failed_runs/run_<id>.json`` (read by :mod:`.export`) and re-raised, so
the run is marked failed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import traceback
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIRNAME = "vae3d_data"


# ----------------------------------------------------------------------------- paths
def workflow_dir() -> Path:
    """The running workflow's folder (``$MATFLOW_WK_PATH``), else the current directory."""
    return Path(os.environ.get("MATFLOW_WK_PATH") or os.getcwd())


def run_id() -> str:
    """The running MatFlow run id (``$MATFLOW_RUN_ID``), else a process-unique tag."""
    rid = os.environ.get("MATFLOW_RUN_ID")
    return f"run{int(rid):07d}" if rid not in (None, "") else f"pid{os.getpid()}"


def output_path(action: str, stem: str, suffix: str = ".h5") -> tuple[Path, str]:
    """(absolute path, path relative to the workflow folder) of a new output file."""
    rel = Path(DATA_DIRNAME) / action / f"{stem}_{run_id()}{suffix}"
    absolute = workflow_dir() / rel
    absolute.parent.mkdir(parents=True, exist_ok=True)
    return absolute, rel.as_posix()


def resolve_input(path: str | None, what: str) -> Path:
    """Absolute path of a file-valued input; relative paths are looked up in the
    workflow folder, then the current directory. FileNotFoundError names ``what``."""
    if path is None or path == "":
        raise ValueError(f"{what}: no path given")
    p = Path(str(path)).expanduser()
    candidates = [p] if p.is_absolute() else [workflow_dir() / p, Path.cwd() / p]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"{what} not found: {path} (looked at {', '.join(map(str, candidates))})")


def failure_record_path(wk_path: str | Path, run: int | str) -> Path:
    """Where :func:`run_action` records the failure of run ``run``."""
    return Path(wk_path) / DATA_DIRNAME / "failed_runs" / f"run_{int(run)}.json"


def run_action(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Call action ``name`` with ``inputs``; on an exception record it (see module doc)
    and re-raise."""
    threads = os.environ.get("MATFLOW_RUN_NUM_THREADS")
    if threads:  # torch/numpy threads follow the cores the task asked for
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, threads)
    try:
        return globals()[name](**inputs)
    except BaseException as exc:
        rid = os.environ.get("MATFLOW_RUN_ID")
        if rid not in (None, ""):
            rec = failure_record_path(workflow_dir(), rid)
            rec.parent.mkdir(parents=True, exist_ok=True)
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            rec.write_text(json.dumps({"action": name, "error": msg, "traceback": traceback.format_exc()}))
        raise


# ----------------------------------------------------------------------------- helpers
def _checkpoint(path: str | None, lattice: str | None = None) -> Path:
    """A VAE checkpoint path; None/''/'pretrained' = the shipped model of ``lattice``."""
    if path in (None, "", "pretrained"):
        from ..vae import pretrained_path

        p = Path(str(pretrained_path(lattice)))
        if not p.is_file():
            raise FileNotFoundError(f"the shipped pretrained VAE is missing: {p}")
        return p
    return resolve_input(path, "VAE checkpoint")


def _model_and_data(VAE_checkpoint, VE_dataset):
    """(model, meta, dataset path): an explicit checkpoint is resolved first; the
    pretrained one is picked by the dataset's crystal structure."""
    from ..vae import dataset_lattice
    from ..vae.checkpoint import load_model

    pretrained = VAE_checkpoint in (None, "", "pretrained")
    ckpt = None if pretrained else _checkpoint(VAE_checkpoint)
    data = resolve_input(VE_dataset, "VE dataset")
    return (*load_model(ckpt or _checkpoint(VAE_checkpoint, dataset_lattice(data))), data)


def volume_element_id(volume_element: dict) -> str:
    """A content hash id for a MatFlow ``volume_element`` (same VE -> same id, so that
    fingerprints and CP results of MatFlow VEs join)."""
    h = hashlib.sha256()
    for key in ("element_material_idx", "grid_size", "size"):
        if key in volume_element and volume_element[key] is not None:
            h.update(np.ascontiguousarray(np.asarray(volume_element[key])).tobytes())
    ori = volume_element.get("orientations") or {}
    if "quaternions" in ori:
        h.update(np.ascontiguousarray(np.asarray(ori["quaternions"], dtype=np.float64)).tobytes())
    return "mfve-" + h.hexdigest()[:16]


def _from_volume_element(volume_element: dict, lattice: str):
    from ..microstructure.io import from_matflow_volume_element

    ve = from_matflow_volume_element(volume_element, lattice=lattice)
    ve.ve_id = volume_element_id(volume_element)
    return ve


def _progress() -> bool:
    """tqdm bars in actions: on when $VAE3D_PROGRESS=1 (or stderr is a terminal), off
    with $VAE3D_PROGRESS=0; MatFlow runs write them to the run's std stream."""
    flag = os.environ.get("VAE3D_PROGRESS")
    if flag is not None:
        return flag.strip() not in ("", "0", "false", "no")
    import sys

    return sys.stderr.isatty()


def _cp_progress() -> bool | str:
    """CP tasks: as :func:`_progress`, but where no bar is shown ($VAE3D_PROGRESS unset,
    no terminal: a MatFlow run) 'log': a line with the VEs done (in-flight increments
    counted) and an ETA every minute in the run's std stream."""
    return _progress() or ("log" if os.environ.get("VAE3D_PROGRESS") is None else False)


def _device() -> str:
    """'cuda' when a GPU is visible (cluster GPU tasks), else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _write_single_ve_dataset(ve, action: str) -> Path:
    from ..datasets import write_ves

    path, _ = output_path(action, "ve")
    write_ves(path, [ve], overwrite=True, progress=_progress())
    return path


# ----------------------------------------------------------------------------- actions
def generate_VE(
    VEs_per_shard,
    VE_shard=0,
    VE_preset="train",
    VE_overrides=None,
    crystal_structure=None,
    VE_grid=None,
    VE_seed=0,
    VE_id_prefix="ve",
    campaign_plan=None,
):
    """One shard of VEs -> {'VE_dataset': relative path}.

    VE_preset: a generator preset (train, large, small, elongated, brass, copper, cube,
    goss); VE_overrides: VEParams fields replacing the preset's (mean_esd, sigma,
    aspect_ratio, texture, ...); crystal_structure: lattice (default: the generator's);
    VE_grid: voxels per edge (default 64). VE ids ``<prefix>-<shard:05d>-<index:06d>``;
    VE i of shard s is VE s*VEs_per_shard + i of ``vae3d generate --seed VE_seed``
    (same preset, grid, lattice), so shards are independent and reproducible. Uses
    $MATFLOW_RUN_NUM_CORES worker processes. campaign_plan (from check_campaign_scale)
    only orders this task after that check.
    """
    import dataclasses

    from ..datasets import write_ves
    from ..microstructure import VEParams, generate_ves, get_preset, ve_seed

    n = int(VEs_per_shard)
    if n < 1:
        raise ValueError(f"VEs_per_shard must be >= 1, got {VEs_per_shard}")
    shard = int(VE_shard)
    if shard < 0:
        raise ValueError(f"VE_shard must be >= 0, got {VE_shard}")
    kw = {}
    if crystal_structure is not None:
        kw["lattice"] = crystal_structure
    if VE_grid is not None:
        kw["grid"] = VE_grid
    params = get_preset(str(VE_preset), **kw)
    overrides = dict(VE_overrides or {})
    if overrides:
        known = {f.name for f in dataclasses.fields(VEParams)} - {"grid", "lattice"}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"VE_overrides: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        params = dataclasses.replace(params, **overrides)
    # the one seed rule (microstructure.generate.ve_seed): shard s holds the VEs
    # s*n .. s*n+n-1 of `vae3d generate --seed VE_seed`
    seeds = [ve_seed(int(VE_seed), shard * n + i) for i in range(n)]
    workers = max(1, int(os.environ.get("MATFLOW_RUN_NUM_CORES") or 1))

    def renamed():
        for i, ve in enumerate(generate_ves(params, seeds, workers=workers, progress=_progress())):
            ve.ve_id = f"{VE_id_prefix}-{shard:05d}-{i:06d}"
            yield ve

    path, rel = output_path("generate_VE", f"ves_shard{shard:05d}")
    write_ves(path, renamed(), overwrite=True, progress=_progress(), total=n)
    return {"VE_dataset": rel}


def check_campaign_scale(campaign_scale):
    """The campaign's checks before anything runs -> {'campaign_plan': dict}: its
    material (``material``, ``crystal_structure``, ``CP_solver``; cp.materials.
    check_material_for), its load case (``load``: None, a dict or a DAMASK load.yaml
    path; :func:`loadcase_of`) and, when the scale keys are given, its cost (CPU-hours
    per task kind; refuses a large campaign on the direct scheduler unless confirmed,
    matflow.campaign)."""
    from ..cp.materials import check_material_for
    from .campaign import SCALE_KEYS, check_direct_scale

    scale = dict(campaign_scale or {})
    plan: dict[str, Any] = {}
    if "material" in scale:
        name, phase = check_material_for(
            _material_arg(scale["material"]), scale.get("crystal_structure"), str(scale.get("CP_solver", "builtin"))
        )
        plan["material"] = {"name": name, "lattice": phase["lattice"]}
    if "load" in scale:
        plan["load_increments"] = loadcase_of(scale["load"]).n_increments
    if any(k in scale for k in SCALE_KEYS):
        plan.update(check_direct_scale(scale))
    return {"campaign_plan": plan}


def _material_arg(material):
    """A material input: a preset name as it is, a file resolved like every file input."""
    from ..cp.materials import list_presets

    text = str(material)
    if text.lower() in {p.lower() for p in list_presets()}:
        return text
    return str(resolve_input(text, "material file"))


def to_volume_element(VE_dataset, VE_index=0, phase_label=None):
    """One VE of a dataset -> {'volume_element': MatFlow volume_element dict}.

    phase_label : the phase name MatFlow's DAMASK tasks look up in ``damask_phases``
        (None: 'Mg' for hP, 'Cu' for cF, as our material presets)."""
    from ..datasets import VEDataset
    from ..microstructure.io import to_matflow_volume_element

    if phase_label is not None and (not isinstance(phase_label, str) or not phase_label.strip()):
        raise ValueError(f"phase_label must be a non-empty string, got {phase_label!r}")
    with VEDataset(str(resolve_input(VE_dataset, "VE dataset"))) as ds:
        ve = ds[int(VE_index)]
    return {"volume_element": to_matflow_volume_element(ve, phase_label=phase_label)}


def _merge_shards(paths: list[Path], n_val: int, train_out: Path, val_out: Path) -> tuple[int, int]:
    """Stream the VEs of the shard files (in order) into one training file and one
    validation file (the last ``n_val`` VEs). Returns (n_train, n_val)."""
    from itertools import islice

    from ..datasets import VEDataset, write_ves

    total = 0
    for p in paths:
        with VEDataset(str(p)) as ds:
            total += len(ds)
    if not 0 <= n_val < total:
        raise ValueError(f"VAE_val_VEs={n_val} must be >= 0 and below the {total} VEs generated")

    def all_ves():
        for p in paths:
            with VEDataset(str(p)) as ds:
                yield from ds

    it = all_ves()
    write_ves(train_out, islice(it, total - n_val), overwrite=True, progress=_progress(), total=total - n_val)
    if n_val:
        write_ves(val_out, it, overwrite=True, progress=_progress(), total=n_val)
    return total - n_val, n_val


#: VAE_config keys that set model fields (the rest are train_vae arguments).
_VAE_MODEL_KEYS = ("widths", "hidden", "latent", "latent_channels", "representation")
_VAE_OPTIONS = (
    "preset",
    *_VAE_MODEL_KEYS,
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "warmup_steps",
    "alpha",
    "kl_weight",
    "orientation_loss",
    "roll",
    "gradient_clip",
    "seed",
    "accelerator",
    "devices",
    "strategy",
    "precision",
    "num_workers",
    "checkpoint_every_n_steps",
)


def train_VAE(VE_dataset, VAE_val_VEs=0, VAE_config=None):
    """Train the VAE on the (grouped) VE dataset shards -> {'VAE_checkpoint': path}.

    The shards are streamed into one training and one validation file (the last
    VAE_val_VEs VEs), then :func:`matflow_vae3d.vae.train.train_vae` runs with the
    VAE_config options (preset, latent_channels, epochs, batch_size, lr, ...;
    ``latent_dim`` is an alias of latent).
    """
    from ..vae.train import train_vae

    cfg = dict(VAE_config or {})
    if "latent_dim" in cfg:
        cfg["latent"] = cfg.pop("latent_dim")
    unknown = set(cfg) - set(_VAE_OPTIONS)
    if unknown:
        raise ValueError(f"VAE_config: unknown keys {sorted(unknown)} (use {', '.join(_VAE_OPTIONS)})")
    paths = [resolve_input(p, "VE dataset") for p in _as_list(VE_dataset) if p is not None]
    if not paths:
        raise ValueError("train_VAE: no VE dataset shards")
    run_dir, rel_dir = output_path("train_VAE", "vae", "")
    run_dir.mkdir(parents=True, exist_ok=True)
    n_val = int(VAE_val_VEs)
    _merge_shards(paths, n_val, run_dir / "train.h5", run_dir / "val.h5")
    overrides = {k: cfg.pop(k) for k in _VAE_MODEL_KEYS if k in cfg}
    if isinstance(overrides.get("widths"), str):
        overrides["widths"] = tuple(int(v) for v in overrides["widths"].split(","))
    if "devices" in cfg and str(cfg["devices"]).isdigit():
        cfg["devices"] = int(cfg["devices"])
    train_vae(
        run_dir / "train.h5",
        run_dir,
        val=(run_dir / "val.h5") if n_val else None,
        overrides=overrides,
        progress=_progress(),
        resume=True,
        **cfg,
    )
    return {"VAE_checkpoint": f"{rel_dir}/model.pt"}


def evaluate_VAE(VAE_checkpoint, VE_dataset):
    """Reconstruction error and plots -> {'VAE_metrics': dict, 'VAE_plots': [paths]}.
    VE_dataset: any VE file or folder (microstructure.sources.as_ve_dataset)."""
    from ..microstructure.sources import as_ve_dataset
    from ..vae.encode import evaluate_dataset, plot_reconstructions

    if VAE_checkpoint not in (None, "", "pretrained"):
        _checkpoint(VAE_checkpoint)  # an explicit checkpoint is resolved first
    with as_ve_dataset(resolve_input(VE_dataset, "VE dataset")) as (path, label):
        model, meta, data = _model_and_data(VAE_checkpoint, str(path))
        res = evaluate_dataset(model, meta, data, device=_device(), progress=_progress(), label=label)
    png, rel = output_path("evaluate_VAE", "reconstructions", ".png")
    x, recon = res["examples"]
    plot_reconstructions(x, recon, png, representation=meta["representation"], lattice=meta["lattice"])
    metrics = {
        f"{k}_{s}": float(res[f"{k}_{s}"]) for k in ("quat", "deg", "within5", "within15") for s in ("mean", "std")
    }
    metrics["n"] = int(res["n"])
    return {"VAE_metrics": metrics, "VAE_plots": [rel]}


def fingerprint_VE(VE_dataset, VAE_checkpoint="pretrained"):
    """Fingerprints of one VE dataset shard (or any VE file or folder,
    microstructure.sources.as_ve_dataset) -> {'fingerprints': relative path}."""
    from ..microstructure.sources import as_ve_dataset
    from ..vae.encode import fingerprint_dataset

    if VAE_checkpoint not in (None, "", "pretrained"):
        _checkpoint(VAE_checkpoint)  # an explicit checkpoint is resolved first
    src = resolve_input(VE_dataset, "VE dataset")
    with as_ve_dataset(src) as (path, label):
        model, meta, data = _model_and_data(VAE_checkpoint, str(path))
        out, rel = output_path("fingerprint_VE", "fingerprints")
        fingerprint_dataset(
            model, meta, data, out, device=_device(), progress=_progress(), label=label, source=str(src)
        )
    return {"fingerprints": rel}


def fingerprint_volume_element(volume_element, VAE_checkpoint="pretrained", crystal_structure=None):
    """Fingerprint of MatFlow's ``volume_element`` -> {'VE_fingerprint': list of
    floats (mu), 'VE_summary': list of floats (the roll-invariant summary: what similarity
    should use), 'fingerprints': relative path of a one-row fingerprints file}. The crystal
    structure defaults to the VAE's."""
    from ..vae.checkpoint import load_model
    from ..vae.encode import fingerprint_dataset
    from ..vae.fingerprints import read_fingerprints

    model, meta = load_model(_checkpoint(VAE_checkpoint, crystal_structure))
    ve = _from_volume_element(volume_element, crystal_structure or meta["lattice"])
    data = _write_single_ve_dataset(ve, "fingerprint_VE")
    out, rel = output_path("fingerprint_VE", "fingerprints")
    fingerprint_dataset(model, meta, data, out, progress=_progress())
    fp = read_fingerprints(out)
    return {
        "VE_fingerprint": [float(v) for v in fp["mu"][0]],
        "VE_summary": [float(v) for v in fp["summary"][0]],
        "fingerprints": rel,
    }


def loadcase_of(uniaxial_load):
    """A LoadCase from the ``uniaxial_load`` input: None/{} (the paper's tension to 1 %
    strain along x in 20 increments), LoadCase.uniaxial keywords {axis, rate (1/s),
    strain, N}, or a DAMASK load case dict (with 'loadstep')."""
    from ..cp.loadcase import LoadCase

    if isinstance(uniaxial_load, str) and uniaxial_load.strip():
        return LoadCase.from_damask(resolve_input(uniaxial_load, "load case file"))
    spec = dict(uniaxial_load or {})
    if "loadstep" in spec:
        return LoadCase.from_damask(spec)
    unknown = set(spec) - {"axis", "rate", "strain", "N"}
    if unknown:
        raise ValueError(f"uniaxial_load: unknown keys {sorted(unknown)} (use axis, rate, strain, N)")
    return LoadCase.uniaxial(**spec)


def _solver_threads(n: int) -> None:
    """torch threads of an in-process CP solve: the cores the task asked for (default
    one). torch's default (every core) oversubscribes a shared machine: a 4-increment
    16³ path took 115 s instead of 7 s beside two other busy processes."""
    import torch

    torch.set_num_threads(int(n))


def _simulate(data: Path, CP_material, uniaxial_load, CP_solver, CP_options, source=None) -> str:
    from ..cp.simulate import simulate_dataset

    load = loadcase_of(uniaxial_load)
    out, rel = output_path("simulate_uniaxial", "cp_results")
    opts = dict(CP_options or {})
    if "workers" not in opts and str(opts.get("device", "cpu")) == "cpu" and int(opts.get("n_proc", 1)) == 1:
        # one solver process per core the task asked for (num_cores), one thread each
        opts["workers"] = max(1, int(os.environ.get("MATFLOW_RUN_NUM_CORES") or 1))
    if int(opts.get("workers", 1)) == 1:
        _solver_threads(1)  # the solver runs in this process: one thread, like each worker
    simulate_dataset(
        data,
        out,
        material=_material_arg(CP_material),
        solver=CP_solver,
        load=load,
        progress=_cp_progress(),
        source=source,
        **opts,
    )
    return rel


def simulate_uniaxial(VE_dataset, CP_material="Mg", uniaxial_load=None, CP_solver="builtin", CP_options=None):
    """CP uniaxial tension of one VE dataset shard (or any VE file or folder,
    microstructure.sources.as_ve_dataset) -> {'CP_results': relative path}."""
    from ..microstructure.sources import as_ve_dataset

    src = resolve_input(VE_dataset, "VE dataset")
    with as_ve_dataset(src) as (data, _):
        return {"CP_results": _simulate(data, CP_material, uniaxial_load, CP_solver, CP_options, source=str(src))}


def simulate_volume_element(
    volume_element, crystal_structure=None, CP_material="Mg", uniaxial_load=None, CP_solver="builtin", CP_options=None
):
    """CP uniaxial tension of MatFlow's ``volume_element`` -> {'CP_results': path}.
    The crystal structure defaults to the material's."""
    if crystal_structure is None:
        from ..cp.materials import load_phase

        crystal_structure = load_phase(_material_arg(CP_material))[1]["lattice"]
    ve = _from_volume_element(volume_element, crystal_structure)
    data = _write_single_ve_dataset(ve, "simulate_uniaxial")
    return {"CP_results": _simulate(data, CP_material, uniaxial_load, CP_solver, CP_options)}


def load_paths_of(load_paths) -> dict[str, Any]:
    """simulate_paths keywords from the ``load_paths`` input: None/{} (2 random paths per
    VE, seed 0, 10 increments per step, equivalent strain <= 2 %); {random_per_VE,
    path_seed, path_pool (0: none), max_strain, increments} for random paths; {paths: [{id,
    loadstep, ...}, ...]} (a paths file's content) or {file: path of a paths YAML or
    load.yaml} for given paths."""
    from ..cp.loadcase import LoadCase
    from ..cp.loadpaths import read_paths

    spec = dict(load_paths or {})
    if "paths" in spec or "file" in spec:
        if set(spec) not in ({"paths"}, {"file"}):
            raise ValueError(f"load_paths: give 'paths' or 'file' alone, got keys {sorted(spec)}")
        if "file" in spec:
            return {"paths": read_paths(resolve_input(spec["file"], "load paths file"))}
        entries = spec["paths"]
        if not isinstance(entries, list) or not entries:
            raise ValueError("load_paths: 'paths' must be a non-empty list of {id, loadstep, ...}")
        out: dict[str, LoadCase] = {}
        for k, e in enumerate(entries):
            if not isinstance(e, dict) or "id" not in e:
                raise ValueError(f"load_paths: path {k} has no 'id'")
            out[str(e["id"])] = LoadCase.from_damask({key: v for key, v in e.items() if key != "id"})
        return {"paths": out}
    known = {"random_per_VE", "path_seed", "path_pool", "max_strain", "increments"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"load_paths: unknown keys {sorted(unknown)} (use {sorted(known)}, or paths / file)")
    return {
        "random_per_ve": int(spec.get("random_per_VE", 2)),
        "path_seed": int(spec.get("path_seed", 0)),
        "path_pool": int(spec["path_pool"]) if spec.get("path_pool") else None,  # 0/None: no pool
        "random_kw": {"max_strain": float(spec.get("max_strain", 0.02)), "N": int(spec.get("increments", 10))},
    }


def simulate_load_paths(
    VE_dataset, VE_shard=0, CP_material="Mg", load_paths=None, CP_solver="builtin", CP_options=None
):
    """CP along load paths of one VE dataset shard -> {'path_CP_results': relative
    path}. Random paths of shard s start at path index s * n_VEs * random_per_VE (the
    CLI's ``--path-offset``), so shards draw different paths unless a pool is shared."""
    from ..cp.simulate_paths import simulate_paths
    from ..datasets import VEDataset

    data = resolve_input(VE_dataset, "VE dataset")
    kw = load_paths_of(load_paths)
    if "random_per_ve" in kw:
        with VEDataset(data) as ds:
            kw["path_offset"] = int(VE_shard) * len(ds) * kw["random_per_ve"]
    out, rel = output_path("simulate_load_paths", "path_cp_results")
    opts = dict(CP_options or {})
    opts.pop("workers", None)  # one process: pairs sharing a path are batched instead
    _solver_threads(max(1, int(os.environ.get("MATFLOW_RUN_NUM_CORES") or 1)))
    summary = simulate_paths(
        data, out, _material_arg(CP_material), solver=CP_solver, progress=_cp_progress(), **kw, **opts
    )
    print(
        f"{summary['n_converged']} converged, {summary['n_failed']} failed of {summary['n_pairs']} (VE, path) pairs",
        flush=True,
    )
    return {"path_CP_results": rel}


def rotate_path_results(VE_dataset, path_CP_results, CP_rotations="all"):
    """Exact rotated copies of one shard's VEs and path CP rows (cp.rotations; no new
    solve) -> {'VE_dataset', 'path_CP_results'}: new files holding the originals and
    their copies, which the downstream fingerprint and training tasks then take.
    CP_rotations: 'all' (the cube's 24 rotations), 'axes' (3) or indices 0..23; the
    originals (0) are always kept."""
    from ..cp.rotations import write_rotated_dataset
    from ..microstructure.symmetry import parse_rotations

    ves = resolve_input(VE_dataset, "VE dataset")
    cp = resolve_input(path_CP_results, "path CP results")
    ks = sorted({0, *parse_rotations(str(CP_rotations))})
    out_ves, rel_ves = output_path("rotate_path_results", "rotated_ves")
    out_cp, rel_cp = output_path("rotate_path_results", "rotated_path_cp_results")
    c = write_rotated_dataset(ves, [(cp, ks)], out_ves, out_cp)
    print(f"{c['rows']} rows and {c['ves']} VEs ({len(ks)} rotations each)", flush=True)
    return {"VE_dataset": rel_ves, "path_CP_results": rel_cp}


def train_path_surrogate(fingerprints, path_CP_results, path_surrogate_config=None):
    """Train the load-path surrogate on all shards (element group ``campaign``) ->
    {'path_surrogate_checkpoint': path, 'path_surrogate_metrics': held-out MAE (MPa) of
    the model, of the same network without the microstructure, and of zero stress,
    'path_surrogate_plots': [PNG]}. With rotated copies (rotate_path_results) the
    held-out figures are on the original rows.

    path_surrogate_config: PathTrainConfig fields (n_members, hidden, layers, max_epochs,
    patience, lr, seed, ...) plus val_fraction (0.15), test_fraction (0.2), features
    ('fingerprint' or 'none') and baseline (True: also train the no-microstructure
    network for the comparison).
    """
    from ..cp.rotations import base_path_id
    from ..surrogate.path_evaluate import path_metrics, plot_paths, zero_prediction
    from ..surrogate.path_surrogate import PathTrainConfig
    from ..surrogate.path_surrogate import train_path_surrogate as _train
    from ..surrogate.path_table import build_path_table, read_features

    fps = [str(resolve_input(p, "fingerprints")) for p in _as_list(fingerprints) if p is not None]
    cps = [str(resolve_input(p, "path CP results")) for p in _as_list(path_CP_results) if p is not None]
    if not cps:
        raise ValueError("nothing to train on: no path CP results")
    cfg = dict(path_surrogate_config or {})
    val, test = float(cfg.pop("val_fraction", 0.15)), float(cfg.pop("test_fraction", 0.2))
    kind, baseline = str(cfg.pop("features", "fingerprint")), bool(cfg.pop("baseline", True))
    if "threads" not in cfg and os.environ.get("MATFLOW_RUN_NUM_THREADS"):
        cfg["threads"] = int(os.environ["MATFLOW_RUN_NUM_THREADS"])
    config = PathTrainConfig(**cfg)
    if kind == "none":
        fp = None
    else:
        if not fps:
            raise ValueError("no fingerprint files: set path_surrogate_config features: none to train without them")
        fp, kind = read_features(fps)
    table = build_path_table(cps, fp, kind, val, test, config.seed)
    split = {"seed": config.seed, "val_fraction": val, "test_fraction": test}
    _ensure_split(table, split)  # a tiny campaign: the first seed that fills every split
    print(table.summary(), flush=True)
    ckpt, rel = output_path("train_path_surrogate", "path_surrogate", ".pt")
    model = _train(table, config, progress=_progress())
    model.save(ckpt, overwrite=True)
    rows = table.rows("test")
    if len(rows) == 0:
        rows = table.rows("val") if len(table.rows("val")) else table.rows("train")
        print("no held-out test VEs: metrics on the validation (or training) rows", flush=True)
    original = np.array([base_path_id(str(p)) == str(p) for p in table.path_id[rows]], dtype=bool)
    if original.any() and not original.all():  # rotated copies repeat their original: judge on originals
        rows = rows[original]
    mean, std = model.predict_targets(table.X, table.U)
    held = path_metrics(table, mean, rows, std)
    metrics = {"n_rows": int(len(rows)), "mae_mpa": held["mae_mpa"]}
    if "coverage_2sigma" in held:
        metrics["coverage_2sigma"] = float(held["coverage_2sigma"])
    metrics["zero_stress_mae_mpa"] = path_metrics(table, zero_prediction(table), rows)["mae_mpa"]
    if baseline and kind != "none":
        # the same rows without the microstructure (rebuilding from the files would keep
        # rows whose VE has no fingerprint, and the row indices would no longer match)
        bare = dataclasses.replace(table, X=table.X[:, :0], features="none", model_sha256="", inputs="")
        base = _train(bare, config, progress=_progress())
        metrics["no_microstructure_mae_mpa"] = path_metrics(bare, base.predict_targets(None, bare.U)[0], rows)[
            "mae_mpa"
        ]
    png, png_rel = output_path("train_path_surrogate", "paths_heldout", ".png")
    plot_paths(table, mean, rows, png)
    print(json.dumps(metrics), flush=True)
    return {"path_surrogate_checkpoint": rel, "path_surrogate_metrics": metrics, "path_surrogate_plots": [png_rel]}


def _as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, (str, Path)):
        return [v]
    return list(v)


def _surrogate_table(manifest: dict):
    from ..surrogate.table import build_table

    return build_table(
        manifest["fingerprints"],
        manifest["CP_results"],
        component=manifest["component"],
        val_fraction=manifest["val_fraction"],
        test_fraction=manifest["test_fraction"],
        seed=manifest["seed"],
        inputs=manifest.get("inputs", "summary"),
    )


def plot_latent_PCA(fingerprints):
    """PC1/PC2 scatter of all grouped fingerprint shards -> {'latent_plots': [PNG path]}.
    Shards whose run failed (None) are skipped."""
    from ..latent import fit_pca, plot_pca
    from ..vae.fingerprints import read_fingerprints

    # the roll-invariant summaries, as `vae3d latent` uses (for a dense VAE: mu itself)
    mus = [
        read_fingerprints(resolve_input(p, "fingerprints"))["summary"] for p in _as_list(fingerprints) if p is not None
    ]
    if not mus:
        raise ValueError("plot_latent_PCA: no fingerprint files")
    mu = np.concatenate(mus)
    png, rel = output_path("plot_latent_PCA", "latent_pca", ".png")
    plot_pca(fit_pca(mu, 2), mu, {}, png)
    return {"latent_plots": [rel]}


def _ensure_split(table, manifest: dict, tries: int = 1000) -> None:
    """Small campaigns: make the hash split usable. If the train split is empty, or the
    test (val) split is empty although its fraction is > 0, take the first seed after
    manifest['seed'] that fills them (deterministic; the seed used is written back to
    the manifest so that evaluation rebuilds the same split)."""
    from ..surrogate.table import split_by_id

    def ok(split):
        return (
            (split == "train").any()
            and ((split == "test").any() or manifest["test_fraction"] == 0)
            and ((split == "val").any() or manifest["val_fraction"] == 0)
        )

    if ok(table.split):
        return
    for seed in range(manifest["seed"] + 1, manifest["seed"] + tries):
        split = split_by_id(table.ve_id, manifest["val_fraction"], manifest["test_fraction"], seed)
        if ok(split):
            table.split, table.seed, manifest["seed"] = split, seed, seed
            return
    raise ValueError(f"cannot split {len(table.ve_id)} VEs into non-empty train/val/test sets")


def train_surrogate(fingerprints, CP_results, surrogate_config=None, surrogate_test_fraction=0.2):
    """Join the grouped shards by VE id and train the surrogate ->
    {'surrogate_checkpoint': path, 'surrogate_dataset': path of a JSON manifest
    (fingerprint and CP-result files, stress component, split fractions and seed) that
    rebuilds the same table}.

    surrogate_config: TrainConfig fields (n_members, hidden, lr, batch_size,
    max_epochs, patience, seed, ...) plus ``component`` (default 'xx'),
    ``val_fraction`` (default 0.1) and ``inputs`` (default 'auto': the fingerprints'
    decoded statistics where present, see ``vae3d train-surrogate --inputs``). Failed
    CP runs are excluded by the table (and counted); shards whose task run failed
    arrive as None and are skipped here (they appear as failed VEs in ``vae3d matflow
    export``).
    """
    from ..surrogate.lightning import TrainConfig
    from ..surrogate.lightning import train_surrogate as _train

    fps = [str(resolve_input(p, "fingerprints")) for p in _as_list(fingerprints) if p is not None]
    cps = [str(resolve_input(p, "CP results")) for p in _as_list(CP_results) if p is not None]
    if not fps or not cps:
        raise ValueError(f"nothing to train on: {len(fps)} fingerprint and {len(cps)} CP result files")
    cfg = dict(surrogate_config or {})
    manifest = {
        "fingerprints": fps,
        "CP_results": cps,
        "component": str(cfg.pop("component", "xx")),
        "val_fraction": float(cfg.pop("val_fraction", 0.1)),
        "test_fraction": float(surrogate_test_fraction),
        "seed": int(cfg.get("seed", 0)),
        "inputs": str(cfg.pop("inputs", "auto")),
    }
    if "threads" not in cfg and os.environ.get("MATFLOW_RUN_NUM_THREADS"):
        cfg["threads"] = int(os.environ["MATFLOW_RUN_NUM_THREADS"])
    table = _surrogate_table(manifest)
    manifest["inputs"] = table.inputs  # 'auto' resolved: evaluation rebuilds the same table
    _ensure_split(table, manifest)
    print(table.summary(), flush=True)
    ckpt, rel = output_path("train_surrogate", "surrogate", ".pt")
    model = _train(table, TrainConfig(**cfg), log_dir=ckpt.with_suffix(""), progress=_progress())
    model.save(ckpt, overwrite=True)
    man, man_rel = output_path("train_surrogate", "surrogate_dataset", ".json")
    man.write_text(json.dumps(manifest, indent=1))
    return {"surrogate_checkpoint": rel, "surrogate_dataset": man_rel}


def predict_stress(VE_dataset, surrogate_checkpoint="pretrained", prediction_fallback="none"):
    """Predicted curves of one VE shard (any VE file or folder) -> {'predictions':
    relative path of a predictions file (surrogate.ensemble.write_predictions: MPa, the
    out-of-population score and what answered each VE)}. prediction_fallback 'cp'
    answers flagged VEs by CP (surrogate.from_ves.flag_and_fallback)."""
    from ..microstructure.sources import as_ve_dataset
    from ..surrogate.ensemble import Surrogate, write_predictions
    from ..surrogate.from_ves import flag_and_fallback, predict_ves, pretrained_surrogate_path

    if prediction_fallback not in ("none", "cp", None):
        raise ValueError(f"prediction_fallback must be 'none' or 'cp', got {prediction_fallback!r}")
    ckpt = (
        pretrained_surrogate_path()
        if surrogate_checkpoint in (None, "", "pretrained")
        else resolve_input(surrogate_checkpoint, "surrogate checkpoint")
    )
    sur = Surrogate.load(ckpt)
    src = resolve_input(VE_dataset, "VE dataset")
    print(f"surrogate {Path(ckpt).name}: trained for {sur.trained_for_text()}", flush=True)
    with as_ve_dataset(src) as (path, label):
        res = predict_ves(sur, path, device=_device(), label=label)
        answered, notes = flag_and_fallback(sur, res, path, prediction_fallback or "none")
    for line in notes:
        print(line, flush=True)
    out, rel = output_path("predict_stress", "predictions")
    write_predictions(
        out, res["ve_id"], res["mean"], res["std"], res["std_raw"], sur, str(ckpt), ood=res["ood"], answered_by=answered
    )
    return {"predictions": rel}


def evaluate_surrogate(surrogate_checkpoint, surrogate_dataset):
    """Accuracy on the VEs the surrogate neither trained on nor early-stopped on ->
    {'surrogate_metrics': dict of scalars (MPa, %, R^2), 'surrogate_plots': [PNG paths]}."""
    from ..surrogate.ensemble import Surrogate
    from ..surrogate.evaluate import evaluate

    manifest = json.loads(resolve_input(surrogate_dataset, "surrogate dataset manifest").read_text())
    model = Surrogate.load(resolve_input(surrogate_checkpoint, "surrogate checkpoint"))
    table = _surrogate_table(manifest)
    out_dir, rel_dir = output_path("evaluate_surrogate", "evaluation", "")
    res = evaluate(model, table, split="heldout", out_dir=out_dir)
    metrics = {k: float(v) for k, v in res["metrics"].items() if np.isscalar(v)}
    metrics["n_ve"] = int(res["n_ve"])
    (out_dir / "metrics.json").write_text(json.dumps(res, indent=1, default=float))
    plots = sorted(f"{rel_dir}/{p.name}" for p in out_dir.glob("*.png"))
    return {"surrogate_metrics": metrics, "surrogate_plots": plots}
