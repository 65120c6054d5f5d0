"""Operations on existing MatFlow workflows: add a fingerprint task and run only it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _has_output(wk, param: str) -> bool:
    for task in wk.tasks:
        if any(o.typ == param for o in task.template.schema.outputs):
            return True
    return False


def add_fingerprint(workflow, model: str = "pretrained", wait: bool = True) -> dict[str, Any]:
    """Add a ``fingerprint_VE`` task to an existing workflow and submit only it.

    workflow : path of a MatFlow workflow (or a loaded ``Workflow``) with a task that
        outputs ``VE_dataset`` (ours) or ``volume_element`` (MatFlow's own schemas);
        ``VE_dataset`` wins when both exist.
    model : VAE checkpoint path, or 'pretrained'.
    wait : block until the new task's runs finish.

    The plugin must be registered in the loaded MatFlow config (``vae3d matflow
    install``). Returns {'task': unique name, 'task_index', 'elements', 'statuses'}.
    Raises ValueError if the workflow has no VEs, FileNotFoundError for a missing
    workflow or checkpoint.
    """
    import matflow as mf

    if isinstance(workflow, (str, Path)):
        if not Path(workflow).exists():
            raise FileNotFoundError(f"workflow not found: {workflow}")
        if not mf.is_config_loaded:
            mf.load_config(warn=False)
        wk = mf.Workflow(str(workflow))
    else:
        wk = workflow
    if model not in (None, "", "pretrained"):
        model = str(Path(model).expanduser().resolve())
        if not Path(model).is_file():
            raise FileNotFoundError(f"VAE checkpoint not found: {model}")
    try:
        if _has_output(wk, "VE_dataset"):
            schema = mf.task_schemas.fingerprint_VE
        elif _has_output(wk, "volume_element"):
            schema = mf.task_schemas.fingerprint_VE_from_volume_element
        else:
            raise ValueError(
                f"workflow {wk.path} has no task producing VE_dataset or volume_element"
            )
    except AttributeError as exc:
        raise ValueError(
            "the fingerprint_VE schemas are not registered in this MatFlow config: run "
            "`vae3d matflow install` first"
        ) from exc
    task = mf.Task(schema=schema, inputs={"VAE_checkpoint": model or "pretrained"})
    wk.add_task(task)
    new = wk.tasks[-1]
    wk.submit(tasks=[new.index], wait=wait, add_to_known=False, status=False, quiet=True)
    statuses = [el.action_runs[-1].status.name if el.action_runs else "pending" for el in new.elements] if wait else []
    return {"task": new.unique_name, "task_index": new.index, "elements": len(new.elements),
            "statuses": statuses}


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
        out.append({
            "index": js.index, "tasks": tasks, "is_array": bool(js.is_array),
            "num_elements": int(js.blocks[0].num_elements), "num_cores": js.resources.num_cores,
            "directives": directives, "submit_command": [str(c) for c in cmd], "text": text,
        })
    return out
