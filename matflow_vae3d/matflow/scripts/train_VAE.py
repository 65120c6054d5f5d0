"""MatFlow action `train_VAE` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.train_VAE`)."""


def train_VAE(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("train_VAE", inputs)
