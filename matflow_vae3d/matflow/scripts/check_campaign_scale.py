"""MatFlow action `check_campaign_scale` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.check_campaign_scale`)."""


def check_campaign_scale(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("check_campaign_scale", inputs)
