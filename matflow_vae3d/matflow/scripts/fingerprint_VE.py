"""MatFlow action `fingerprint_VE` of matflow-vae3d (thin: the work is done by
:func:`matflow_vae3d.matflow.actions.fingerprint_VE`)."""


def fingerprint_VE(**inputs):
    from matflow_vae3d.matflow.actions import run_action

    return run_action("fingerprint_VE", inputs)
