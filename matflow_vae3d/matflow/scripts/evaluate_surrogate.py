"""MatFlow action `evaluate_surrogate` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.evaluate_surrogate`)."""


def evaluate_surrogate(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("evaluate_surrogate", inputs)
