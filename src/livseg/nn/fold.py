"""Batch norms folded into the convolutions before them, for inference (:func:`fold_batchnorm`).

``livseg.inference.segment.load_model`` folds every model it loads; the function lives with the
network because it only needs its modules (re-exported from :mod:`livseg.inference.segment`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["fold_batchnorm"]


def _fold_pair(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> None:
    """Fold an eval-mode batch norm into the convolution before it, in place."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
        # double precision so the folded weights round once, not twice
        conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1, 1)).to(conv.weight.dtype))
        new_bias = (bias * scale + shift).to(conv.weight.dtype)
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Inference copy of a U-Net with every Block's batch norms folded into its convolutions.

    For ``y = BN(conv(x))`` in eval mode, BN is the affine map ``gamma * (z - mean) /
    sqrt(var + eps) + beta``, so ``conv.weight *= gamma / sqrt(var + eps)`` per output channel
    and ``conv.bias = (bias - mean) * gamma / sqrt(var + eps) + beta`` give the same output;
    ``bn1``/``bn2`` become ``nn.Identity``. Saves two full passes over every activation.

    Args:
        model: a UNet3D (any module whose blocks expose ``conv1, bn1, conv2, bn2``).

    Returns:
        A folded deep copy in eval mode; ``model`` itself is left untouched. Only valid for
        inference: the copy cannot be trained further.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2")):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d):
                _fold_pair(conv, bn)
                setattr(module, bn_name, nn.Identity())
    return folded
