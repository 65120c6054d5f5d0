"""Grain sizes: DREAM.3D-style log-normal equivalent-sphere-diameter (ESD) distribution.

ln(ESD) ~ Normal(mu, sigma), truncated to [mu - min_cutoff*sigma, mu + max_cutoff*sigma]
(DREAM.3D's "min/max cut-off" in sigmas). The user gives the *mean* ESD (in voxels);
mu follows from the mean of a log-normal, mean = exp(mu + sigma^2/2), so
mu = ln(mean_esd) - sigma^2/2 (the cut-offs, 5 sigmas in the presets, change the
mean by far less than 0.1 %). The number of grains is not a parameter: sizes are drawn
until their volumes fill the VE.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lognormal_mu", "esd_bounds", "sample_esd", "sample_grain_sizes", "esd_from_volumes"]


def lognormal_mu(mean_esd: float, sigma: float) -> float:
    """mu of ln(ESD) for a log-normal ESD distribution with mean ``mean_esd`` (voxels)."""
    if not mean_esd > 0:
        raise ValueError(f"mean_esd must be > 0 voxels, got {mean_esd}")
    return float(np.log(mean_esd) - 0.5 * sigma**2)


def esd_bounds(mean_esd: float, sigma: float, min_cutoff: float, max_cutoff: float) -> tuple[float, float]:
    """Smallest and largest ESD (voxels) allowed by the cut-offs."""
    mu = lognormal_mu(mean_esd, sigma)
    return float(np.exp(mu - min_cutoff * sigma)), float(np.exp(mu + max_cutoff * sigma))


def sample_esd(
    n: int, mean_esd: float, sigma: float, min_cutoff: float, max_cutoff: float, rng: np.random.Generator
) -> np.ndarray:
    """n ESDs (voxels) from the truncated log-normal (exact truncation by inverse CDF)."""
    from scipy.special import ndtr, ndtri

    mu = lognormal_mu(mean_esd, sigma)
    if sigma == 0:
        return np.full(n, np.exp(mu))
    lo, hi = ndtr(-float(min_cutoff)), ndtr(float(max_cutoff))
    z = ndtri(lo + (hi - lo) * rng.random(n))
    return np.exp(mu + sigma * z)


def sample_grain_sizes(
    volume: float, mean_esd: float, sigma: float, min_cutoff: float, max_cutoff: float, rng: np.random.Generator
) -> np.ndarray:
    """ESDs (voxels) of grains whose sphere volumes fill ``volume`` (voxels).

    Sizes are drawn in batches until the cumulative volume pi/6 ESD^3 reaches
    ``volume``; the last grain is kept if that brings the total closer to ``volume``.
    At least one grain is returned. Returns (G,) float64, in drawing order.
    """
    mu = lognormal_mu(mean_esd, sigma)
    mean_vol = np.pi / 6.0 * np.exp(3 * mu + 4.5 * sigma**2)
    out, total = [], 0.0
    while total < volume:
        n = int(max(16, 1.1 * (volume - total) / mean_vol + 16))
        d = sample_esd(n, mean_esd, sigma, min_cutoff, max_cutoff, rng)
        out.append(d)
        total += float(np.sum(np.pi / 6.0 * d**3))
    d = np.concatenate(out)
    cum = np.cumsum(np.pi / 6.0 * d**3)
    k = int(np.searchsorted(cum, volume))  # first index with cum >= volume
    if k > 0 and abs(cum[k - 1] - volume) < abs(cum[k] - volume):
        k -= 1
    return d[: k + 1]


def esd_from_volumes(volumes) -> np.ndarray:
    """Equivalent sphere diameters of grain volumes (same unit^3 -> unit)."""
    return np.cbrt(6.0 / np.pi * np.asarray(volumes, dtype=np.float64))
