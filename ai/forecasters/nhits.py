"""N-HiTS in PyTorch, adapted to P(up) classification.

Reference: C. Challu, K. G. Olivares, B. N. Oreshkin, F. Garza Ramirez, M. Mergenthaler-Canseco,
A. Dubrawski, "N-HiTS: Neural Hierarchical Interpolation for Time Series Forecasting",
AAAI 2023 (arXiv:2201.12886).

What is kept from the paper:
- Stacks of MLP blocks (one block per stack by default, as in the paper's experiments).
- Multi-rate input sampling: block l max-pools its input with kernel k_l (MaxPool1d, stride
  k_l, ceil mode), large kernels first, so early stacks see the low-frequency content.
- Hierarchical interpolation: the block's MLP emits coefficients at a reduced rate,
  theta_f of length ceil(H / r_l) (expressiveness ratio r_l, large first) and theta_b of
  length ceil(L / r_l); linear interpolation g expands them to the horizon H and the lookback
  L. (The reference code keeps the backcast at full rate; here both use the reduced rate.)
- Doubly residual stacking: each block sees the residual left by the previous ones
  (x_{l+1} = x_l - backcast_l) and the forecast is the sum of the blocks' forecasts, so the
  low-rate stacks lay down the trend and later stacks add detail.

The adaptation to classification:
- Input is the (lookback=64, channels=3) window of the dataset contract; all channels are
  pooled and flattened into one MLP input per block (the paper is univariate with exogenous
  inputs; here the channels play both roles), and each block backcasts and forecasts every
  channel, so the forecast is a (horizon H, channels) path.
- The contract carries only the direction label, not the future path, so the forecast is not
  fitted to future values: it is the model's latent next-horizon path, and a linear
  classification head on the flattened forecast gives the up-logit. The whole network is
  trained end to end on binary cross-entropy; early stopping and calibration are shared with
  the other forecasters (base.TorchForecaster).
- Inputs are standardized per channel with the training set's mean and std (kept as buffers
  in the weights), so returns of order 1e-3 and z-scores train alike.
"""
# F (torch.nn.functional) follows the field's convention.
# ruff: noqa: N812
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ai.forecasters.base import TorchForecaster
from ai.forecasters.neural import SequenceClassifier


class NHiTSBlock(nn.Module):
    """Pool -> MLP -> (theta_b, theta_f) at rate 1/r -> interpolate to (L, H)."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, pool_kernel: int, downsample: int,
                 hidden: int, n_layers: int, dropout: float = 0.0):
        super().__init__()
        self.lookback, self.horizon, self.n_channels = lookback, horizon, n_channels
        self.pool = nn.MaxPool1d(kernel_size=pool_kernel, stride=pool_kernel, ceil_mode=True)
        self.n_pooled = math.ceil(lookback / pool_kernel)
        self.n_theta_b = max(math.ceil(lookback / downsample), 1)
        self.n_theta_f = max(math.ceil(horizon / downsample), 1)
        layers: list[nn.Module] = []
        width = n_channels * self.n_pooled
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.theta = nn.Linear(hidden, n_channels * (self.n_theta_b + self.n_theta_f))

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, L) -> theta_b (B, C, n_theta_b), theta_f (B, C, n_theta_f)."""
        h = self.mlp(self.pool(x).flatten(1))
        theta = self.theta(h)
        split = self.n_channels * self.n_theta_b
        return (theta[:, :split].reshape(-1, self.n_channels, self.n_theta_b),
                theta[:, split:].reshape(-1, self.n_channels, self.n_theta_f))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, L) -> backcast (B, C, L), forecast (B, C, H)."""
        theta_b, theta_f = self.coefficients(x)
        return interpolate(theta_b, self.lookback), interpolate(theta_f, self.horizon)


def interpolate(theta: torch.Tensor, size: int) -> torch.Tensor:
    """g: knots evenly spaced over the window, end points included; linear in between."""
    if theta.shape[-1] == size:
        return theta
    return F.interpolate(theta, size=size, mode="linear", align_corners=True)


class NHiTS(SequenceClassifier):
    def __init__(self, lookback: int = 64, n_channels: int = 3, horizon: int = 16,
                 pool_kernels: tuple[int, ...] = (8, 4, 1), downsample: tuple[int, ...] = (8, 4, 1),
                 n_blocks: int = 1, hidden: int = 128, n_layers: int = 2, dropout: float = 0.0):
        super().__init__(n_channels)
        if len(pool_kernels) != len(downsample):
            raise ValueError("pool_kernels and downsample need one entry per stack")
        self.lookback, self.n_channels, self.horizon = lookback, n_channels, horizon
        self.blocks = nn.ModuleList(
            NHiTSBlock(lookback, horizon, n_channels, k, r, hidden, n_layers, dropout)
            for k, r in zip(pool_kernels, downsample, strict=True) for _ in range(n_blocks))
        self.head = nn.Linear(n_channels * horizon, 1)

    def output_layer(self) -> nn.Linear:
        return self.head

    def decompose(self, x: torch.Tensor):
        """x (B, L, C) -> (scaled input (B, C, L), final residual, [backcasts], [forecasts])."""
        x = self.standardize(x)
        residual, backcasts, forecasts = x, [], []
        for block in self.blocks:
            b, f = block(residual)
            residual = residual - b
            backcasts.append(b)
            forecasts.append(f)
        return x, residual, backcasts, forecasts

    def forecast(self, x: torch.Tensor) -> torch.Tensor:
        """The summed (B, C, H) forecast path."""
        x = self.standardize(x)
        residual, total = x, None
        for block in self.blocks:
            b, f = block(residual)
            residual = residual - b
            total = f if total is None else total + f
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C) -> up-logit (B,)."""
        return self.head(self.forecast(x).flatten(1)).squeeze(-1)


class NHiTSForecaster(TorchForecaster):
    model_type = "nhits"
    DEFAULTS = {
        **TorchForecaster.TRAIN_DEFAULTS,
        "horizon": 16, "pool_kernels": [8, 4, 1], "downsample": [8, 4, 1], "n_blocks": 1,
        "hidden": 128, "n_layers": 2, "dropout": 0.0,
    }

    def _build(self, sample_shape):
        lookback, n_channels = sample_shape
        p = self.params
        return NHiTS(lookback=lookback, n_channels=n_channels, horizon=int(p["horizon"]),
                     pool_kernels=tuple(p["pool_kernels"]), downsample=tuple(p["downsample"]),
                     n_blocks=int(p["n_blocks"]), hidden=int(p["hidden"]), n_layers=int(p["n_layers"]),
                     dropout=float(p["dropout"]))
