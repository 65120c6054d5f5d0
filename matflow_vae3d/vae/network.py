"""The 3D ResNet variational autoencoder (White et al., arXiv 2503.17427, §2).

Encoder: a 7³ stride-2 stem, four residual stages (the 2nd–4th open with a stride-2
block), flatten, Linear -> hidden (tanh) -> (mu, log sigma²). Decoder: Linear
latent -> hidden -> width4·f³, then four stride-2 transposed convolutions (each
followed by residual blocks, mirroring the encoder) back to the input channels.
The decoder returns *logits*; the reconstruction is ``sigmoid(logits)``, so the loss
can use BCE-with-logits (numerically safe under bf16 autocast).

Written in the style of torchvision's video ResNets (``torchvision.models.video``):
``BasicBlock`` / ``make_layer``, batch-norm after every convolution, Kaiming init.
Every size is a parameter (:class:`VAEConfig`), so a small preset trains on a CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

#: blocks per stage of the paper's presets.
PRESET_LAYERS = {
    "resnet12": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}

#: initial bias of the log-variance head: sigma ≈ 0.05 at the start, so the decoder
#: sees an informative z from the first step (with sigma ≈ 1 and mu ≈ 0 the noise
#: drowns the code and the decoder learns to ignore z: posterior collapse, observed
#: on the 16³ hP training set, where the model then stalls at the mean image).
LOGVAR_INIT = -6.0

#: total down-sampling factor of the encoder (stem ×2, stages 2–4 ×2 each).
DOWNSAMPLE = 16


@dataclasses.dataclass
class VAEConfig:
    """Geometry of the VAE. Defaults are the paper's ResNet18 (64³ × 3, latent 256).

    Attributes
    ----------
    layers : 4 ints, residual blocks per stage.
    widths : 4 ints, channels per stage.
    grid : int, cells per edge of the (cubic) input; a multiple of 16.
    in_channels : int, 3 for the normalised Euler image.
    hidden : int, width of the tanh hidden layer on both sides of the latent.
    latent : int, fingerprint length.
    stem_kernel : int, kernel of the stride-2 stem convolution (7 in the paper).
    """

    layers: tuple = (2, 2, 2, 2)
    widths: tuple = (64, 128, 256, 512)
    grid: int = 64
    in_channels: int = 3
    hidden: int = 8192
    latent: int = 256
    stem_kernel: int = 7

    def __post_init__(self):
        self.layers = tuple(int(n) for n in self.layers)
        self.widths = tuple(int(n) for n in self.widths)
        if len(self.layers) != 4 or len(self.widths) != 4:
            raise ValueError("layers and widths need 4 entries each (one per stage)")
        if min(self.layers) < 1 or min(self.widths) < 1:
            raise ValueError(f"layers and widths must be positive: {self.layers}, {self.widths}")
        self.grid = int(self.grid)
        if self.grid < DOWNSAMPLE or self.grid % DOWNSAMPLE:
            raise ValueError(f"grid must be a positive multiple of {DOWNSAMPLE}, got {self.grid}")
        for name in ("in_channels", "hidden", "latent", "stem_kernel"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive")
            setattr(self, name, int(getattr(self, name)))
        if self.stem_kernel % 2 == 0:
            raise ValueError("stem_kernel must be odd")

    @property
    def bottleneck(self) -> int:
        """Cells per edge at the bottleneck (grid / 16)."""
        return self.grid // DOWNSAMPLE

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, ints) storable in a ``weights_only`` checkpoint."""
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        return config_from_plain(cls, d, "VAE")


def config_from_plain(cls, d: dict[str, Any], what: str):
    """A config dataclass ``cls`` from a plain dict; unknown keys raise ValueError
    naming ``what`` (the inverse of the configs' ``to_dict``)."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config keys: {sorted(unknown)}")
    return cls(**d)


def preset_config(name: str, **overrides) -> VAEConfig:
    """Config of a named preset.

    'resnet12' / 'resnet18' / 'resnet34': the paper's geometry (64³, widths
    64/128/256/512, hidden 8192, latent 256). 'small': ResNet12 on 16³ with widths
    16/32/64/128, hidden 256, latent 32 (trains on a CPU). ``overrides`` replace
    any field (grid, widths, hidden, latent, ...).
    """
    key = name.lower()
    base: dict[str, Any]
    if key == "small":
        base = dict(layers=(1, 1, 1, 1), widths=(16, 32, 64, 128), grid=16, hidden=256, latent=32)
    elif key in PRESET_LAYERS:
        base = dict(layers=PRESET_LAYERS[key])
    else:
        raise ValueError(f"unknown VAE preset {name!r}: use one of {', '.join([*PRESET_LAYERS, 'small'])}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return VAEConfig(**base)


class VAEBase(nn.Module):
    """What both VAEs share: per-sample reparameterisation, decoding and ``forward``.
    A subclass sets ``encoder`` (x -> mu, logvar) and ``decoder`` (z -> raw output)
    and defines ``encode`` (checks x, then calls the encoder) and ``output`` (raw ->
    reconstruction)."""

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - overridden
        raise NotImplementedError

    def output(self, raw: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def reparameterise(self, mu, logvar, generator: torch.Generator | None = None):
        """mu + exp(logvar/2)·eps, eps ~ N(0, 1) independently per sample and
        element while training (optionally drawn from ``generator``); mu itself in
        eval mode."""
        if not self.training:
            return mu
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> raw decoder output (logits or unnormalised quaternions)."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> reconstruction in the model's representation (``output``)."""
        return self.output(self.decode_raw(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """(raw decoder output, mu, logvar) of x; z = mu in eval mode."""
        mu, logvar = self.encode(x)
        return self.decoder(self.reparameterise(mu, logvar, generator)), mu, logvar


def init_weights(model: nn.Module) -> None:
    """torchvision's ResNet init: Kaiming-normal (fan_out, ReLU) convolutions, BN
    weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv3x3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv3d:
    """3³ convolution, padding 1, no bias (a batch norm follows)."""
    return nn.Conv3d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3³–BN–ReLU–conv3³–BN, plus the (projected) input, ReLU.

    With ``stride=2`` the first convolution halves the grid and a 1³ stride-2
    convolution + BN projects the shortcut (torchvision's ``downsample``).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(cout, cout)
        self.bn2 = nn.BatchNorm3d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(cout),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def make_layer(cin: int, cout: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """A stage: ``blocks`` BasicBlocks, the first with ``stride``."""
    mods = [BasicBlock(cin, cout, stride)]
    mods += [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*mods)


class UpStage(nn.Module):
    """Stride-2 transposed convolution (k 4, doubles the grid)–BN–ReLU, then
    ``blocks`` residual blocks at ``cout`` channels."""

    def __init__(self, cin: int, cout: int, blocks: int):
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(*[BasicBlock(cout, cout) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.relu(self.bn(self.up(x))))


class Encoder(nn.Module):
    """(B, C, n, n, n) -> (mu, logvar), each (B, latent)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths
        k = cfg.stem_kernel
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_channels, w[0], kernel_size=k, stride=2, padding=k // 2, bias=False),
            nn.BatchNorm3d(w[0]),
            nn.ReLU(inplace=True),
        )
        self.layer1 = make_layer(w[0], w[0], cfg.layers[0])
        self.layer2 = make_layer(w[0], w[1], cfg.layers[1], stride=2)
        self.layer3 = make_layer(w[1], w[2], cfg.layers[2], stride=2)
        self.layer4 = make_layer(w[2], w[3], cfg.layers[3], stride=2)
        self.fc = nn.Linear(w[3] * cfg.bottleneck**3, cfg.hidden)
        self.act = nn.Tanh()
        self.fc_mu = nn.Linear(cfg.hidden, cfg.latent)
        self.fc_logvar = nn.Linear(cfg.hidden, cfg.latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        h = self.act(self.fc(torch.flatten(x, 1)))
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    """(B, latent) -> logits (B, C, n, n, n)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w = cfg.widths
        self.shape = (w[3], cfg.bottleneck, cfg.bottleneck, cfg.bottleneck)
        self.fc = nn.Sequential(
            nn.Linear(cfg.latent, cfg.hidden),
            nn.Tanh(),
            nn.Linear(cfg.hidden, w[3] * cfg.bottleneck**3),
            nn.ReLU(inplace=True),
        )
        self.up1 = UpStage(w[3], w[2], cfg.layers[2])
        self.up2 = UpStage(w[2], w[1], cfg.layers[1])
        self.up3 = UpStage(w[1], w[0], cfg.layers[0])
        self.head = nn.ConvTranspose3d(w[0], cfg.in_channels, kernel_size=4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, *self.shape)
        x = self.up3(self.up2(self.up1(x)))
        return self.head(x)


class ResNetVAE3d(VAEBase):
    """The VAE. ``forward(x)`` -> (logits, mu, logvar).

    x : (B, C, n, n, n) float in [0, 1] (normalised Euler angles).
    In training mode z = mu + sigma·eps with eps drawn **per sample** (optionally
    from ``generator``); in eval mode z = mu (no noise).
    """

    architecture = "dense"
    representation = "euler"

    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__()
        self.config = cfg or VAEConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        init_weights(self)
        nn.init.constant_(self.encoder.fc_logvar.bias, LOGVAR_INIT)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, grid, grid, grid)."""
        c, n = self.config.in_channels, self.config.grid
        if x.ndim != 5 or tuple(x.shape[1:]) != (c, n, n, n):
            raise ValueError(f"the VAE expects input of shape (B, {c}, {n}, {n}, {n}), got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, n, n, n) -> (mu, logvar), (B, latent) each."""
        self.check_input(x)
        return self.encoder(x)

    def fingerprint(self, x: torch.Tensor) -> torch.Tensor:
        """mu (B, latent) of images x (B, C, n, n, n)."""
        return self.encode(x)[0]

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        """Logits -> normalised Euler angles in [0, 1]."""
        return torch.sigmoid(raw.float())
