"""Built-in models (livseg.weights): names, cards, and how a wrong name is refused."""

from __future__ import annotations

import pytest

from livseg.cli import main
from livseg.errors import ConfigError
from livseg.weights import builtin_name, builtin_path, is_builtin, list_models, model_card


def test_is_builtin_names() -> None:
    assert is_builtin(None) and is_builtin("builtin:liver-v1") and is_builtin("builtin")
    assert not is_builtin("runs/best.pt") and not is_builtin(3) and not is_builtin("builtin.pt")
    assert builtin_name(None) == builtin_name("builtin") == builtin_name("liver-v1") == "builtin:liver-v1"


def test_unknown_builtin_model_is_refused_with_the_known_names() -> None:
    from livseg.inference.segment import load_model

    with pytest.raises(ConfigError, match=r"no built-in model 'nope'.*livseg models"):
        load_model("builtin:nope")
    with pytest.raises(ConfigError, match="no built-in model"):
        model_card("nope")
    with pytest.raises(ConfigError, match="no built-in model"):
        with builtin_path("nope"):
            pass
    assert all(isinstance(name, str) for name in list_models())


def test_models_command_with_an_unknown_name_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "no built-in model 'nope'" in err
