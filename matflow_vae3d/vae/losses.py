"""Loss of the VAE: BCE reconstruction + α-weighted spectral term + optional KL.

    loss = α·BCE(x̂, x) + (1 − α)·S(x̂, x) + β·KL(q(z|x) ‖ N(0, 1))

* **BCE** with the arguments in the right order: the decoder's *logits* are the
  prediction and the normalised Euler image ``x`` ∈ [0, 1] is the target
  (``binary_cross_entropy_with_logits(logits, x)``; the sigmoid is folded in, which
  is exact and safe under bf16 autocast). The paper's code passed the target as the
  logits. Because x is not binary, BCE's minimum is the entropy of x, not 0; the
  logged ``bce`` therefore never reaches 0.
* **Spectral term S**: mean squared difference of the *magnitudes* of the 3D FFTs
  (per channel, orthonormal ``rfftn``). The paper's term compared the complex FFTs,
  which by Parseval's theorem is exactly the voxel MSE times a constant, so it added
  nothing a pixel loss does not. The magnitude spectrum is the Fourier transform of
  the image's periodic autocorrelation: it is invariant to translations of the
  periodic VE and measures how the Euler field is distributed over length scales
  (grain size, shape and elongation), i.e. the morphology statistics, independently
  of where the grains sit. The DC term (channel mean) is kept.
* **KL**: −½ Σ (1 + log σ² − μ² − σ²) summed over latent dimensions, averaged over
  the batch. Optional (β = 0 switches it off).

All terms are computed in float32 (the FFT and the reductions), whatever the
autocast dtype, and are returned separately for logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: the paper's weight on BCE; the spectral term gets 1 − ALPHA.
ALPHA = 0.999


def bce_term(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE per voxel and channel. logits, target: (B, C, n, n, n); target in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def spectral_term(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of |rfftn| (orthonormal, over the 3 spatial axes).

    recon, target: (B, C, n, n, n) in [0, 1]. Translation invariant, not a scaled MSE.
    """
    fr = torch.fft.rfftn(recon.float(), dim=(-3, -2, -1), norm="ortho").abs()
    ft = torch.fft.rfftn(target.float(), dim=(-3, -2, -1), norm="ortho").abs()
    return torch.mean((fr - ft) ** 2)


def kl_term(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)) summed over latent dims, mean over batch. mu, logvar: (B, L)."""
    mu, logvar = mu.float(), logvar.float()
    return torch.mean(-0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=1))


def vae_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    alpha: float = ALPHA,
    kl_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """All loss terms. Returns a dict with 'loss' (the weighted total, to minimise),
    'bce', 'spectral', 'kl' (unweighted, for logging).

    logits: (B, C, n, n, n) decoder output; target: same shape, in [0, 1];
    mu, logvar: (B, latent). alpha ∈ [0, 1] weights BCE, 1 − alpha the spectral term.
    """
    if logits.shape != target.shape:
        raise ValueError(f"reconstruction shape {tuple(logits.shape)} != input shape {tuple(target.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    bce = bce_term(logits, target)
    spec = spectral_term(torch.sigmoid(logits.float()), target)
    kl = kl_term(mu, logvar)
    loss = alpha * bce + (1.0 - alpha) * spec
    if kl_weight:
        loss = loss + kl_weight * kl
    return {"loss": loss, "bce": bce.detach(), "spectral": spec.detach(), "kl": kl.detach()}


# ----------------------------------------------------------------------------- orientations
#: per-voxel orientation losses: 'angle' = sin(θ/2) (θ the disorientation angle),
#: 'squared' = sin²(θ/2) = 1 − ⟨q̂, s∘q⟩²; both minimised over the symmetry operators s.
#: 'angle+fz' = sin(θ/2) + (1 − |FZ(q̂)·FZ(q)|): the paper's metric added, which also asks
#: that q̂'s fundamental-zone representative be q's (the paper's Euler-angle network
#: learns that representative; the symmetry-aware terms alone are indifferent to it).
ORIENTATION_LOSSES = ("angle", "squared", "angle+fz")

_EPS_ANGLE = 1e-6


def _symmetry_maps(lattice: str, like: torch.Tensor) -> torch.Tensor:
    """(n_ops·4, 4) stacked left-multiplication matrices: rows 4s..4s+3 map q to s∘q."""
    from .. import crystal

    M = crystal.symmetry_matrices(lattice)
    return torch.as_tensor(M.reshape(-1, 4), dtype=like.dtype, device=like.device)


def symmetric_cos_half(q_hat: torch.Tensor, q: torch.Tensor, lattice: str) -> torch.Tensor:
    """max over the crystal's proper symmetry operators s of |⟨q̂, s∘q⟩| = cos(θ/2).

    q_hat, q: (B, 4, ...) unit quaternions (channel axis 1; q̂ any sign, any
    equivalent). Returns (B, ...) in [0, 1]; θ is the disorientation angle.
    """
    q_hat, q = q_hat.float(), q.float()
    M = _symmetry_maps(lattice, q)  # (4n, 4)
    eq = torch.einsum("kj,bj...->bk...", M, q)  # (B, 4n, ...)
    eq = eq.unflatten(1, (-1, 4))  # (B, n, 4, ...)
    dots = (eq * q_hat.unsqueeze(1)).sum(2).abs()  # (B, n, ...)
    return dots.amax(1).clamp(max=1.0)


def orientation_term(q_hat: torch.Tensor, q: torch.Tensor, lattice: str, kind: str = "angle") -> torch.Tensor:
    """Mean per-voxel symmetry-aware orientation loss (see :data:`ORIENTATION_LOSSES`).

    q_hat, q: (B, 4, n, n, n). 'angle': sin(θ/2) — its gradient does not vanish near
    a perfect match, so it keeps sharpening grain interiors; 'squared': sin²(θ/2);
    'angle+fz': 'angle' + the paper's 1 − |FZ(q̂)·FZ(q)| (q need not be FZ-reduced).
    """
    if kind not in ORIENTATION_LOSSES:
        raise ValueError(f"unknown orientation loss {kind!r}: use {' or '.join(ORIENTATION_LOSSES)}")
    s2 = (1.0 - symmetric_cos_half(q_hat, q, lattice) ** 2).clamp_min(0.0)
    if kind == "squared":
        return s2.mean()
    angle = torch.sqrt(s2 + _EPS_ANGLE).mean()
    if kind == "angle":
        return angle
    return angle + fz_term(q_hat, q, lattice)


def fz_term(q_hat: torch.Tensor, q: torch.Tensor, lattice: str) -> torch.Tensor:
    """The paper's metric, mean over voxels of 1 − |FZ(q̂)·FZ(q)| (both reduced to the
    fundamental zone; differentiable in q̂ almost everywhere). q_hat, q: (B, 4, ...)."""
    from .. import crystal

    a = crystal.torch_reduce_to_fz(q_hat.float().movedim(1, -1), lattice)
    b = crystal.torch_reduce_to_fz(q.float().movedim(1, -1), lattice)
    return crystal.torch_quaternion_misorientation(a, b).mean()


def kl_per_element(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)) averaged over latent elements and batch (any shape)."""
    mu, logvar = mu.float(), logvar.float()
    return torch.mean(-0.5 * (1 + logvar - mu**2 - logvar.exp()))


def quaternion_vae_loss(
    q_hat: torch.Tensor,
    q: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    lattice: str,
    kind: str = "angle",
    kl_weight: float = 1e-3,
) -> dict[str, torch.Tensor]:
    """Loss of the quaternion representation: orientation term + kl_weight · KL per
    latent element. Returns {'loss', 'orientation', 'kl'} (the last two detached).

    q_hat: (B, 4, n, n, n) unit quaternions (the decoder's output); q: the input.
    """
    if q_hat.shape != q.shape:
        raise ValueError(f"reconstruction shape {tuple(q_hat.shape)} != input shape {tuple(q.shape)}")
    rec = orientation_term(q_hat, q, lattice, kind)
    kl = kl_per_element(mu, logvar)
    loss = rec + kl_weight * kl if kl_weight else rec
    return {"loss": loss, "orientation": rec.detach(), "kl": kl.detach()}
