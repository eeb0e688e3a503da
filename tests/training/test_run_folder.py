"""training.run_folder: what rank 0 writes per epoch; best.pt is lean, last.pt resumes."""

from __future__ import annotations

from pathlib import Path

import torch

from livseg.config import get_preset
from livseg.nn.model import UNet3D
from livseg.training.distributed import DistInfo
from livseg.training.run_folder import save_epoch

MB = 1_000_000


def test_paper_best_checkpoint_holds_what_prediction_needs_and_is_under_25_mb(tmp_path: Path) -> None:
    config = get_preset("paper")
    model = UNet3D(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    for parameter in model.parameters():  # one step gives Adam its two moments per weight
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_dice": 0.8, "val_accuracy": 0.9,
                "seconds": 1.0, "lr": 1e-4}]
    save_epoch(tmp_path, config, model, optimizer, scaler, history, epoch=1, best_score=0.8, best_epoch=1,
               improved=True, rng_states=[{"torch": torch.get_rng_state()}], info=DistInfo(), plot=False)

    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (tmp_path / "best.pt").stat().st_size < 25 * MB  # 5.6 M float32 weights: 22.4 MB
    assert {"config", "model", "history", "epoch", "best_score"} <= set(best)
    assert not {"optimizer", "scaler", "rng", "data_order"} & set(best)
    assert best["history"] == history and best["config"]["name"] == "paper"
    # last.pt keeps everything --resume needs
    assert {"optimizer", "rng", "data_order", "world_size"} <= set(last)
    assert len(last["optimizer"]["state"]) == len(list(model.parameters()))
    assert all(torch.equal(best["model"][k], v) for k, v in model.state_dict().items())
