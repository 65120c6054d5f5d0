"""Operations on existing MatFlow workflows: add a fingerprint task and run only it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _has_param(wk, param: str) -> bool:
    """True if a task of ``wk`` has ``param`` as an output or an input (MatFlow
    sources a new task's input from either)."""
    for task in wk.tasks:
        schema = task.template.schema
        if any(o.typ == param for o in schema.outputs) or any(i.typ == param for i in schema.inputs):
            return True
    return False


def workflow_crystal_structures(wk, max_elements: int = 8) -> set[str]:
    """Crystal structures a workflow states for its VEs: our ``crystal_structure``
    inputs and the ``lattice`` of each phase in MatFlow's ``damask_phases`` /
    ``phases`` inputs (the first ``max_elements`` elements of each task)."""
    from ..crystal import canonical_lattice

    found: set[str] = set()
    for task in wk.tasks:
        names = {i.typ for i in task.template.schema.inputs}
        wanted = [n for n in ("crystal_structure", "damask_phases", "phases") if n in names]
        for el in list(task.elements)[:max_elements] if wanted else []:
            for name in wanted:
                try:
                    val = el.get(f"inputs.{name}")
                except Exception:  # an input not set on this element  # noqa: BLE001
                    continue
                if name == "crystal_structure":
                    vals = [val]
                else:
                    vals = [ph.get("lattice") for ph in (val or {}).values() if isinstance(ph, dict)]
                for v in vals:
                    if v:
                        try:
                            found.add(canonical_lattice(str(v)))
                        except ValueError:
                            found.add(str(v))  # an unknown one is still a mismatch to report
    return found


def _try_open(path: Path):
    import matflow as mf

    try:
        return mf.Workflow(str(path)), None
    except Exception as exc:  # hpcflow's WorkflowNotFoundError and kin  # noqa: BLE001
        return None, exc


#: temporary folders of unzipped workflows, removed when the process ends
_UNZIPPED: list = []


def _unzipped(path: Path) -> Path:
    """A zipped workflow (``Workflow.zip``) extracted to a temporary folder, so that its
    file outputs (relative paths into the workflow folder) can be read."""
    import tempfile
    import zipfile

    tmp = tempfile.TemporaryDirectory(prefix="vae3d-wk-")
    _UNZIPPED.append(tmp)
    try:
        with zipfile.ZipFile(path) as z:
            z.extractall(tmp.name)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path} is not a zip file ({exc})") from None
    return Path(tmp.name) / path.stem if (Path(tmp.name) / path.stem / ".zattrs").exists() else Path(tmp.name)


def _check_existing_ves(wk, model, lattice) -> None:
    """Before a fingerprint task is added: the VE datasets the workflow has already made
    must fit the VAE (crystal structure, and a grid it takes); ValueError naming the
    first that does not."""
    from ..datasets import VEDataset
    from ..vae import pretrained_path
    from ..vae.checkpoint import check_compatible, load_model
    from .export import resolve_path

    metas: dict[str, dict] = {}  # one load per checkpoint, not per element
    for task in wk.tasks:
        if not any(o.typ == "VE_dataset" for o in task.template.schema.outputs):
            continue
        for el in task.elements:
            try:
                p = resolve_path(wk.path, el.get("outputs.VE_dataset"))
            except Exception:  # not produced (yet)  # noqa: BLE001
                continue
            if p is None or not Path(p).is_file():
                continue
            with VEDataset(str(p)) as ds:
                lat, grid = ds.lattice, ds.grid
            ckpt = str(pretrained_path(lattice or lat) if model in (None, "", "pretrained") else model)
            if ckpt not in metas:
                metas[ckpt] = load_model(ckpt)[1]
            check_compatible(metas[ckpt], lat, grid, what=f"VEs of {task.unique_name} element {el.index}")


def open_workflow(workflow, writable: bool = False):
    """A MatFlow ``Workflow`` from a path (or a loaded one, returned as it is), the one
    way every `vae3d matflow` command opens workflows: the workflow folder itself, its
    zip (``Workflow.zip``; read-only: extracted to a temporary folder, refused with
    ``writable``), or a folder holding workflows (the ``--path`` of ``matflow go``,
    which puts each run in ``<name>_<timestamp>/``): its only workflow is opened,
    several are listed in the error. FileNotFoundError / ValueError, one line each."""
    import matflow as mf

    if not isinstance(workflow, (str, Path)):
        return workflow
    path = Path(workflow)
    if not path.exists():
        raise FileNotFoundError(f"workflow not found: {path}")
    if not mf.is_config_loaded:
        mf.load_config(warn=False)
    if path.is_file() and path.suffix.lower() == ".zip":
        if writable:
            raise ValueError(f"{path} is a zipped workflow, which is read-only: unzip it to add a task")
        path = _unzipped(path)
    wk, exc = _try_open(path)
    if wk is not None:
        return wk
    if path.is_dir():
        found = [p for p in sorted(path.iterdir()) if p.is_dir() and _try_open(p)[0] is not None]
        if len(found) == 1:
            return mf.Workflow(str(found[0]))
        if found:
            raise ValueError(
                f"{path} holds {len(found)} workflows ({', '.join(p.name for p in found)}): give one of them"
            )
    first = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else type(exc).__name__
    raise ValueError(f"{path} is not a MatFlow workflow, nor a folder holding one ({first})")


def add_fingerprint(
    workflow,
    model: str = "pretrained",
    wait: bool = True,
    source: str = "auto",
    submit: bool = True,
    crystal_structure: str | None = None,
) -> dict[str, Any]:
    """Add a fingerprint task to an existing workflow and submit only it.

    workflow : path of a MatFlow workflow (or a loaded ``Workflow``) with VEs: a task
        with ``VE_dataset`` (ours) or MatFlow's ``volume_element`` (as output or input).
    model : VAE checkpoint path, or 'pretrained'.
    source : 'auto' (``VE_dataset`` if present, else ``volume_element``),
        'VE_dataset' or 'volume_element'; picks ``fingerprint_VE`` or
        ``fingerprint_VE_from_volume_element``.
    wait : block until the new task's runs finish. submit : False only adds the task.
    crystal_structure : of the VEs ('hP', 'cF', ...); by default read from the
        workflow (:func:`workflow_crystal_structures`; a VE dataset records its
        own). MatFlow's ``volume_element`` carries none: without one stated here or
        in the workflow the call is refused rather than assuming the VAE's. A VAE of
        another structure is refused by name.

    The plugin must be registered in the loaded MatFlow config (``vae3d matflow
    install``). Returns {'task': unique name, 'task_index', 'schema', 'elements',
    'statuses'}. ValueError if the workflow has no VEs of that kind,
    FileNotFoundError for a missing workflow or checkpoint.
    """
    import matflow as mf

    wk = open_workflow(workflow, writable=True)
    if model not in (None, "", "pretrained"):
        model = str(Path(model).expanduser().resolve())
        if not Path(model).is_file():
            raise FileNotFoundError(f"VAE checkpoint not found: {model}")
    if source not in ("auto", "VE_dataset", "volume_element"):
        raise ValueError(f"source must be 'auto', 'VE_dataset' or 'volume_element', got {source!r}")
    if source == "auto":
        source = "VE_dataset" if _has_param(wk, "VE_dataset") else "volume_element"
    if not _has_param(wk, source):
        raise ValueError(f"workflow {wk.path} has no task with {source}")
    from ..crystal import canonical_lattice

    stated = workflow_crystal_structures(wk)
    if crystal_structure is not None:
        lattice = canonical_lattice(crystal_structure)
        if stated and stated != {lattice}:
            raise ValueError(
                f"crystal structure {lattice!r} given, but workflow {wk.path} states {', '.join(sorted(stated))}"
            )
    elif len(stated) > 1:
        raise ValueError(f"workflow {wk.path} has VEs of several crystal structures: {', '.join(sorted(stated))}")
    elif stated:
        lattice = next(iter(stated))
    elif source == "volume_element":
        raise ValueError(
            f"workflow {wk.path} does not state the crystal structure of its volume_element "
            "(no crystal_structure or damask_phases input): pass crystal_structure (--crystal-structure hP|cF)"
        )
    else:
        lattice = None  # the VE dataset records its own; the task checks it against the VAE
    if lattice is not None:
        from ..vae import pretrained_path
        from ..vae.checkpoint import load_model

        ckpt = pretrained_path(lattice) if model in (None, "", "pretrained") else model
        vae_lattice = load_model(ckpt)[1]["lattice"]
        if vae_lattice != lattice:
            raise ValueError(
                f"the VAE {ckpt} was trained on crystal structure {vae_lattice!r}, the VEs are {lattice!r}"
            )
    if source == "VE_dataset":
        _check_existing_ves(wk, model, lattice)
    name = "fingerprint_VE" if source == "VE_dataset" else "fingerprint_VE_from_volume_element"
    try:
        schema = getattr(mf.task_schemas, name)
    except AttributeError as exc:
        raise ValueError(
            f"task schema {name} is not registered in this MatFlow config: run `vae3d matflow install` first"
        ) from exc
    inputs: dict[str, Any] = {"VAE_checkpoint": model or "pretrained"}
    if name == "fingerprint_VE_from_volume_element":
        inputs["crystal_structure"] = lattice
    task = mf.Task(schema=schema, inputs=inputs)
    wk.add_task(task)
    new = wk.tasks[-1]
    statuses: list[str] = []
    if submit:
        wk.submit(tasks=[new.index], wait=wait, add_to_known=False, status=False, quiet=True)
        if wait:
            statuses = [el.action_runs[-1].status.name if el.action_runs else "pending" for el in new.elements]
    return {
        "workflow": str(wk.path),
        "task": new.unique_name,
        "task_index": new.index,
        "schema": name,
        "elements": len(new.elements),
        "statuses": statuses,
        "crystal_structure": lattice,
    }


def preview_jobscripts(workflow) -> list[dict[str, Any]]:
    """Resolve the jobscripts of a (not yet submitted) workflow and compose them without
    submitting anything, as ``Submission.submit`` would for its scheduler (no
    scheduler needs to be installed).

    Adds a submission to the workflow (use a throw-away copy). Returns one dict per
    jobscript: ``index``, ``tasks`` (unique task names), ``is_array``,
    ``num_elements``, ``num_cores``, ``directives`` (the scheduler directive lines),
    ``submit_command`` (argument list, with dependency job ids faked as ``JOB<i>``),
    ``text`` (the whole jobscript).
    """
    import matflow as mf

    wk = mf.Workflow(str(workflow)) if isinstance(workflow, (str, Path)) else workflow
    sub = wk.add_submission(status=False)
    if sub is None:
        raise ValueError(f"workflow {wk.path} has no pending runs")
    for shell_idx, (js_indices, _shell) in enumerate(sub.get_unique_shells()):
        for j in js_indices:
            sub.jobscripts[j]._set_shell_idx(shell_idx)
    task_names = {t.insert_ID: t.unique_name for t in wk.tasks}
    out = []
    for js in sub.jobscripts:
        deps = {}
        for (dep_idx, _), info in js.dependencies.items():
            dep = sub.jobscripts[dep_idx]
            deps[dep_idx] = (f"JOB{dep_idx}", bool(info["is_array"] and js.is_array and dep.is_array))
        text = js.compose_jobscript(shell=js.shell, deps=deps, os_name=js.os_name)
        prefix = getattr(js.scheduler, "js_cmd", None)
        directives = [l for l in text.splitlines() if prefix and l.startswith(prefix)]
        try:
            cmd = js.scheduler.get_submit_command(js.shell, str(js.jobscript_path), deps)
        except Exception:  # direct scheduler: no submit command of its own
            cmd = []
        tasks = [task_names.get(i, "?") for b in js.blocks for i in b.task_insert_IDs]
        out.append(
            {
                "index": js.index,
                "tasks": tasks,
                "is_array": bool(js.is_array),
                "num_elements": int(js.blocks[0].num_elements),
                "num_cores": js.resources.num_cores,
                "directives": directives,
                "submit_command": [str(c) for c in cmd],
                "text": text,
            }
        )
    return out
