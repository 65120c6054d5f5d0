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
