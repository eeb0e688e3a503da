"""The paper's 3D U-Net.

``UNet3D`` is built from a :class:`~livseg.config.ModelConfig`. With the default (paper)
config it has four levels of widths 32-64-128-256 and 5,602,529 parameters::

    input  [N, 1, X, Y, Z]
    encoders[0]  Block(1, 32)                 -> skip 0, [N, 32,  X,   Y,   Z  ]
    pool, encoders[1]  Block(32, 64)          -> skip 1, [N, 64,  X/2, Y/2, Z/2]
    pool, encoders[2]  Block(64, 128)         -> skip 2, [N, 128, X/4, Y/4, Z/4]
    pool, bottleneck   Block(128, 256)        ->         [N, 256, X/8, Y/8, Z/8]
    ups[0] 256->128, cat skip 2, decoders[0] Block(256, 128)
    ups[1] 128->64,  cat skip 1, decoders[1] Block(128, 64)
    ups[2] 64->32,   cat skip 0, decoders[2] Block(64, 32)
    head   Conv3d 1x1x1 32 -> 1               -> logits [N, 1, X, Y, Z]

``ups`` and ``decoders`` are stored in the order they run (deepest first). Every ``Block``
exposes ``conv1, bn1, act1, drop, conv2, bn2, act2`` and runs them in exactly that order, so a
batch-norm folding pass can fold ``bnK`` into ``convK`` and replace ``bnK`` by ``nn.Identity``.
"""

from __future__ import annotations

import torch
from torch import nn

from livseg.config import ModelConfig
from livseg.errors import ConfigError

__all__ = ["Block", "UNet3D", "count_parameters"]


class Block(nn.Module):
    """Two 3x3x3 convolutions, each followed by batch norm and LeakyReLU, dropout in between.

    Conv3d(pad 1) -> BatchNorm3d -> LeakyReLU -> Dropout3d(p) -> Conv3d(pad 1) -> BatchNorm3d
    -> LeakyReLU. Spatial size is kept.

    Args:
        in_channels: channels of the input.
        out_channels: channels of both convolutions' outputs.
        dropout: channel dropout probability (``nn.Dropout3d``), active in train mode only.
        negative_slope: LeakyReLU slope for negative inputs.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float, negative_slope: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm3d(out_channels)
        # inplace is safe: BatchNorm's backward needs its input, not its output, and saves the
        # memory of one full-resolution activation per block (262 MB at 32 x 160 x 160 x 80).
        self.act1 = nn.LeakyReLU(negative_slope, inplace=True)
        self.drop = nn.Dropout3d(dropout)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.act2 = nn.LeakyReLU(negative_slope, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the seven layers in order; ``[N, in, X, Y, Z] -> [N, out, X, Y, Z]``."""
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.drop(x)
        x = self.act2(self.bn2(self.conv2(x)))
        return x


class UNet3D(nn.Module):
    """3D U-Net returning one logit map per output channel.

    Input ``[N, in_channels, X, Y, Z]`` gives logits ``[N, out_channels, X, Y, Z]``. Each of X,
    Y, Z must be divisible by ``2 ** (len(config.channels) - 1)`` (8 for the paper's four
    levels), because every pooling halves the size and every up-convolution doubles it back;
    other sizes are refused with the nearest larger valid shape to pad or resample to.

    The paper config (``ModelConfig()``) has 5,602,529 parameters: encoders 859,296, bottleneck 2,655,744,
    up-convolutions 344,288, decoder blocks 1,743,168, head 33. Works in both the contiguous and
    the ``torch.channels_last_3d`` memory formats (``model.to(memory_format=...)``).

    Args:
        config: widths per level (any length >= 2), input/output channels, dropout and
            LeakyReLU slope.

    Raises:
        ConfigError: if the config has fewer than two levels or non-positive widths.
    """

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        channels = tuple(config.channels)
        if len(channels) < 2 or min(channels) < 1 or config.in_channels < 1 or config.out_channels < 1:
            raise ConfigError(
                f"model: expected at least two positive channel widths and positive in/out channels, "
                f"got channels={channels}, in_channels={config.in_channels}, "
                f"out_channels={config.out_channels}"
            )
        self.config = config
        block_args = {"dropout": config.dropout, "negative_slope": config.negative_slope}

        widths_in = (config.in_channels, *channels[:-2])
        self.encoders = nn.ModuleList(
            Block(cin, cout, **block_args) for cin, cout in zip(widths_in, channels[:-1])
        )
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)
        self.bottleneck = Block(channels[-2], channels[-1], **block_args)

        # Deepest level first, the order forward uses them.
        deep_to_shallow = list(zip(channels[:0:-1], channels[-2::-1]))  # (256, 128), (128, 64), ...
        self.ups = nn.ModuleList(
            nn.ConvTranspose3d(cin, cout, kernel_size=2, stride=2) for cin, cout in deep_to_shallow
        )
        self.decoders = nn.ModuleList(
            Block(2 * cout, cout, **block_args) for _, cout in deep_to_shallow
        )
        self.head = nn.Conv3d(channels[0], config.out_channels, kernel_size=1)

    @property
    def divisor(self) -> int:
        """What every spatial size must be a multiple of: 2 ** (number of poolings)."""
        return 2 ** (len(self.config.channels) - 1)

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse an input the network cannot map back to its own shape.

        Raises:
            ConfigError: for a tensor that is not ``[N, in_channels, X, Y, Z]`` or whose spatial
                sizes are not multiples of :attr:`divisor`; the message gives the shape to pad or
                resample to.
        """
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise ConfigError(
                f"input shape {tuple(x.shape)} is not [N, {self.config.in_channels}, X, Y, Z]; "
                f"add batch and channel axes, e.g. volume[None, None]"
            )
        spatial = tuple(int(s) for s in x.shape[2:])
        k = self.divisor
        if any(s % k for s in spatial):
            fixed = tuple(-(-s // k) * k for s in spatial)
            raise ConfigError(
                f"input spatial shape {spatial} is not divisible by {k} "
                f"(required by a U-Net with {len(self.config.channels)} levels); "
                f"pad or resample to {fixed}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute logits.

        Args:
            x: ``[N, in_channels, X, Y, Z]`` with X, Y, Z divisible by :attr:`divisor`.

        Returns:
            Logits ``[N, out_channels, X, Y, Z]`` (apply a sigmoid for probabilities).

        Raises:
            ConfigError: for a wrong number of axes/channels or indivisible spatial sizes.
        """
        self.check_input(x)

        skips: list[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = self.pool(x)
            x = encoder(x)
            skips.append(x)

        x = self.bottleneck(self.pool(x))

        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = up(x)
            x = decoder(torch.cat([x, skip], dim=1))

        return self.head(x)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (batch-norm running statistics are buffers, not counted).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The total element count.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
