"""Write the API reference pages (docs/api/*.md) from the packages' public names.

Run ``python docs/_api_pages.py`` after adding a public name; ``tests/test_docs_site.py`` checks
that the pages list every name of every package's ``__all__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: page -> (title, package, one-line description)
PAGES = {
    "tracking": ("Tracking", "mixest.tracking",
                 "Trackers, box conventions, MOTChallenge I/O, windows and MOT metrics."),
    "separation": ("Separation", "mixest.separation",
                   "Separators, audio I/O, the STFT transformer and separation metrics."),
    "baselines": ("Baselines", "mixest.baselines",
                  "The trackers and separators MixDVAE is compared with."),
    "dvae": ("DVAE priors", "mixest.dvae", "The DVAE estimator, its settings and recipes."),
    "mixture": ("VEM engine", "mixest.mixture",
                "The variational EM loop and its two interfaces, observation models and "
                "dynamics."),
    "datasets": ("Datasets", "mixest.datasets", "Synthetic generators and real-data loaders."),
}


def _source_path(package: str, name: str) -> str:
    """Where ``name`` is defined, as a dotted path griffe can find statically: the module the
    package's lazy map (:func:`mixest._lazy.attach`) names (``mixest.baselines`` is the folder
    ``baselines``)."""
    lazy = inspect.getclosurevars(importlib.import_module(package).__getattr__).nonlocals
    module = importlib.util.resolve_name(lazy["names"][name], package)
    return f"{module}.{name}".replace("mixest.baselines.", "baselines.", 1)


def main() -> None:
    for page, (title, package, about) in PAGES.items():
        names = list(importlib.import_module(package).__all__)
        lines = [f"# {title}: `{package}`", "", about, ""]
        for name in names:
            lines += [f"::: {_source_path(package, name)}", ""]
        (HERE / "api" / f"{page}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
