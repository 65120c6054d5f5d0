"""MatFlow action `train_path_surrogate` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.train_path_surrogate`)."""


def train_path_surrogate(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("train_path_surrogate", inputs)
