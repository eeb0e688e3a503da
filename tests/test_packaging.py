"""What ``pip install .`` ships: every data file the package reads at run time must be in the wheel.

An editable install (what the tests run on) reads files from the source tree, so a data file that
``[tool.setuptools.package-data]`` leaves out works here and fails for every user of a wheel.
(quality-v1.json was left out this way: ``livseg demo`` after ``pip install .`` stopped at its
predict step with FileNotFoundError.)
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "livseg"


def package_data_globs() -> list[str]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs tomllib (Python 3.11+)")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["setuptools"]["package-data"]["livseg"])


def test_every_data_file_of_the_package_is_shipped() -> None:
    if not PACKAGE.is_dir():
        pytest.skip("not run from a source checkout (no src/livseg)")
    globs = package_data_globs()
    data = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data, "expected the built-in weights and the quality coefficients"
    missing = [f for f in data if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_the_quality_coefficients_are_a_data_file() -> None:
    from livseg.inference.quality_model import QUALITY_FILE

    assert QUALITY_FILE.is_file() and QUALITY_FILE.parent.name == "inference"
    assert any(fnmatch.fnmatch(f"inference/{QUALITY_FILE.name}", g) for g in package_data_globs())
