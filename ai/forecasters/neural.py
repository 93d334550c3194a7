"""What the PyTorch sequence models (nhits.py, patchtst.py) share: the base module that
TorchForecaster (base.py) trains and restores."""
from __future__ import annotations

import torch
from torch import nn


class SequenceClassifier(nn.Module):
    """Maps (B, lookback, channels) windows to up-logits (B,).

    Inputs are standardized per channel with the training set's mean and std, kept as the
    buffers `x_mean` and `x_std` so they travel in the weights. Those names are keys of every
    saved weights.pt (loaded with strict=True): renaming them makes old artifacts unloadable.
    Subclasses build their layers after calling `super().__init__(n_channels)`, start forward
    with `standardize`, and name their final Linear in `output_layer`.
    """

    def __init__(self, n_channels: int):
        super().__init__()
        self.register_buffer("x_mean", torch.zeros(n_channels))
        self.register_buffer("x_std", torch.ones(n_channels))

    def output_layer(self) -> nn.Linear:
        """The Linear that produces the up-logit."""
        raise NotImplementedError

    def set_scaler(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.x_mean.copy_(mean)
        self.x_std.copy_(std)

    def init_output_bias(self, logit: float) -> None:
        """Start at the training set's prior log-odds, so early epochs are not spent learning it."""
        with torch.no_grad():
            self.output_layer().bias.fill_(logit)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C) -> standardized, channels first (B, C, L)."""
        return ((x - self.x_mean) / self.x_std).transpose(1, 2)
