"""PatchTST in PyTorch, adapted to P(up) classification.

Reference: Y. Nie, N. H. Nguyen, P. Sinthong, J. Kalagnanam, "A Time Series is Worth 64 Words:
Long-term Forecasting with Transformers", ICLR 2023 (arXiv:2211.14730).

What is kept from the paper (supervised PatchTST, scaled down):
- Instance normalization (RevIN): every channel of every sample is normalized by its own mean
  and standard deviation over the lookback, with a learnable per-channel affine.
- Patching: each channel's window is padded at the end with `stride` copies of its last value
  and cut into patches of length 16 with stride 8, so a lookback of 64 gives
  (64 - 16) / 8 + 2 = 8 patches ("words"), each linearly embedded to d_model, plus a
  learnable additive position encoding.
- Channel independence: the channels are folded into the batch, (B, C) -> B*C univariate
  series, all going through the same embedding and the same encoder; no attention across
  channels.
- A vanilla Transformer encoder (multi-head self-attention over the patches and a GELU
  feed-forward, residual connections, BatchNorm after each sub-layer as in the paper's code).
- Flatten head: the (patches x d_model) representation of a channel is flattened and mapped
  linearly, shared across channels (where the paper maps it to the forecast horizon).

The adaptation to classification:
- The flatten head maps each channel to a `head_dim`-vector instead of the H future values
  (the dataset contract has the direction label, not the path). A small classification head
  (Linear -> GELU -> Linear) over the concatenated channel representations gives the up-logit.
- RevIN's denormalization step has nothing to undo in a classifier, so what it removed is
  handed to the classification head instead: each channel's instance mean and log std join its
  representation, so level and volatility still inform P(up).
- Before RevIN, inputs are standardized per channel with the training set's statistics (buffers
  in the weights), which puts those instance statistics on a common scale.
"""
from __future__ import annotations

import torch
from torch import nn

from ai.forecasters.base import TorchForecaster
from ai.forecasters.neural import SequenceClassifier


class RevIN(nn.Module):
    """Per-sample, per-channel normalization over time with a learnable affine (Kim et al. 2022)."""

    def __init__(self, n_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_channels, 1))
        self.bias = nn.Parameter(torch.zeros(n_channels, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C, L) -> (normalized x, mean (B, C, 1), std (B, C, 1))."""
        mean = x.mean(dim=-1, keepdim=True)
        std = torch.sqrt(x.var(dim=-1, keepdim=True, unbiased=False) + self.eps)
        return (x - mean) / std * self.weight + self.bias, mean, std


class _BatchNormTokens(nn.Module):
    """BatchNorm1d over d_model for (N, tokens, d_model) input."""

    def __init__(self, d_model: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.bn(z.transpose(1, 2)).transpose(1, 2)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        # No dropout on the attention weights (the reference code's attn_dropout defaults to 0).
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=0.0, batch_first=True)
        self.norm_attn = _BatchNormTokens(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.norm_ff = _BatchNormTokens(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = self.norm_attn(z + self.drop(self.attn(z, z, z, need_weights=False)[0]))
        return self.norm_ff(z + self.drop(self.ff(z)))


def n_patches(lookback: int, patch_len: int, stride: int) -> int:
    """Patches after padding `stride` copies of the last value: floor((L - P) / S) + 2."""
    return (lookback - patch_len) // stride + 2


class PatchTST(SequenceClassifier):
    def __init__(self, lookback: int = 64, n_channels: int = 3, patch_len: int = 16, stride: int = 8,
                 d_model: int = 32, n_heads: int = 4, n_layers: int = 2, d_ff: int = 64, dropout: float = 0.1,
                 head_dim: int = 16, cls_hidden: int = 32):
        super().__init__(n_channels)
        if lookback < patch_len:
            raise ValueError(f"lookback {lookback} is shorter than a patch ({patch_len})")
        self.lookback, self.n_channels, self.patch_len, self.stride = lookback, n_channels, patch_len, stride
        self.n_patches = n_patches(lookback, patch_len, stride)
        self.revin = RevIN(n_channels)
        self.pad = nn.ReplicationPad1d((0, stride))
        self.embed = nn.Linear(patch_len, d_model)
        self.pos = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.flatten_head = nn.Sequential(nn.Flatten(start_dim=-2), nn.Dropout(dropout),
                                          nn.Linear(self.n_patches * d_model, head_dim))
        self.classifier = nn.Sequential(nn.Linear(n_channels * (head_dim + 2), cls_hidden), nn.GELU(),
                                        nn.Linear(cls_hidden, 1))

    def output_layer(self) -> nn.Linear:
        return self.classifier[-1]

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, L) -> patches (B, C, n_patches, patch_len)."""
        return self.pad(x).unfold(-1, self.patch_len, self.stride)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, C) -> per-channel representations (B, C, head_dim), instance stats (B, C, 2)."""
        b = x.shape[0]
        x = self.standardize(x)
        xn, mean, std = self.revin(x)
        patches = self.patchify(xn)  # (B, C, N, P)
        z = self.embed(patches.reshape(b * self.n_channels, self.n_patches, self.patch_len)) + self.pos
        z = self.drop(z)
        for layer in self.encoder:
            z = layer(z)
        reps = self.flatten_head(z).reshape(b, self.n_channels, -1)
        return reps, torch.cat([mean, torch.log(std)], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, C) -> up-logit (B,)."""
        reps, stats = self.encode(x)
        return self.classifier(torch.cat([reps, stats], dim=-1).flatten(1)).squeeze(-1)


class PatchTSTForecaster(TorchForecaster):
    model_type = "patchtst"
    DEFAULTS = {
        **TorchForecaster.TRAIN_DEFAULTS,
        "patch_len": 16, "stride": 8, "d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64,
        "dropout": 0.1, "head_dim": 16, "cls_hidden": 32,
    }

    def _build(self, sample_shape):
        lookback, n_channels = sample_shape
        p = self.params
        return PatchTST(lookback=lookback, n_channels=n_channels, patch_len=int(p["patch_len"]),
                        stride=int(p["stride"]), d_model=int(p["d_model"]), n_heads=int(p["n_heads"]),
                        n_layers=int(p["n_layers"]), d_ff=int(p["d_ff"]), dropout=float(p["dropout"]),
                        head_dim=int(p["head_dim"]), cls_hidden=int(p["cls_hidden"]))
