"""The MatFlow plugin: task schemas, parameters and the ``vae3d_env`` environment
(:mod:`.install`), the actions behind the schemas (:mod:`.actions`), adding a
fingerprint task to an existing workflow (:mod:`.workflows`) and exporting a
workflow's results (:mod:`.export`).

Nothing here imports MatFlow or torch at import time.
"""

from .install import PLUGIN_DIR, SCHEMAS_DIR, SCRIPTS_DIR, TEMPLATES_DIR, install, uninstall

__all__ = ["PLUGIN_DIR", "SCHEMAS_DIR", "SCRIPTS_DIR", "TEMPLATES_DIR", "install", "uninstall",
           "export_workflow", "write_export", "read_export", "add_fingerprint"]


def __getattr__(name):
    if name in ("export_workflow", "write_export", "read_export"):
        from . import export

        return getattr(export, name)
    if name == "add_fingerprint":
        from .workflows import add_fingerprint

        return add_fingerprint
    raise AttributeError(name)
