"""The MatFlow plugin: task schemas, parameters and the ``vae3d_env`` environment
(:mod:`.install`: ``install()``, ``uninstall()``), the actions behind the schemas
(:mod:`.actions`), operations on existing workflows (:mod:`.workflows`:
``add_fingerprint()``, ``preview_jobscripts()``) and exporting a workflow's results
(:mod:`.export`: ``export_workflow()``, ``write_export()``, ``read_export()``).

Nothing here imports MatFlow or torch at import time.
"""
