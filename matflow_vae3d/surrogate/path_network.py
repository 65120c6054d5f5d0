"""The load-path sequence network: a GRU whose initial hidden state is made from the
microstructure's features (the paper's Discussion: "a recurrent network whose hidden
state starts from the fingerprint"), stepping through the prescribed load.

Per member: h0 = tanh(W_h x + b_h), (layers, B, hidden); each step's input is the
encoded load increment (:data:`~.path_table.N_STEP_INPUTS`) concatenated with the
features x (``feature_steps``; False: the features enter through h0 only, which makes
the per-step input 28 numbers instead of 28 + n_features and prediction about 2x
faster); a two-layer head maps the top hidden state to the scaled targets. With no
features (n_features = 0) h0 is a learned constant: the mean response of the training
microstructures, the baseline that shows what the microstructure adds. An ensemble is
``n_members`` independent networks; no I/O here.
"""

from __future__ import annotations

import torch
from torch import nn

from .path_table import N_STEP_INPUTS, N_TARGETS


class _Member(nn.Module):
    def __init__(
        self, n_features: int, n_inputs: int, n_outputs: int, hidden: int, layers: int, feature_steps: bool = True
    ):
        super().__init__()
        self.layers, self.hidden, self.feature_steps = layers, hidden, bool(feature_steps)
        if n_features:
            self.h0 = nn.Linear(n_features, layers * hidden)
        else:
            self.h0_const = nn.Parameter(torch.zeros(layers, 1, hidden))
        step_inputs = n_inputs + (n_features if self.feature_steps else 0)
        self.gru = nn.GRU(step_inputs, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_outputs))

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        B, T, _ = u.shape
        if x.shape[1]:
            h0 = torch.tanh(self.h0(x)).view(B, self.layers, self.hidden).transpose(0, 1).contiguous()
            if self.feature_steps:
                u = torch.cat([u, x[:, None, :].expand(B, T, x.shape[1])], dim=2)
        else:
            h0 = torch.tanh(self.h0_const).expand(self.layers, B, self.hidden).contiguous()
        out, _ = self.gru(u, h0)
        return self.head(out)


class PathGRU(nn.Module):
    """Ensemble of GRU sequence models.

    forward(x (B, n_features), u (B, T, n_inputs)) -> (M, B, T, n_outputs), scaled
    targets at the end of every increment.
    """

    def __init__(
        self,
        n_features: int,
        hidden: int = 128,
        layers: int = 2,
        n_members: int = 1,
        n_inputs: int = N_STEP_INPUTS,
        n_outputs: int = N_TARGETS,
        feature_steps: bool = True,
    ):
        super().__init__()
        if n_members < 1 or hidden < 1 or layers < 1 or n_features < 0:
            raise ValueError("need n_members, hidden, layers >= 1 and n_features >= 0")
        self.n_features, self.hidden, self.layers = int(n_features), int(hidden), int(layers)
        self.n_members, self.n_inputs, self.n_outputs = int(n_members), int(n_inputs), int(n_outputs)
        self.feature_steps = bool(feature_steps)
        self.members = nn.ModuleList(
            _Member(self.n_features, self.n_inputs, self.n_outputs, self.hidden, self.layers, self.feature_steps)
            for _ in range(n_members)
        )

    def config(self) -> dict[str, int]:
        return {
            "n_features": self.n_features,
            "hidden": self.hidden,
            "layers": self.layers,
            "n_members": self.n_members,
            "n_inputs": self.n_inputs,
            "n_outputs": self.n_outputs,
            "feature_steps": self.feature_steps,
        }

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x, u) for m in self.members])
