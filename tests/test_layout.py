"""The import arrows of DESIGN.md: data flows one way, and nothing imports upward.

Read from the source text (every ``import`` statement, also those inside functions), so a lazy
import that runs back up the pipeline fails here as surely as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import livseg

PACKAGE = Path(livseg.__file__).parent

# stage -> the livseg subpackages/modules it must never import
FORBIDDEN = {
    "data": ("nn", "training", "inference", "evaluation", "pacs", "cli", "demo"),
    "nn": ("training", "inference", "evaluation", "pacs", "cli", "demo"),
    "inference": ("training", "evaluation", "pacs", "cli", "demo"),
    # training validates patch runs with inference.segment itself, on each CT's own grid: best.pt is
    # chosen by the number livseg predict gives (inference never imports training back)
    "training": ("pacs", "cli", "demo"),
    "evaluation": ("training", "pacs", "cli", "demo"),
    "phantom": ("nn", "training", "inference", "evaluation", "pacs", "cli", "demo"),
    "pacs": ("training", "evaluation", "cli", "demo"),  # it uses inference and data.io; nothing below imports it
}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name == "livseg" or name.startswith("livseg.")}


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_no_stage_imports_upward(stage: str) -> None:
    offenders = []
    for path in sorted((PACKAGE / stage).rglob("*.py")):
        for name in _imported_modules(path):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[stage]:
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_nothing_imports_the_cli_or_the_demo() -> None:
    allowed = {PACKAGE / "__main__.py", *(PACKAGE / "cli").rglob("*.py")}
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py")) if path not in allowed
        for name in _imported_modules(path)
        if name.startswith(("livseg.cli", "livseg.demo")) and path != PACKAGE / "demo.py"
    ]
    assert not offenders, "\n".join(offenders)
