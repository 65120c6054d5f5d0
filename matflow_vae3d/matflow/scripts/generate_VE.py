"""MatFlow action `generate_VE` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.generate_VE`)."""


def generate_VE(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("generate_VE", inputs)
