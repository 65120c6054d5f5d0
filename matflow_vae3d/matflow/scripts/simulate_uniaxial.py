"""MatFlow action `simulate_uniaxial` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.simulate_uniaxial`)."""


def simulate_uniaxial(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("simulate_uniaxial", inputs)
