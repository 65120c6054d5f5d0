"""MatFlow action `plot_latent_PCA` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.plot_latent_PCA`)."""


def plot_latent_PCA(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("plot_latent_PCA", inputs)
