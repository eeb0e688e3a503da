"""Moving weights between output heads: a liver network's body under a multi-organ head.

A multi-organ model (``model.classes``) differs from a liver network with the same widths only
in its last 1x1x1 convolution (``head``): one output per class instead of one. :func:`expand_head`
starts a multi-organ model from a liver network's weights so that it predicts what the liver
network predicted: with the liver channel's weights equal to the sigmoid's and background's 0,
``softmax`` over (background, liver) is exactly ``sigmoid(liver logit)``; the other classes start
with zero weights and a bias of ``other_bias``, so they hold ``e^b / (1 + e^l + (C - 2) e^b)`` of
the probability (0.12 of a background voxel for 7 classes at -4) and are learnt from there.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["expand_head"]


def expand_head(state: dict[str, torch.Tensor], classes: Sequence[str], *, other_bias: float = -4.0
                ) -> dict[str, torch.Tensor]:
    """A liver network's state dict with its one-logit head widened to ``classes``.

    Args:
        state: weights of a UNet3D with one output (``head.weight`` ``[1, c, 1, 1, 1]``).
        classes: the new head's classes (``"background"`` first, ``"liver"`` among them).
        other_bias: starting bias of every class but background and liver.

    Returns:
        A new state dict (the body's tensors shared, the head new, float32).

    Raises:
        ValueError: the state has no one-output head, or the classes lack background/liver.
    """
    weight, bias = state.get("head.weight"), state.get("head.bias")
    if weight is None or bias is None or weight.shape[0] != 1:
        raise ValueError(f"expand_head: expected a one-output head, got {None if weight is None else tuple(weight.shape)}")
    if not classes or classes[0] != "background" or "liver" not in classes:
        raise ValueError(f"expand_head: classes must start with 'background' and hold 'liver', got {list(classes)}")
    liver = list(classes).index("liver")
    new_weight = torch.zeros((len(classes), *weight.shape[1:]), dtype=torch.float32)
    new_bias = torch.full((len(classes),), float(other_bias), dtype=torch.float32)
    new_weight[liver] = weight[0].float()
    new_bias[liver] = bias[0].float()
    new_bias[0] = 0.0
    return {**state, "head.weight": new_weight, "head.bias": new_bias}
