"""MatFlow action `rotate_path_results` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.rotate_path_results`)."""


def rotate_path_results(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("rotate_path_results", inputs)
