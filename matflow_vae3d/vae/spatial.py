"""The periodic, fully convolutional VAE with a spatial latent (the project's default).

A VE is periodic and holds tens of grains per 16³ (thousands per 64³); a single dense
vector behind a 1³ bottleneck cannot place them (docs/vae.md). This network keeps the
layout: the latent is ``latent_channels`` numbers on each cell of a coarse grid
(grid / 4 per edge: 4³ for 16³ VEs), so the fingerprint of a 16³ VE with 16 latent
channels (preset ``periodic``) is 16 × 4³ = 1,024 numbers.

* Every 3³ convolution pads **circularly** (``padding_mode='circular'``): the VE's
  opposite faces are neighbours, as in the CP solver, and the code is equivariant to
  periodic rolls of the input by multiples of the total stride (4 voxels).
* Encoder: stem conv at full resolution, then per stage ``layers[i]`` residual blocks
  (conv3³–BN–ReLU–conv3³–BN, add, ReLU); a stride-2 conv between stages; a 1³ conv to
  (μ, log σ²), each (B, latent_channels, g, g, g) with g = grid / 4.
* Decoder: 1³ conv from the latent, the mirrored stages with kernel-2 stride-2
  transposed convolutions between them (these need no padding and stay periodic), a
  ``head_layers``-deep conv stack at full resolution and a 1³ conv to the output
  channels.
* Output: for the ``quaternion`` representation 4 channels normalised to unit
  quaternions (any sign and any symmetric equivalent is fine: the loss and metric are
  symmetry-aware); for ``euler`` the 3 normalised Euler channels as logits.

Written in the style of torchvision's video ResNets (blocks, stem, stages; no I/O).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .network import LOGVAR_INIT, VAEBase, config_from_plain, init_weights

#: per-voxel input channels of each representation.
REPRESENTATION_CHANNELS = {"quaternion": 4, "euler": 3}

#: down-sampling factor of the encoder (two stride-2 convolutions): every edge of an
#: input grid must be a multiple of it.
SPATIAL_DOWNSAMPLE = 4


def as_grid(grid) -> tuple[int, int, int]:
    """An int n or 3 ints -> (nx, ny, nz)."""
    g = tuple(int(n) for n in (grid if hasattr(grid, "__len__") else (grid,) * 3))
    if len(g) != 3:
        raise ValueError(f"a grid has 3 edges, got {grid!r}")
    return g


def nearest_grid(grid) -> tuple[int, int, int]:
    """The grid of edges that are multiples of :data:`SPATIAL_DOWNSAMPLE` nearest to
    ``grid`` (each edge rounded to the nearest multiple, at least one)."""
    m = SPATIAL_DOWNSAMPLE
    return tuple(max(m, m * int(round(n / m))) for n in as_grid(grid))  # type: ignore[return-value]


def grid_text(grid) -> str:
    """'32x32x32'."""
    return "x".join(str(n) for n in as_grid(grid))


def check_grid(grid, what: str = "the input") -> tuple[int, int, int]:
    """The one rule for the spatial VAE's inputs: every edge a positive multiple of
    :data:`SPATIAL_DOWNSAMPLE`, cubic or not. Returns the grid; ValueError naming the
    nearest valid grid and how to get there otherwise."""
    g = as_grid(grid)
    if min(g) < SPATIAL_DOWNSAMPLE or any(n % SPATIAL_DOWNSAMPLE for n in g):
        near = grid_text(nearest_grid(g))
        raise ValueError(
            f"{what} {'have' if what.startswith('the VEs') else 'has'} grid {grid_text(g)}, but the periodic "
            f"VAE needs every edge a multiple of "
            f"{SPATIAL_DOWNSAMPLE}: resample it to the nearest valid grid {near} "
            f"(vae3d convert VES OUT.h5 --grid {near})"
        )
    return g


@dataclasses.dataclass
class SpatialVAEConfig:
    """Geometry of :class:`SpatialVAE3d`.

    Attributes
    ----------
    grid : int, cells per edge of the (cubic, periodic) input; a multiple of 4.
    widths : 3 ints, channels at full, 1/2 and 1/4 resolution.
    layers : 3 ints, residual blocks per stage (encoder and decoder alike).
    latent_channels : int, latent numbers per coarse cell (fingerprint length =
        latent_channels · (grid / 4)³).
    head_layers : int, 3³ conv layers at full resolution before the output conv.
    representation : 'quaternion' (4 channels in, unit quaternions out) or 'euler'
        (3 normalised Euler channels, logits out).
    """

    grid: int = 16
    widths: tuple = (16, 32, 64)
    layers: tuple = (1, 1, 1)
    latent_channels: int = 16
    head_layers: int = 2
    representation: str = "quaternion"

    def __post_init__(self):
        self.widths = tuple(int(n) for n in self.widths)
        self.layers = tuple(int(n) for n in self.layers)
        if len(self.widths) != 3 or len(self.layers) != 3:
            raise ValueError("widths and layers need 3 entries each (full, 1/2, 1/4 resolution)")
        if min(self.widths) < 1 or min(self.layers) < 0:
            raise ValueError(f"widths must be positive and layers >= 0: {self.widths}, {self.layers}")
        self.grid = int(self.grid)
        if self.grid < SPATIAL_DOWNSAMPLE or self.grid % SPATIAL_DOWNSAMPLE:
            raise ValueError(f"grid must be a positive multiple of {SPATIAL_DOWNSAMPLE}, got {self.grid}")
        self.latent_channels = int(self.latent_channels)
        self.head_layers = int(self.head_layers)
        if self.latent_channels < 1 or self.head_layers < 0:
            raise ValueError("latent_channels must be >= 1 and head_layers >= 0")
        if self.representation not in REPRESENTATION_CHANNELS:
            raise ValueError(
                f"unknown representation {self.representation!r}: use {' or '.join(REPRESENTATION_CHANNELS)}"
            )

    @property
    def in_channels(self) -> int:
        return REPRESENTATION_CHANNELS[self.representation]

    @property
    def latent_grid(self) -> int:
        """Coarse cells per edge of the latent (grid / 4)."""
        return self.grid // SPATIAL_DOWNSAMPLE

    @property
    def latent(self) -> int:
        """Fingerprint length: latent_channels · latent_grid³."""
        return self.latent_channels * self.latent_grid**3

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"], d["layers"] = list(self.widths), list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpatialVAEConfig:
        return config_from_plain(cls, d, "spatial VAE")


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv3d:
    """Periodic 3³ convolution (circular padding 1), no bias (BN follows)."""
    return nn.Conv3d(cin, cout, 3, stride=stride, padding=1, padding_mode="circular", bias=False)


class PeriodicBlock(nn.Module):
    """Residual block with circular padding: conv3³–BN–ReLU–conv3³–BN, + x, ReLU."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1, self.bn1 = conv3(ch, ch), nn.BatchNorm3d(ch)
        self.conv2, self.bn2 = conv3(ch, ch), nn.BatchNorm3d(ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


def conv_bn_relu(conv: nn.Module, ch: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm3d(ch), nn.ReLU(inplace=True))


def stage(ch: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*[PeriodicBlock(ch) for _ in range(blocks)])


class SpatialEncoder(nn.Module):
    """(B, C_in, n, n, n) -> (mu, logvar), each (B, latent_channels, n/4, n/4, n/4)."""

    def __init__(self, cfg: SpatialVAEConfig):
        super().__init__()
        w, L = cfg.widths, cfg.layers
        self.stem = conv_bn_relu(conv3(cfg.in_channels, w[0]), w[0])
        self.stage1 = stage(w[0], L[0])
        self.down1 = conv_bn_relu(conv3(w[0], w[1], stride=2), w[1])
        self.stage2 = stage(w[1], L[1])
        self.down2 = conv_bn_relu(conv3(w[1], w[2], stride=2), w[2])
        self.stage3 = stage(w[2], L[2])
        self.to_latent = nn.Conv3d(w[2], 2 * cfg.latent_channels, 1)

    def forward(self, x):
        return self.from_half(self.to_half(x))

    def to_half(self, x):
        """The full-resolution part: (B, C_in, n, n, n) -> (B, widths[1], n/2, n/2, n/2).
        Equivariant to periodic rolls: x rolled by 2 voxels gives this rolled by 1."""
        return self.down1(self.stage1(self.stem(x)))

    def from_half(self, h):
        """The rest: half-resolution features -> (mu, logvar)."""
        h = self.stage3(self.down2(self.stage2(h)))
        mu, logvar = self.to_latent(h).chunk(2, dim=1)
        return mu, logvar


class SpatialDecoder(nn.Module):
    """(B, latent_channels, g, g, g) -> (B, C_out, 4g, 4g, 4g) raw output."""

    def __init__(self, cfg: SpatialVAEConfig):
        super().__init__()
        w, L = cfg.widths, cfg.layers
        self.from_latent = conv_bn_relu(nn.Conv3d(cfg.latent_channels, w[2], 1, bias=False), w[2])
        self.stage3 = stage(w[2], L[2])
        self.up2 = conv_bn_relu(nn.ConvTranspose3d(w[2], w[1], 2, stride=2, bias=False), w[1])
        self.stage2 = stage(w[1], L[1])
        self.up1 = conv_bn_relu(nn.ConvTranspose3d(w[1], w[0], 2, stride=2, bias=False), w[0])
        self.stage1 = stage(w[0], L[0])
        self.head = nn.Sequential(*[conv_bn_relu(conv3(w[0], w[0]), w[0]) for _ in range(cfg.head_layers)])
        self.out = nn.Conv3d(w[0], cfg.in_channels, 1)

    def forward(self, z):
        h = self.stage3(self.from_latent(z))
        h = self.stage2(self.up2(h))
        h = self.stage1(self.up1(h))
        return self.out(self.head(h))


class SpatialVAE3d(VAEBase):
    """The periodic spatial-latent VAE. ``forward(x)`` -> (raw output, mu, logvar).

    x : (B, C, n, n, n), per-voxel FZ quaternions (w, x, y, z) or normalised Euler
    angles. mu, logvar : (B, latent_channels, n/4, n/4, n/4). In training mode
    z = mu + sigma·eps (eps per sample and element); in eval mode z = mu. The
    fingerprint is mu flattened to (B, latent) (:meth:`fingerprint`).
    """

    architecture = "spatial"

    def __init__(self, cfg: SpatialVAEConfig | None = None):
        super().__init__()
        self.config = cfg or SpatialVAEConfig()
        self.encoder: SpatialEncoder = SpatialEncoder(self.config)
        self.decoder = SpatialDecoder(self.config)
        init_weights(self)
        lc = self.config.latent_channels
        nn.init.normal_(self.encoder.to_latent.weight, std=0.02)
        bias = self.encoder.to_latent.bias
        assert bias is not None  # the latent projection is built with a bias
        nn.init.zeros_(bias)
        with torch.no_grad():
            bias[lc:] = LOGVAR_INIT
        nn.init.normal_(self.decoder.out.weight, std=0.02)

    @property
    def representation(self) -> str:
        return self.config.representation

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is (B, in_channels, nx, ny, nz) with every edge a
        positive multiple of 4 (the network is fully convolutional and periodic: any
        such grid, cubic or not, whatever the training grid)."""
        c = self.config.in_channels
        if x.ndim != 5 or x.shape[1] != c:
            raise ValueError(f"the VAE expects input of shape (B, {c}, nx, ny, nz), got {tuple(x.shape)}")
        check_grid(tuple(x.shape[2:]))

    def encode(self, x: torch.Tensor):
        """(B, C, nx, ny, nz) -> (mu, logvar), each (B, latent_channels, nx/4, ny/4, nz/4)."""
        self.check_input(x)
        return self.encoder(x)

    def encode_rolled(self, x: torch.Tensor, shifts) -> list[torch.Tensor]:
        """mu of x rolled by each shift (3 even ints, voxels) of ``shifts``, computing the
        full-resolution stages once: a roll by 2s voxels is a roll by s of their output
        (exact, stride 2), so only the half- and quarter-resolution stages run per shift
        (about 2x less work for the 8 shifts {0,2}³)."""
        self.check_input(x)
        if any(int(v) % 2 for sh in shifts for v in sh):
            raise ValueError(f"encode_rolled takes rolls by even numbers of voxels, got {list(shifts)}")
        h = self.encoder.to_half(x)
        out = []
        for sh in shifts:
            half = tuple(int(v) // 2 for v in sh)
            out.append(self.encoder.from_half(h if half == (0, 0, 0) else torch.roll(h, half, dims=(2, 3, 4)))[0])
        return out

    def fingerprint(self, x: torch.Tensor) -> torch.Tensor:
        """mu flattened: (B, latent) = (B, latent_channels · gx·gy·gz), channel-major."""
        return self.encode(x)[0].flatten(1)

    def unflatten(self, z: torch.Tensor, latent_grid=None) -> torch.Tensor:
        """(B, latent) fingerprint -> (B, latent_channels, gx, gy, gz); ``latent_grid``
        (3 ints) defaults to the training grid's (g, g, g)."""
        g = tuple(latent_grid) if latent_grid is not None else (self.config.latent_grid,) * 3
        return z.reshape((z.shape[0], self.config.latent_channels) + tuple(int(n) for n in g))

    def decode_raw(self, z: torch.Tensor, latent_grid=None) -> torch.Tensor:
        """Latent (B, latent_channels, gx, gy, gz), or flat (B, latent) of the latent
        grid ``latent_grid`` (default the training grid's), -> raw output (B, C, 4gx, 4gy, 4gz)."""
        return self.decoder(self.unflatten(z, latent_grid) if z.ndim == 2 else z)

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw decoder output -> reconstruction in the input representation: unit
        quaternions (B, 4, n, n, n), or normalised Euler angles in [0, 1]."""
        if self.config.representation == "quaternion":
            raw = raw.float()
            return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return torch.sigmoid(raw.float())
