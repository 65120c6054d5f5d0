"""MatFlow action `to_volume_element` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.to_volume_element`)."""


def to_volume_element(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("to_volume_element", inputs)
