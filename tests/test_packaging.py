"""Packaging: the torch-free import, the package list, the wheel, the README/CI commands."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # standard library from Python 3.11

REPO = Path(__file__).resolve().parents[1]
LIGHT_PACKAGES = [
    "mixest",
    "mixest.base",
    "mixest.baselines",
    "mixest.datasets",
    "mixest.metrics",
    "mixest.separation",
    "mixest.tracking",
]


def test_import_mixest_does_not_import_torch():
    code = (
        "import sys\n"
        f"for name in {LIGHT_PACKAGES!r}:\n"
        "    __import__(name)\n"
        "heavy = sorted(m for m in ('torch', 'numba') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {LIGHT_PACKAGES} imported {out.stdout.strip()}"


@pytest.mark.parametrize("package", [*LIGHT_PACKAGES[2:], "mixest.dvae", "mixest.mixture"])
def test_every_lazy_name_resolves(package):
    module = importlib.import_module(package)
    for name in getattr(module, "__all__", []):
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "mixest").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk | {"mixest.baselines"} == listed


def test_wheel_contains_baselines_and_pretrained(tmp_path):
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "src"
    shutil.copytree(
        REPO, source,
        ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*cache"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("mixest-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mixest/baselines/__init__.py" in names
    assert "mixest/base.py" in names
    bundled = sorted(p.name for p in (REPO / "mixest" / "pretrained").glob("*.pt"))
    for name in bundled:
        assert f"mixest/pretrained/{name}" in names


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"^```bash\n(.*?)\n```", text, flags=re.M | re.S)


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    install = re.search(r"<!-- install -->\n```bash\n(.+?)\n```", readme).group(1)
    tests = re.search(r"<!-- test -->\n```bash\n(.+?)\n```", readme).group(1)
    ci_lines = [line.strip() for line in ci.splitlines()]
    assert install in ci_lines and tests in ci_lines
    assert ci_lines.index("pip install torch==2.13.0") < ci_lines.index(install)
