"""Time from a fresh process to the first tracking result, and where it goes.

Each figure is the median of ``--repeat`` fresh interpreters (no warm module cache):
``import mixest`` alone, ``from mixest import MixDVAETracker``, its largest imported packages
(``python -X importtime``), then ``fit`` (loading the bundled prior, which imports torch) and the
first ``predict`` of 4 synthetic sequences of 60 frames (Numba kernels from their on-disk cache).

    python benchmarks/perf_import.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STEPS = r"""
import json, time
t0 = time.perf_counter()
import mixest
t1 = time.perf_counter()
from mixest import MixDVAETracker
from mixest.datasets import make_tracking_mixture
t2 = time.perf_counter()
X, y = make_tracking_mixture(4, n_frames=60, random_state=0)
est = MixDVAETracker().fit(X)
t3 = time.perf_counter()
est.predict(X)
t4 = time.perf_counter()
print(json.dumps({"import mixest": t1 - t0, "import MixDVAETracker": t2 - t0,
                  "fit (loads the prior and torch)": t3 - t2, "first predict": t4 - t3,
                  "total": t4 - t0}))
"""


def _largest_imports(code: str, n: int = 6) -> list[tuple[str, float]]:
    """Packages imported at the outermost level, by their cumulative import time (seconds,
    nested imports included once), from ``-X importtime``."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True, check=True).stderr
    top: dict[str, float] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, raw = line.split("|")
        name = raw.strip()
        # nested imports are indented by two spaces per level: keep the outermost ones only
        if cumulative.strip().isdigit() and len(raw) - len(raw.lstrip()) == 1:
            root = name.split(".")[0]
            top[root] = top.get(root, 0.0) + int(cumulative) / 1e6
    return sorted(top.items(), key=lambda kv: -kv[1])[:n]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    runs = [json.loads(subprocess.run([sys.executable, "-c", STEPS], capture_output=True,
                                      text=True, check=True).stdout.splitlines()[-1])
            for _ in range(args.repeat)]
    for key in runs[0]:
        print(f"{key:>34}: {statistics.median(r[key] for r in runs):.2f} s (median of "
              f"{args.repeat})")
    print("largest imports of `from mixest import MixDVAETracker` and its fit:")
    code = ("from mixest import MixDVAETracker\nfrom mixest.datasets import make_tracking_mixture\n"
            "MixDVAETracker().fit(make_tracking_mixture(1, n_frames=10, random_state=0)[0])")
    for name, seconds in _largest_imports(code):
        print(f"{name:>34}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
