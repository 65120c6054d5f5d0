"""MatFlow action `evaluate_VAE` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.evaluate_VAE`)."""


def evaluate_VAE(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("evaluate_VAE", inputs)
