"""Every ```python block of README.md and docs/*.md runs (one namespace per file)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.M | re.S)


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(REPO).as_posix() for p in FILES])
def test_python_examples_run(path, monkeypatch, tmp_path):
    blocks = _blocks(path)
    if not blocks:
        pytest.skip(f"{path.name} has no python example")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MIXEST_DOCS_TMP", str(tmp_path))
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{path.name}[block {i}]", "exec"), namespace)
    assert os.getcwd() == str(REPO)
