"""device: the precision rule shared by training and inference, and the torch floor it needs.

No GPU exists where these tests run: the CUDA choices are tested by monkeypatching torch's
capability queries, as a T4 (7.5), V100 (7.0), A100 (8.0) or H100 (9.0) would answer them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import livseg.device
from livseg.device import autocast, autocast_dtype

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16),
     ((9, 0), torch.bfloat16)],
)
def test_bf16_only_where_the_gpu_has_it_natively(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: torch.dtype
) -> None:
    # torch says True on a T4 too (bf16 emulated there): the rule must not rely on it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert autocast_dtype(torch.device("cuda:0")) == expected
    assert autocast_dtype(torch.device("cuda:0"), enabled=False) is None


def test_cpu_runs_in_full_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    assert autocast_dtype(torch.device("cpu")) is None
    with autocast(torch.device("cpu")):
        assert torch.ones(2, 2).mm(torch.ones(2, 2)).dtype == torch.float32


def test_training_takes_fp16_with_a_grad_scaler_on_a_t4(monkeypatch: pytest.MonkeyPatch) -> None:
    from livseg.training.setup import _precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # else GradScaler disables itself
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    dtype, scaler = _precision(torch.device("cuda:0"), amp=True)
    assert dtype == torch.float16 and scaler.is_enabled()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))
    dtype, scaler = _precision(torch.device("cuda:0"), amp=True)
    assert dtype == torch.bfloat16 and not scaler.is_enabled()  # bf16 needs no loss scaling
    dtype, scaler = _precision(torch.device("cpu"), amp=True)
    assert dtype is None and not scaler.is_enabled()


def test_inference_uses_the_shared_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import livseg.inference.segment as segment

    seen: list[torch.device] = []

    def spy(device: torch.device, **kwargs: object) -> torch.autocast:
        seen.append(device)
        return autocast(device, **kwargs)

    monkeypatch.setattr(segment, "autocast", spy)
    model = torch.nn.Conv3d(1, 1, 1).eval()
    prob = segment._forward(model, np.zeros((4, 4, 4), np.float32), torch.device("cpu"))
    assert seen == [torch.device("cpu")] and prob.shape == (4, 4, 4)
    assert "autocast" in livseg.device.__all__


def test_torch_floor_has_torch_amp_grad_scaler() -> None:
    # torch.amp.GradScaler("cuda", ...) (the fp16 path) exists from torch 2.3 on
    text = PYPROJECT.read_text()
    match = re.search(r'"torch>=(\d+)\.(\d+)', text)
    assert match, "pyproject.toml must pin a torch floor"
    assert (int(match.group(1)), int(match.group(2))) >= (2, 3)
