"""MatFlow action `simulate_load_paths` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.simulate_load_paths`)."""


def simulate_load_paths(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("simulate_load_paths", inputs)
