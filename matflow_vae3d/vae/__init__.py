"""The 3D ResNet VAE (``fingerprint_VE``): network, loss, Lightning training,
checkpoints, fingerprints, reconstruction error.

Heavy submodules (Lightning) are imported on use; the names below are cheap.
"""

from .checkpoint import check_compatible, load_model, save_model
from .losses import ALPHA, vae_loss
from .network import PRESET_LAYERS, ResNetVAE3d, VAEConfig, preset_config

__all__ = [
    "ALPHA", "PRESET_LAYERS", "ResNetVAE3d", "VAEConfig", "check_compatible",
    "load_model", "pretrained_path", "preset_config", "save_model", "vae_loss",
]


def pretrained_path():
    """Path of the small shipped model (hP, grid 16, CPU-trained; see docs/vae.md)."""
    from importlib.resources import files

    return files("matflow_vae3d").joinpath("data", "pretrained", "vae_hP_grid16.pt")
