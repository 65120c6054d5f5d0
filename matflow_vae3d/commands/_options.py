"""Option parsing shared by the ``vae3d`` commands."""

from __future__ import annotations

import click


def parse_device(name: str):
    """torch.device for a ``--device`` value: 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA
    when available). A click error names an unknown device or a missing GPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise click.ClickException(f"unknown device {name!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("--device cuda requested but no CUDA GPU is available")
    return dev
