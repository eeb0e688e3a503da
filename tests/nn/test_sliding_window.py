"""livseg.nn.sliding_window: window placement, blending weights, and exactness for pointwise predictors."""

from __future__ import annotations

import pytest
import torch

from livseg.nn.sliding_window import MIN_WEIGHT, gaussian_weights, sliding_window, window_starts


@pytest.mark.parametrize(
    "size, patch, overlap, expected",
    [
        (10, 4, 0.5, [0, 2, 4, 6]),  # step 2: three steps reach 6 = 10 - 4
        (10, 4, 0.0, [0, 3, 6]),  # step 4 would need 1.5 steps: three windows spread evenly
        (11, 4, 0.5, [0, 2, 4, 5, 7]),  # linspace(0, 7, 5) = 0, 1.75, 3.5, 5.25, 7 rounded
        (4, 4, 0.5, [0]),
        (3, 4, 0.5, [0]),  # smaller than the patch: padded, one window
        (9, 8, 0.9, [0, 1]),  # step floor(0.8) -> at least one voxel
    ],
)
def test_window_starts(size: int, patch: int, overlap: float, expected: list[int]) -> None:
    assert window_starts(size, patch, overlap) == expected


def test_gaussian_weights() -> None:
    weights = gaussian_weights((9, 8, 1))
    assert weights.shape == (9, 8, 1)
    assert float(weights.max()) == pytest.approx(1.0, abs=1e-6) and float(weights[4, 3, 0]) == float(weights[4, 4, 0])
    assert torch.equal(weights, weights.flip(0)) and torch.equal(weights, weights.flip(1))
    # sigma = 9 / 8 voxels: the corner (4 and 3.5 voxels off centre) lies below the floor
    assert float(weights.min()) == pytest.approx(MIN_WEIGHT)


@pytest.mark.parametrize("blend", ["gaussian", "uniform"])
@pytest.mark.parametrize("shape", [(2, 13, 9, 7), (1, 5, 3, 8)])
def test_a_pointwise_predictor_gives_the_whole_volume_result(blend: str, shape: tuple[int, ...]) -> None:
    """Blending is a weighted mean of identical values for a pointwise predictor: exact, also where padded."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(shape, generator=generator)
    calls = []

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch.shape[0])
        return torch.cat([torch.sigmoid(2 * batch), batch**2], dim=1)

    out = sliding_window(image, predictor, (6, 4, 4), overlap=0.5, blend=blend, batch_size=3, pad_value=0.0)
    assert out.shape == (2 * shape[0], *shape[1:])
    assert torch.allclose(out, torch.cat([torch.sigmoid(2 * image), image**2]), atol=1e-6)
    assert max(calls) <= 3


def test_padding_is_seen_by_the_predictor_and_cut_off() -> None:
    image = torch.ones(1, 2, 6, 6)
    seen = []

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.clone())
        return batch

    out = sliding_window(image, predictor, (4, 4, 4), overlap=0.0, pad_value=-5.0)
    assert out.shape == (1, 2, 6, 6) and torch.all(out == 1)
    assert float(seen[0][0, 0, 0, 0, 0]) == -5.0  # one padded row before (x: 2 -> 4), one after
    assert float(seen[0][0, 0, 1, 0, 0]) == 1.0 and float(seen[0][0, 0, 3, 0, 0]) == -5.0


@pytest.mark.parametrize(
    "kwargs, message",
    [({"overlap": 1.0}, "overlap"), ({"blend": "max"}, "blend"), ({"patch": (4, 4)}, "patch")],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    arguments = {"patch": (4, 4, 4), **kwargs}
    with pytest.raises(ValueError, match=message):
        sliding_window(torch.zeros(1, 4, 4, 4), lambda b: b, arguments.pop("patch"), **arguments)
    with pytest.raises(ValueError, match="expected an image"):
        sliding_window(torch.zeros(4, 4, 4), lambda b: b, (4, 4, 4))
