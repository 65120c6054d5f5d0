"""The paper's fingerprint -> stress MLP, and a deep ensemble of it evaluated as one
batched network.

Paper (White et al., 2025): fingerprint (256) -> Linear 512 -> LeakyReLU -> Linear
n_out -> sigmoid, outputs are min-max scaled stresses. :class:`EnsembleMLP` holds M
independent copies of exactly that network with stacked weights, so M members train
and predict in one batched matrix product (M = 1 is the paper's model).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PaperMLP(nn.Sequential):
    """Linear(latent_dim, hidden) - LeakyReLU - Linear(hidden, n_out) - Sigmoid.

    x : (B, latent_dim) -> (B, n_out) in (0, 1).
    """

    def __init__(self, latent_dim: int = 256, hidden: int = 512, n_out: int = 21, negative_slope: float = 0.01):
        super().__init__(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(negative_slope),
            nn.Linear(hidden, n_out),
            nn.Sigmoid(),
        )


class EnsembleMLP(nn.Module):
    """M independent :class:`PaperMLP` members with stacked weights.

    Parameters: W1 (M, latent_dim, hidden), b1 (M, 1, hidden), W2 (M, hidden, n_out),
    b2 (M, 1, n_out). Each member is initialised like ``nn.Linear`` (uniform,
    bound 1/sqrt(fan_in)) from its own draw of the global torch generator.

    forward: x (B, latent_dim) -> (M, B, n_out), the same inputs for every member, or
    x (M, B, latent_dim) -> (M, B, n_out), one batch per member.
    """

    def __init__(
        self,
        latent_dim: int = 256,
        hidden: int = 512,
        n_out: int = 21,
        n_members: int = 1,
        negative_slope: float = 0.01,
    ):
        super().__init__()
        if n_members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {n_members}")
        self.latent_dim, self.hidden, self.n_out = int(latent_dim), int(hidden), int(n_out)
        self.n_members = int(n_members)
        self.negative_slope = float(negative_slope)
        M = self.n_members
        self.W1 = nn.Parameter(torch.empty(M, latent_dim, hidden))
        self.b1 = nn.Parameter(torch.empty(M, 1, hidden))
        self.W2 = nn.Parameter(torch.empty(M, hidden, n_out))
        self.b2 = nn.Parameter(torch.empty(M, 1, n_out))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        for W, b in ((self.W1, self.b1), (self.W2, self.b2)):
            bound = 1.0 / math.sqrt(W.shape[1])
            W.uniform_(-bound, bound)
            b.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            if x.shape[1] != self.latent_dim:
                raise ValueError(f"expected inputs (B, {self.latent_dim}), got {tuple(x.shape)}")
            h = torch.matmul(x, self.W1)  # (B, D) @ (M, D, H) -> (M, B, H)
        elif x.ndim == 3 and x.shape[0] == self.n_members:
            h = torch.bmm(x, self.W1)
        else:
            raise ValueError(
                f"expected inputs (B, {self.latent_dim}) or ({self.n_members}, B, "
                f"{self.latent_dim}), got {tuple(x.shape)}"
            )
        h = nn.functional.leaky_relu(h + self.b1, self.negative_slope)
        return torch.sigmoid(torch.baddbmm(self.b2, h, self.W2))

    def member(self, m: int) -> PaperMLP:
        """Member m as a stand-alone :class:`PaperMLP` (a copy of its weights)."""
        net = PaperMLP(self.latent_dim, self.hidden, self.n_out, self.negative_slope)
        lin1, lin2 = net[0], net[2]
        assert isinstance(lin1, nn.Linear) and isinstance(lin2, nn.Linear)
        with torch.no_grad():
            lin1.weight.copy_(self.W1[m].T)
            lin1.bias.copy_(self.b1[m, 0])
            lin2.weight.copy_(self.W2[m].T)
            lin2.bias.copy_(self.b2[m, 0])
        return net
