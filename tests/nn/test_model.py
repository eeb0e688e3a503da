"""UNet3D: shapes, parameter count, train/eval behaviour, gradients, bad input."""

from __future__ import annotations

import pytest
import torch

from livseg.config import ModelConfig
from livseg.errors import ConfigError, LivsegError
from livseg.nn.model import Block, UNet3D, count_parameters

SMALL_UNET = ModelConfig(channels=(4, 8, 16), dropout=0.5)  # divisor 4, a few thousand parameters


def _block_params(cin: int, cout: int) -> int:
    """Two 3x3x3 convs with bias, two batch norms (weight + bias each)."""
    conv1 = 27 * cin * cout + cout
    conv2 = 27 * cout * cout + cout
    return conv1 + conv2 + 2 * (2 * cout)


def test_paper_parameter_count_matches_hand_count() -> None:
    encoders = _block_params(1, 32) + _block_params(32, 64) + _block_params(64, 128)
    bottleneck = _block_params(128, 256)
    ups = (256 * 128 * 8 + 128) + (128 * 64 * 8 + 64) + (64 * 32 * 8 + 32)  # 2x2x2 kernels
    decoders = _block_params(256, 128) + _block_params(128, 64) + _block_params(64, 32)
    head = 32 * 1 + 1
    hand = encoders + bottleneck + ups + decoders + head
    assert hand == 5_602_529  # the figure in the model docstring
    model = UNet3D()
    assert count_parameters(model) == hand
    assert count_parameters(model.bottleneck) == 2_655_744
    assert count_parameters(model.ups) == 344_288


@pytest.mark.slow
def test_paper_network_keeps_the_paper_grid_shape() -> None:
    # The only full-size forward in the suite (several seconds on CPU); channels-last as in use.
    torch.manual_seed(0)
    model = UNet3D().eval().to(memory_format=torch.channels_last_3d)
    x = torch.rand(1, 1, 160, 160, 80).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 1, 160, 160, 80)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("channels", "shape"),
    [((4, 8), (2, 1, 6, 4, 2)), ((4, 8, 16), (1, 1, 8, 4, 12)), ((2, 4, 8, 16, 32), (1, 1, 16, 16, 16))],
)
def test_any_depth_maps_input_shape_to_output_shape(channels: tuple[int, ...], shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = UNet3D(ModelConfig(channels=channels, out_channels=2)).eval()
    assert len(model.encoders) == len(channels) - 1
    assert len(model.ups) == len(model.decoders) == len(channels) - 1
    with torch.no_grad():
        out = model(torch.rand(shape))
    assert out.shape == (shape[0], 2, *shape[2:])


def test_channels_last_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    model = UNet3D(SMALL_UNET).eval()
    x = torch.rand(2, 1, 8, 8, 4)
    with torch.no_grad():
        expected = model(x)
        model_cl = model.to(memory_format=torch.channels_last_3d)
        got = model_cl(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_eval_is_deterministic_and_train_is_not() -> None:
    torch.manual_seed(0)
    model = UNet3D(SMALL_UNET)
    x = torch.rand(2, 1, 8, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        first, second = model(x), model(x)  # dropout masks differ between calls
    assert not torch.allclose(first, second)


def test_train_mode_updates_batchnorm_statistics_and_eval_does_not() -> None:
    torch.manual_seed(0)
    model = UNet3D(SMALL_UNET)
    bn = model.encoders[0].bn1
    x = torch.rand(2, 1, 8, 8, 8) * 5 + 3
    model.eval()
    with torch.no_grad():
        model(x)
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    model.train()
    with torch.no_grad():
        model(x)
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_gradients_reach_the_first_layer() -> None:
    torch.manual_seed(0)
    model = UNet3D(SMALL_UNET).train()
    logits = model(torch.rand(1, 1, 8, 8, 8))
    logits.mean().backward()
    grad = model.encoders[0].conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_block_runs_its_named_layers_in_order() -> None:
    # A batch-norm folding pass relies on these names and on this order.
    torch.manual_seed(0)
    block = Block(2, 3, dropout=0.2, negative_slope=0.01).eval()
    names = ["conv1", "bn1", "act1", "drop", "conv2", "bn2", "act2"]
    assert [name for name, _ in block.named_children()] == names
    x = torch.rand(1, 2, 4, 4, 4)
    with torch.no_grad():
        y = x
        for name in names:
            y = getattr(block, name)(y)
        torch.testing.assert_close(block(x), y)


def test_indivisible_input_is_refused_with_the_size_to_pad_to() -> None:
    model = UNet3D()  # four levels: divisor 8; refused before any computation
    with pytest.raises(ConfigError) as info:
        model(torch.zeros(1, 1, 161, 160, 80))
    message = str(info.value)
    assert "input spatial shape (161, 160, 80) is not divisible by 8" in message
    assert "pad or resample to (168, 160, 80)" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, LivsegError)


@pytest.mark.parametrize("shape", [(1, 8, 8, 8), (1, 2, 8, 8, 8)])
def test_wrong_axes_or_channels_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match=r"is not \[N, 1, X, Y, Z\]"):
        UNet3D(SMALL_UNET)(torch.zeros(shape))


def test_single_level_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least two"):
        UNet3D(ModelConfig(channels=(8,)))
