"""The public API in livseg/__init__.py: every name resolves, lazily, without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import livseg


def test_import_livseg_does_not_import_torch() -> None:
    code = "import livseg, sys; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", livseg.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(livseg, name)
    assert callable(value) and value.__module__.startswith("livseg.")
    assert name in dir(livseg)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        livseg.nothing  # noqa: B018
