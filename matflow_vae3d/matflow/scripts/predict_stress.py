"""MatFlow action `predict_stress` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.predict_stress`)."""


def predict_stress(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("predict_stress", inputs)
