"""Starting from trained weights (train(init=...), livseg train --init): the weights really are the
init checkpoint's, its network and preprocessing cannot be changed, and the CLI adapts the
built-in model on a folder of labelled NIfTI cases and on `livseg phantom` output."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest
import torch
from helpers import TINY_PATCHES

from livseg.cli import main
from livseg.config import apply_overrides, get_preset
from livseg.errors import CheckpointError, ConfigError
from livseg.nn.checkpoint import load_checkpoint, save_checkpoint
from livseg.nn.model import UNet3D
from livseg.training.init import adopt_init, check_init_config, load_init
from livseg.training.train import train

ONE_STEP = ["patches.steps_per_round=1", "train.epochs=1", "patches.phantoms=0", "train.num_threads=1"]


@pytest.fixture
def cases(tumour_cases: Path) -> Path:
    return tumour_cases


def _hand_made_checkpoint(path: Path) -> Path:
    """TINY_PATCHES's network with every weight 0.01 and the head's bias 0.25."""
    model = UNet3D(TINY_PATCHES.model)
    state = {k: (torch.full_like(v, 0.01) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    state["head.bias"] = torch.tensor([0.25])
    return save_checkpoint(path, config=TINY_PATCHES, model_state=state)


def test_init_starts_from_the_checkpoint_weights(cases: Path, tmp_path: Path) -> None:
    init = _hand_made_checkpoint(tmp_path / "init.pt")
    # one Adam step of at most ~lr per weight: the run's weights are the init's to 1e-9
    config = apply_overrides(TINY_PATCHES, [*ONE_STEP, "train.lr=1e-9", "train.lr_schedule=constant"])
    result = train(cases, tmp_path / "run", config, init=init, device="cpu", progress=False)
    best = load_checkpoint(result.paths["best"])
    assert "head.bias" in best.model_state
    assert float(best.model_state["head.bias"]) == pytest.approx(0.25, abs=1e-8)
    conv = best.model_state["encoders.0.conv1.weight"]
    torch.testing.assert_close(conv, torch.full_like(conv, 0.01), atol=1e-8, rtol=0)
    assert best.config.train.init == str(init)
    fresh = train(cases, tmp_path / "fresh", config, device="cpu", progress=False)
    assert abs(float(load_checkpoint(fresh.paths["best"]).model_state["head.bias"]) - 0.25) > 1e-3


def test_a_resumed_run_keeps_where_its_weights_came_from(cases: Path, tmp_path: Path) -> None:
    init = _hand_made_checkpoint(tmp_path / "init.pt")
    config = apply_overrides(TINY_PATCHES, ["patches.steps_per_round=1", "train.epochs=2"])
    train(cases, tmp_path / "run", config, init=init, device="cpu", progress=False, stop_after_epoch=1)
    train(cases, tmp_path / "run", config, device="cpu", progress=False, resume=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["init"] == str(init)
    with pytest.raises(ConfigError, match="pass one of them"):
        train(cases, tmp_path / "run", config, device="cpu", init=init, resume=True)


def test_changes_to_the_network_or_preprocessing_are_refused(cases: Path, tmp_path: Path) -> None:
    init = _hand_made_checkpoint(tmp_path / "init.pt")
    for change, named in (("model.channels=8,16", "model.channels=[8, 16] (init: [4, 8])"),
                          ("preprocess.spacing=3,3,3", "preprocess.spacing=[3.0, 3.0, 3.0] (init: [2.0, 2.0, 3.0])"),
                          ("model.dropout=0", "model.dropout=0.0 (init: 0.2)")):
        config = apply_overrides(TINY_PATCHES, [change])
        with pytest.raises(ConfigError, match=r"the network and its preprocessing come from the init checkpoint"
                           ) as caught:
            train(cases, tmp_path / "run", config, init=init, device="cpu", progress=False)
        assert named in str(caught.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # the liver's label values describe the new data, not the network: free to change
    check_init_config(apply_overrides(TINY_PATCHES, ["preprocess.liver_labels=5"]), TINY_PATCHES, "x")
    adopted = adopt_init(apply_overrides(get_preset("finetune"), ["preprocess.liver_labels=5"]), TINY_PATCHES)
    assert adopted.model == TINY_PATCHES.model and adopted.preprocess.liver_labels == (5,)
    assert adopted.preprocess.spacing == TINY_PATCHES.preprocess.spacing and adopted.train.sampling == "patches"


def test_a_cascade_cannot_be_an_init(cascade_run: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match="a cascade holds two networks"):
        load_init(cascade_run["cascade"])


@pytest.mark.parametrize("argv, message", [
    (["--init", "builtin", "--set", "model.channels=4,8"], "model.channels=[4, 8] (init: [8, 16, 32, 64, 128])"),
    (["--init", "builtin", "--preset", "paper"], "preprocess.crop_body=False (init: True)"),
    (["--init", "builtin", "--set", "preprocess.target_shape=64,64,32"], "preprocess.target_shape"),
    (["--init", "builtin:liver-v9"], "no built-in model 'liver-v9'"),
    (["--init", "builtin", "--resume"], "--init starts a run from trained weights"),
])
def test_cli_refuses_with_one_line(cases: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   argv: list[str], message: str) -> None:
    code = main(["train", str(cases), "-o", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def _builtin_run(data: Path, out: Path, *extra: str) -> int:
    return main(["train", str(data), "-o", str(out), "--init", "builtin", "--max-minutes", "5", "--threads", "1",
                 "--no-progress", "--set", "patches.steps_per_round=2", "--epochs", "1", "--phantoms", "0", *extra])


def test_cli_adapts_the_builtin_model_and_predict_uses_it(cases: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _builtin_run(cases, tmp_path / "run") == 0
    assert "best validation Dice" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["init"] == "builtin:liver-v1" and config["name"] == "finetune"
    # two steps of Adam at lr <= 1e-3 from liver-v1: every weight within ~2e-3 of the shipped one
    shipped, tuned = load_init("builtin").model_state, load_checkpoint(tmp_path / "run" / "best.pt").model_state
    first = "encoders.0.conv1.weight"
    assert float((tuned[first] - shipped[first].float()).abs().max()) < 2.5e-3
    assert not torch.equal(tuned[first], shipped[first].float())
    assert main(["predict", str(cases / "volume-0.nii.gz"), "--checkpoint", str(tmp_path / "run" / "best.pt"),
                 "-o", str(tmp_path / "pred")]) == 0
    stats = json.loads((tmp_path / "pred" / "volume-0_stats.json").read_text())
    assert stats["checkpoint"] == str((tmp_path / "run" / "best.pt").resolve())
    assert nib.load(str(tmp_path / "pred" / "volume-0_liver.nii.gz")).shape == (40, 36, 20)
    # continued after the run stopped (a kill leaves the same last.pt): one more round
    assert main(["train", str(cases), "-o", str(tmp_path / "run"), "--resume", "--epochs", "2", "--threads", "1",
                 "--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt").epoch == 2


def test_cli_adapts_the_builtin_model_on_phantom_output(tmp_path: Path) -> None:
    assert main(["phantom", "-o", str(tmp_path / "phantoms"), "--n", "2", "--shape", "64", "64", "32"]) == 0
    assert _builtin_run(tmp_path / "phantoms", tmp_path / "run", "--val-fraction", "0") == 0
    assert load_checkpoint(tmp_path / "run" / "best.pt").config.train.init == "builtin:liver-v1"


def test_the_builtin_presets_are_liver_v1s_network_and_grid() -> None:
    shipped = load_init("builtin").config
    for name in ("builtin", "builtin-stage2", "finetune"):
        check_init_config(get_preset(name), shipped, "builtin")  # --preset NAME --init builtin is accepted


def test_the_build_script_continues_a_killed_stage_started_from_an_init(cases: Path, tmp_path: Path) -> None:
    """scripts/build_builtin_model.py's stages: a stage 2 killed after round 1 (its init given again
    by the same command) resumes from last.pt instead of being refused."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "build_builtin_model.py"
    spec = importlib.util.spec_from_file_location("build_builtin_model", script)
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)  # type: ignore[union-attr]
    init = _hand_made_checkpoint(tmp_path / "init.pt")
    config = apply_overrides(TINY_PATCHES, ["patches.steps_per_round=1", "train.epochs=2", "train.num_threads=1"])
    build.run_stage(cases, tmp_path / "stage2", config, init=init, stop_after_epoch=1)  # the kill
    best = build.run_stage(cases, tmp_path / "stage2", config, init=init)  # the same command again
    assert load_checkpoint(tmp_path / "stage2" / "last.pt").epoch == 2
    assert load_checkpoint(best).config.train.init == str(init)
