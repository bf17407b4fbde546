"""The documentation site: API pages in sync with the packages, a strict build, math rendered."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_pages_list_every_public_name(tmp_path, monkeypatch):
    pages = _load("_api_pages")
    monkeypatch.setattr(pages, "HERE", tmp_path)
    (tmp_path / "api").mkdir()
    pages.main()
    for page in pages.PAGES:
        committed = (REPO / "docs" / "api" / f"{page}.md").read_text()
        assert (tmp_path / "api" / f"{page}.md").read_text() == committed, (
            f"docs/api/{page}.md is stale: run python docs/_api_pages.py")
    import mixest.baselines

    text = (REPO / "docs" / "api" / "baselines.md").read_text()
    assert all(f".{name}\n" in text for name in mixest.baselines.__all__)


def test_rst_roles_become_markdown():
    pytest.importorskip("griffe", reason="griffe comes with mkdocstrings (the docs extra)")
    rst = _load("_griffe_rst").rst_to_markdown
    text = ("Uses :func:`~mixest.mixture.run_vem` and :math:`\\eta_{tn}`.\n\n"
            "    .. math::\n\n        a = b\n        + c\n\n    After.")
    assert rst(text) == ("Uses `mixest.mixture.run_vem` and $\\eta_{tn}$.\n\n"
                         "    $$\n    a = b\n    + c\n    $$\n\n    After.")


def test_docs_build_strictly_with_math_rendered(tmp_path):
    pytest.importorskip("mkdocstrings", reason="the docs site needs mkdocs and mkdocstrings "
                        "(pip install -e '.[dev]')")
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                          str(site)], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    engine = (site / "engine" / "index.html").read_text()
    api = (site / "api" / "tracking" / "index.html").read_text()
    for html in (engine, api):
        assert 'class="arithmatex"' in html  # handed to MathJax, not shown raw
        assert not re.search(r":math:`", html)
    assert "tex-mml-chtml.js" in engine
    assert "MixDVAETracker" in api and "n_sources" in api
    # the gallery's examples ran during the build: their tables and figure, no traceback
    gallery = (site / "gallery" / "index.html").read_text()
    assert "Traceback" not in gallery
    assert gallery.count("<svg") >= 1 and "MixDVAE" in gallery and "NMF" in gallery
