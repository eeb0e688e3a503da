"""Segmentation losses: a small functional core and the paper's ``AdvancedComboLoss``.

All functions take logits and a binary (or soft) target of the same shape ``[N, C, X, Y, Z]``
(any shape with the batch first works). Dice and Tversky are computed per sample over all of
its voxels (and channels), then averaged over the batch, so one large liver in a batch cannot
drown a small one. Sums run in float32 even under autocast: a float16 sum over 2 M voxels
overflows.

Conventions:
    Soft Dice loss  = 1 - (2 TP + s) / (sum p + sum t + s).
    Tversky index   TI = (TP + s) / (TP + alpha FN + beta FP + s), alpha weighting false
                    negatives and beta false positives (MONAI's ``TverskyLoss`` names them the
                    other way round: its ``alpha`` is the FP weight).
    Focal Tversky   = clamp_min(1 - TI, 1e-7) ** gamma. For gamma < 1, x ** gamma has an
                    infinite slope at x = 0, so a (near-)perfect prediction would give NaN/inf
                    gradients; the clamp keeps the slope finite (at most gamma * 1e-7 **
                    (gamma - 1), about 42 for gamma = 0.75), and below the clamp the term is a
                    constant 1e-7 ** gamma (5.6e-6) with zero gradient. The clamp also absorbs
                    rounding that makes 1 - TI slightly negative.
    BCE             = ``F.binary_cross_entropy_with_logits``, mean over voxels.

Empty foreground (a patch without liver): with ``smooth > 0`` nothing is 0 / 0. The Dice loss is
1 - s / (sum p + s) = sum p / (sum p + s), and 1 - TI = beta sum p / (beta sum p + s); both are
0 when nothing is predicted and grow, with non-zero gradient, with every false positive. With
``smooth = 0`` an empty target and an empty prediction give NaN; ``AdvancedComboLoss`` therefore
requires ``smooth > 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from livseg.config import LossConfig, RunConfig
from livseg.errors import ConfigError

__all__ = [
    "AdvancedComboLoss",
    "FOCAL_CLAMP",
    "RegionLoss",
    "bce_loss",
    "dice_loss",
    "focal_tversky_loss",
    "make_loss",
    "region_targets",
    "tversky_index",
]

FOCAL_CLAMP = 1e-7  # lower bound on 1 - TI before the fractional power; see module docstring


def _check_pair(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} differs from target shape {tuple(target.shape)}; "
            f"both must be [N, C, X, Y, Z]"
        )
    if logits.ndim < 2:
        raise ValueError(f"expected a batch axis first, got shape {tuple(logits.shape)}")


def _per_sample_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over everything but the batch axis: ``[N, ...] -> [N]``."""
    return x.flatten(start_dim=1).sum(dim=1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss on sigmoid probabilities, per sample, averaged over the batch.

    Args:
        logits: raw network outputs ``[N, ...]``.
        target: same shape, values in [0, 1] (bool and integer masks are accepted).
        smooth: added to numerator and denominator; must be > 0 for empty targets.

    Returns:
        Scalar ``mean_n [1 - (2 TP_n + s) / (sum p_n + sum t_n + s)]``.

    Raises:
        ValueError: if the shapes differ.
    """
    _check_pair(logits, target)
    probs = torch.sigmoid(logits.float())
    target = target.float()
    tp = _per_sample_sum(probs * target)
    denom = _per_sample_sum(probs) + _per_sample_sum(target)
    return (1.0 - (2.0 * tp + smooth) / (denom + smooth)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on logits (log-sum-exp form, stable for large logits).

    Args:
        logits: raw network outputs ``[N, ...]``.
        target: same shape, values in [0, 1].

    Returns:
        Scalar mean over all voxels (equal to the mean of per-sample means, as samples in a
        batch have the same size).

    Raises:
        ValueError: if the shapes differ.
    """
    _check_pair(logits, target)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def tversky_index(
    probs: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.7,
    beta: float = 0.3,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Tversky index per sample.

    Args:
        probs: probabilities ``[N, ...]`` in [0, 1] (not logits).
        target: same shape, values in [0, 1].
        alpha: weight of false negatives, sum (1 - p) t.
        beta: weight of false positives, sum p (1 - t).
        smooth: added to numerator and denominator.

    Returns:
        ``[N]`` tensor of ``(TP + s) / (TP + alpha FN + beta FP + s)``; 1 is perfect.

    Raises:
        ValueError: if the shapes differ.
    """
    _check_pair(probs, target)
    probs = probs.float()
    target = target.float()
    tp = _per_sample_sum(probs * target)
    fn = _per_sample_sum((1.0 - probs) * target)
    fp = _per_sample_sum(probs * (1.0 - target))
    return (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)


def focal_tversky_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.7,
    beta: float = 0.3,
    gamma: float = 0.75,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Focal Tversky loss ``mean_n clamp_min(1 - TI_n, 1e-7) ** gamma``.

    Args:
        logits: raw network outputs ``[N, ...]``.
        target: same shape, values in [0, 1].
        alpha: weight of false negatives.
        beta: weight of false positives.
        gamma: focal exponent; < 1 boosts the gradient of nearly-right samples.
        smooth: added to numerator and denominator of TI.

    Returns:
        Scalar loss; its minimum, for a perfect prediction, is ``1e-7 ** gamma`` (not 0)
        because of the clamp that keeps gradients finite.

    Raises:
        ValueError: if the shapes differ.
    """
    ti = tversky_index(torch.sigmoid(logits.float()), target, alpha=alpha, beta=beta, smooth=smooth)
    return ((1.0 - ti).clamp_min(FOCAL_CLAMP) ** gamma).mean()


class AdvancedComboLoss(nn.Module):
    """The paper's loss: ``w_dice * Dice + w_bce * BCE + w_ft * focal Tversky``.

    Defaults (``LossConfig()``): 0.3 Dice + 0.3 BCE + 0.4 focal Tversky with alpha = 0.7
    (false negatives), beta = 0.3 (false positives), gamma = 0.75, smooth = 1.

    Args:
        config: weights and Tversky/Dice parameters.

    Raises:
        ConfigError: for negative weights or alpha/beta, gamma <= 0, or smooth <= 0 (which
            would make an empty patch 0 / 0).
    """

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        super().__init__()
        weights = (config.dice_weight, config.bce_weight, config.focal_tversky_weight)
        if min(weights) < 0 or config.alpha < 0 or config.beta < 0:
            raise ConfigError(f"loss: weights, alpha and beta must be >= 0, got {config}")
        if config.gamma <= 0:
            raise ConfigError(f"loss.gamma: expected > 0, got {config.gamma}")
        if config.smooth <= 0:
            raise ConfigError(
                f"loss.smooth: expected > 0 (patches without liver would give 0/0), got {config.smooth}"
            )
        self.config = config

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each unweighted term and the weighted total, for logging.

        Args:
            logits: raw network outputs ``[N, C, X, Y, Z]``.
            target: same shape, values in [0, 1].

        Returns:
            ``{"dice", "bce", "focal_tversky", "total"}``, scalar tensors (with graph).

        Raises:
            ValueError: if the shapes differ.
        """
        c = self.config
        parts = {
            "dice": dice_loss(logits, target, smooth=c.smooth),
            "bce": bce_loss(logits, target),
            "focal_tversky": focal_tversky_loss(
                logits, target, alpha=c.alpha, beta=c.beta, gamma=c.gamma, smooth=c.smooth
            ),
        }
        parts["total"] = (
            c.dice_weight * parts["dice"]
            + c.bce_weight * parts["bce"]
            + c.focal_tversky_weight * parts["focal_tversky"]
        )
        return parts

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted total loss (scalar); see :meth:`components` for the terms."""
        return self.components(logits, target)["total"]


def region_targets(label: torch.Tensor) -> torch.Tensor:
    """The nested targets of stage 2 from a 0/1/2 label map.

    Args:
        label: ``[N, 1, X, Y, Z]`` with 0 background, 1 liver, 2 tumour (any float or int dtype).

    Returns:
        ``[N, 2, X, Y, Z]`` float: channel 0 liver-or-tumour (label > 0, the LiTS liver), channel 1
        tumour (label 2).
    """
    return torch.cat([label > 0.5, label > 1.5], dim=1).float()


class RegionLoss(nn.Module):
    """Stage 2's loss: :class:`AdvancedComboLoss` on each nested region, the tumour weighted.

    ``loss = (combo(liver-or-tumour) + w * combo(tumour)) / (1 + w)`` with ``w =
    RegionConfig.tumour_weight``; each term is the paper's loss on one sigmoid channel (Dice and
    Tversky per sample over that channel only, so the large liver cannot drown the small tumour
    term). A patch without tumour scores its tumour channel by the empty-foreground rule of this
    module (0 when nothing is predicted, growing with every false-positive voxel). With
    ``batch_dice`` the tumour term treats the whole batch as one sample (nnU-Net's batch Dice), so
    only a batch without any tumour falls under that rule.

    Args:
        config: the loss terms' weights and parameters.
        tumour_weight: ``w`` above, >= 0.
        batch_dice: score the tumour channel over the batch instead of per sample.

    Raises:
        ConfigError: as :class:`AdvancedComboLoss`, or a negative ``tumour_weight``.
    """

    def __init__(self, config: LossConfig = LossConfig(), tumour_weight: float = 2.0, batch_dice: bool = False) -> None:
        super().__init__()
        if tumour_weight < 0:
            raise ConfigError(f"region.tumour_weight: expected >= 0, got {tumour_weight}")
        self.combo = AdvancedComboLoss(config)
        self.tumour_weight = float(tumour_weight)
        self.batch_dice = bool(batch_dice)

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Weighted loss (scalar) of logits ``[N, 2, ...]`` against a 0/1/2 label map ``[N, 1, ...]``.

        Raises:
            ValueError: if the logits do not have two channels or the shapes disagree.
        """
        if logits.ndim < 2 or logits.shape[1] != 2 or label.shape[1:2] != (1,):
            raise ValueError(
                f"RegionLoss: expected logits [N, 2, ...] and a label map [N, 1, ...], got "
                f"{tuple(logits.shape)} and {tuple(label.shape)}"
            )
        target = region_targets(label)
        liver = self.combo(logits[:, :1], target[:, :1])
        tumour_logits, tumour_target = logits[:, 1:], target[:, 1:]
        if self.batch_dice:  # [N, 1, ...] -> [1, N, ...]: one sample of N channels (BCE is a mean either way)
            tumour_logits, tumour_target = tumour_logits.transpose(0, 1), tumour_target.transpose(0, 1)
        tumour = self.combo(tumour_logits, tumour_target)
        return (liver + self.tumour_weight * tumour) / (1.0 + self.tumour_weight)


def make_loss(config: RunConfig) -> nn.Module:
    """The training loss of a run: :class:`RegionLoss` for stage 2 (``region.enabled``), a
    multi-organ model's (``model.classes``) softmax Dice + CE with partial labels
    (:class:`livseg.nn.partial_loss.PartialLabelLoss`), else the paper's :class:`AdvancedComboLoss`."""
    if config.model.classes:
        from livseg.nn.partial_loss import PartialLabelLoss

        return PartialLabelLoss(smooth=config.loss.smooth)
    if config.region.enabled:
        return RegionLoss(config.loss, tumour_weight=config.region.tumour_weight, batch_dice=config.region.batch_dice)
    return AdvancedComboLoss(config.loss)
