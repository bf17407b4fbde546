"""Train the bundled Deep AR prior ``"mot-ar"`` (mixest/pretrained/deep_ar_mot.pt).

The network of :class:`mixest.baselines.DeepARTracker` is trained on the synthetic single-source
box trajectories of the DVAE prior (:func:`mixest.datasets.make_trajectories`, 60 frames,
image-normalised ``xyxy``), with early stopping on a held-out split, and evaluated on fresh
trajectories drawn with another seed. It runs on the CPU in a few minutes::

    nohup nice python benchmarks/train_deep_ar.py > train_deep_ar.log 2>&1 &

The script prints the validation and test one-step NLL (per frame and coordinate, normalised
units) and the exact command that produced the weights.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=8000, help="training trajectories")
    parser.add_argument("--n-test", type=int, default=1000, help="test trajectories")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--input-noise", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=REPO / "mixest" / "pretrained" / "deep_ar_mot.pt",
        help="output weight file",
    )
    args = parser.parse_args(argv)

    import torch

    from mixest.baselines._deep_ar import _module_from_weights, _nll, train_deep_ar
    from mixest.datasets import make_trajectories

    command = "python benchmarks/train_deep_ar.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    tic = time.perf_counter()
    rng = np.random.RandomState(args.seed)
    X = make_trajectories(args.n_train, 60, random_state=rng)
    weights, history = train_deep_ar(
        X,
        hidden_size=args.hidden_size,
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        input_noise=args.input_noise,
        random_state=rng,
        verbose=True,
    )
    test = make_trajectories(args.n_test, 60, random_state=args.seed + 1000)
    with torch.no_grad():
        test_nll = float(
            _nll(_module_from_weights(weights), torch.as_tensor(test, dtype=torch.float32))
        )
    seconds = time.perf_counter() - tic
    meta = {
        "command": command.strip(),
        "best_epoch": int(history["best_epoch"]),
        "val_nll": float(history["best_val_nll"]),
        "test_nll": test_nll,
        "train_nll": [float(v) for v in history["train_nll"]],
        "val_nll_curve": [float(v) for v in history["val_nll"]],
        "seconds": seconds,
        "n_train": args.n_train,
        "torch": str(torch.__version__),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "hidden_size": weights["hidden_size"],
            "state_dict": {k: torch.as_tensor(v) for k, v in weights["state_dict"].items()},
            "meta": meta,
        },
        args.out,
    )
    n_params = sum(v.size for v in weights["state_dict"].values())
    print(f"best epoch {meta['best_epoch']}, validation NLL {meta['val_nll']:.4f}, "
          f"test NLL {test_nll:.4f} (per frame and coordinate), {n_params} parameters, "
          f"{seconds:.0f} s")
    print(f"saved {args.out} ({args.out.stat().st_size} bytes)")
    print(f"command: {meta['command']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
