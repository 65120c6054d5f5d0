"""The ``vae3d`` command line.

Sub-commands live in :mod:`matflow_vae3d.commands` (one module per area) and are
imported only when invoked, so that ``vae3d --help`` stays fast (torch is not
imported to print help).
"""

from __future__ import annotations

import importlib

import click

#: command name -> "module:attribute"; the module is imported on first use.
COMMANDS = {
    # volume elements
    "generate": "matflow_vae3d.commands.ve:generate",
    "show": "matflow_vae3d.commands.ve:show",
    "convert": "matflow_vae3d.commands.ve:convert",
    # crystal plasticity
    "simulate": "matflow_vae3d.commands.cp:simulate",
    "simulate-paths": "matflow_vae3d.commands.cp:simulate_paths_cmd",
    "rotate-cp": "matflow_vae3d.commands.cp:rotate_cp",
    # VAE
    "train-vae": "matflow_vae3d.commands.vae:train_vae",
    "fingerprint": "matflow_vae3d.commands.vae:fingerprint",
    "reconstruct": "matflow_vae3d.commands.vae:reconstruct",
    "evaluate": "matflow_vae3d.commands.vae:evaluate",
    "latent": "matflow_vae3d.commands.vae:latent",
    # surrogate
    "train-surrogate": "matflow_vae3d.commands.surrogate:train_surrogate",
    "predict": "matflow_vae3d.commands.surrogate:predict",
    "evaluate-surrogate": "matflow_vae3d.commands.surrogate:evaluate_surrogate",
    "acquire": "matflow_vae3d.commands.surrogate:acquire",
    # load-path surrogate
    "train-path-surrogate": "matflow_vae3d.commands.paths:train_path_surrogate",
    "predict-path": "matflow_vae3d.commands.paths:predict_path",
    # MatFlow plugin
    "matflow": "matflow_vae3d.commands.matflow:matflow_group",
}

#: one-line help shown by ``vae3d --help`` without importing the command modules.
SHORT_HELP = {
    "generate": "Generate synthetic polycrystal VEs into an HDF5 dataset.",
    "show": "Draw mid-slices of a VE coloured by normalised Euler angles.",
    "convert": "Import/export VEs: DAMASK .vti, DREAM.3D, MatFlow volume_element.",
    "simulate": "Run crystal-plasticity uniaxial tension on VEs (builtin or DAMASK).",
    "simulate-paths": "Run crystal plasticity along load paths (VE x path pairs, full tensors).",
    "rotate-cp": "Rotated copies of VEs and their CP results (exact, no new solve).",
    "train-vae": "Train a VAE on VE datasets (the periodic spatial VAE; --preset resnet18 = the paper's).",
    "fingerprint": "Encode VEs to fingerprints (the VAE's latent mean mu).",
    "reconstruct": "Decode VEs and draw input vs reconstruction mid-slices.",
    "evaluate": "Reconstruction error (misorientation) of a VAE on a VE dataset.",
    "latent": "Latent-space paths, PCA scatter and spectral clustering.",
    "train-surrogate": "Train the fingerprint -> stress-strain surrogate.",
    "predict": "Predict stress-strain curves from fingerprints or VEs.",
    "evaluate-surrogate": "Accuracy of a surrogate on held-out VEs, with plots.",
    "acquire": "Rank unsimulated VEs by predicted uncertainty (active learning).",
    "train-path-surrogate": "Train the load-path surrogate (GRU from the fingerprint).",
    "predict-path": "Predict stress along load paths from fingerprints, without CP.",
    "matflow": "Register the plugin with MatFlow; add tasks to or export workflows.",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attr)
        except (ImportError, AttributeError) as exc:  # not built yet / broken install
            raise click.ClickException(f"command {name!r} is unavailable: {exc}") from exc

    def format_commands(self, ctx, formatter):
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="matflow-vae3d")
def cli():
    """matflow-vae3d: VAE fingerprints of polycrystal volume elements (VEs),
    crystal-plasticity uniaxial tension, and fingerprint-to-stress surrogates.

    \b
    Typical pipeline (VEs: a VE dataset, .vti, DREAM.3D, MatFlow volume_element, or a folder):
      vae3d generate --preset train --count 1000 --grid 32 --lattice hP --out ves.h5
      vae3d fingerprint --model pretrained --data ves.h5 --out fp.h5
      vae3d simulate --data ves.h5 --material Mg --out stress.h5 --coarsen auto
      vae3d train-surrogate --fingerprints fp.h5 --stresses stress.h5 --out s.ckpt
      vae3d predict --model s.ckpt --data new_ves/ --out pred.h5
    Your own VAE: vae3d train-vae --train train.h5 --val val.h5 --out runs/vae
      (then --model runs/vae/model.pt; --preset resnet18 = the paper's dense ResNet)

    Run `vae3d COMMAND --help` for each command's options.
    """


if __name__ == "__main__":  # pragma: no cover
    cli()
