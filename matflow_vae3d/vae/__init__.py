"""The 3D ResNet VAE (``fingerprint_VE``): network, loss, Lightning training,
checkpoints, fingerprints, reconstruction error.

Heavy submodules (Lightning) are imported on use; the names below are cheap.
"""

from .checkpoint import check_compatible, load_model, save_model
from .losses import ALPHA, vae_loss
from .network import PRESET_LAYERS, ResNetVAE3d, VAEConfig, preset_config

__all__ = [
    "ALPHA",
    "PRESET_LAYERS",
    "ResNetVAE3d",
    "VAEConfig",
    "check_compatible",
    "load_model",
    "pretrained_path",
    "PRETRAINED_LATTICES",
    "dataset_lattice",
    "preset_config",
    "save_model",
    "vae_loss",
]


#: crystal structures with a shipped pretrained model (16³ grid, docs/vae.md).
PRETRAINED_LATTICES = ("hP", "cF")


def pretrained_path(lattice: str | None = None):
    """Path of the shipped model for ``lattice`` ('hP' Mg-like hexagonal, the default,
    or 'cF' fcc), grid 16, CPU-trained (docs/vae.md). ValueError for other lattices."""
    from importlib.resources import files

    from ..crystal import canonical_lattice

    lat = canonical_lattice(lattice or "hP")
    if lat not in PRETRAINED_LATTICES:
        raise ValueError(
            f"no pretrained VAE is shipped for crystal structure {lat!r} "
            f"(only {', '.join(PRETRAINED_LATTICES)}): train one with `vae3d train-vae`"
        )
    return files("matflow_vae3d") / "data" / "pretrained" / f"vae_{lat}_grid16.pt"


def dataset_lattice(path) -> str | None:
    """Crystal structure of a VE dataset file, or None if it cannot be read (the
    caller's own checks then name the problem)."""
    try:
        from ..datasets import VEDataset

        with VEDataset(str(path)) as ds:
            return ds.lattice
    except Exception:  # noqa: BLE001 - only a hint for picking the pretrained model
        return None
