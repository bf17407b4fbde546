"""Evaluate the bundled "mot" DVAE prior on held-out synthetic trajectories.

Usage::

    python benchmarks/eval_priors.py [--n-sequences 2000] [--plot docs/images/dvae_mot_samples.png]
    python benchmarks/eval_priors.py --prior /tmp/candidate.pt   # a saved DVAE (recipe search)
    python benchmarks/eval_priors.py audio ...   # the spectral priors (eval_audio_priors.py)

Reports, on trajectories drawn with a seed the training never used:

- one-step-ahead prediction error of the prior (causal: the recurrence reads x_{<t}, z_t is
  the prior mean given the previous prior mean, nothing from x_{t:T} leaks in) against a
  constant-velocity extrapolation 2 x_{t-1} - x_{t-2} and a static x_{t-1};
- the same error when the predictors read boxes jittered by ``--input-jitter`` of the box
  size (the tracker feeds the prior noisy posterior means; targets stay clean);
- calibration of the prior's predictive variance (mean squared z-score, share inside 2 sigma);
- the per-frame ELBO of the trained SRNN against the same SRNN untrained (same architecture,
  same data-derived normalisation buffers, fresh random weights), on the clean held-out data
  and, for a prior trained with ``TrainingNoise``, with its inputs jittered as in training
  (its training objective: jittered inputs scored against clean targets);
- a PNG of sampled trajectories next to real synthetic ones.

A prior trained with ``TrainingNoise(level_input=True)`` is told the level of what it reads: 0
for the exact held-out boxes (the clean rows, the clean ELBO, the samples), ``--input-jitter``
divided by its ``noise.std`` for the jittered rows, 1 for the ELBO on inputs jittered as in
training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _errors(pred: np.ndarray, X: np.ndarray) -> dict[str, float]:
    """Mean absolute and root-mean-square error over frames t >= 2 (all predictors defined)."""
    e = pred[:, 2:] - X[:, 2:]
    px = e * np.array([1920.0, 1080.0, 1920.0, 1080.0])  # in pixels of a 1920x1080 frame
    return {
        "MAE": float(np.abs(e).mean()),
        "RMSE": float(np.sqrt((e**2).mean())),
        "MAE_px": float(np.abs(px).mean()),
        "p99_px": float(np.percentile(np.abs(px), 99)),
    }


def _constant_acceleration(X: np.ndarray) -> np.ndarray:
    """``3 x_{t-1} - 3 x_{t-2} + x_{t-3}`` (constant velocity at t = 2, where it is undefined)."""
    pred = np.concatenate([X[:, :2], 2 * X[:, 1:-1] - X[:, :-2]], 1)
    pred[:, 3:] += X[:, 2:-1] - 2 * X[:, 1:-2] + X[:, :-3]
    return pred


def _denoising_elbo(module, X: np.ndarray, X_cond: np.ndarray, **level) -> float:
    """Mean per-frame ELBO of clean ``X`` conditioned on ``X_cond`` (fixed seed, beta 1)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.as_tensor(X, dtype=torch.float32)
    xc = torch.as_tensor(X_cond, dtype=torch.float32)
    with torch.no_grad():
        return float(module.eval().elbo(x, 1.0, generator=gen, x_cond=xc, **level).mean())


def _plot(prior, X: np.ndarray, path: Path, seed: int, **level) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    S = prior.sample(12, 60, random_state=seed, **level)
    C = prior.sample(12, 60, random_state=seed, X_start=X[:12, :2], **level)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), sharex=True, sharey=True)
    panels = (
        (axes[0], X[:12], "synthetic trajectories (held out)"),
        (axes[1], C, "prior continuations of their first 2 frames"),
        (axes[2], S, "unconditional prior samples"),
    )
    for ax, data, title in panels:
        for i, seq in enumerate(data):
            c = plt.cm.tab20(i % 20)
            cx, cy = (seq[:, 0] + seq[:, 2]) / 2, (seq[:, 1] + seq[:, 3]) / 2
            ax.plot(cx, cy, color=c, lw=1.5)
            ax.plot(cx[:1], cy[:1], "o", color=c, ms=3)
            for t in (0, 59):
                x1, y1, x2, y2 = seq[t]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=c,
                                       lw=0.8, alpha=0.5 if t == 0 else 0.9))
        ax.set_title(title)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)  # image convention: y down
        ax.set_aspect(1080 / 1920)
        ax.set_xlabel("x (image width = 1)")
    axes[0].set_ylabel("y (image height = 1, down)")
    fig.suptitle('DVAE.from_pretrained("mot"): 60-frame boxes, centre paths (dot = start), '
                 "boxes at frames 1 and 60")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["audio"]:  # the spectral priors have their own script
        sys.path.insert(0, str(REPO / "benchmarks"))
        from eval_audio_priors import main as eval_audio

        return eval_audio(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-sequences", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20231, help="held-out data seed")
    parser.add_argument("--plot", type=Path, default=None, help="write the samples PNG here")
    parser.add_argument("--input-jitter", type=float, default=0.04,
                        help="jitter of the noisy-input rows, as a fraction of the box size")
    parser.add_argument("--prior", default="mot",
                        help="bundled prior name (default mot) or a saved DVAE .pt file")
    args = parser.parse_args(argv)

    import torch

    from mixest.datasets import make_trajectories
    from mixest.dvae import DVAE, build_module

    torch.set_num_threads(1)
    def load():
        if args.prior.endswith(".pt"):
            return DVAE.load(args.prior)
        return DVAE.from_pretrained(args.prior)

    prior = load()
    X = make_trajectories(args.n_sequences, n_frames=60, random_state=args.seed)
    print(f"held-out: {X.shape[0]} synthetic trajectories of {X.shape[1]} frames (seed "
          f"{args.seed}; the prior was trained on seed 0)")

    # A prior with a noise-level input is told how noisy each input is: 0 for the exact
    # held-out boxes, the jitter as a fraction of its training noise.std for jittered ones.
    noise = prior.noise_
    reads_level = bool(getattr(prior.module_, "noise_level_input", False))

    def at(level: float) -> dict:
        return {"level": level} if reads_level else {}

    jitter_level = args.input_jitter / noise.std if reads_level else None
    if reads_level:
        print(f"noise-level input: level 0 on exact boxes, {jitter_level:g} (= "
              f"{args.input_jitter:g} / noise.std {noise.std:g}) on jittered ones")
    mean, var = prior.predict_next(X, **at(0.0))
    rows = {
        "DVAE prior (causal one-step mean)": _errors(mean, X),
        "constant velocity 2x[t-1]-x[t-2]": _errors(
            np.concatenate([X[:, :2], 2 * X[:, 1:-1] - X[:, :-2]], 1), X
        ),
        "constant acceleration 3x[t-1]-3x[t-2]+x[t-3]": _errors(_constant_acceleration(X), X),
        "static x[t-1]": _errors(np.concatenate([X[:, :1], X[:, :-1]], 1), X),
    }
    print("\none-step-ahead prediction error, frames 3..60 (units: image-normalised; px of "
          "1920x1080)")
    print(f"{'predictor':44s} {'MAE':>10s} {'RMSE':>10s} {'MAE px':>8s} {'p99 px':>8s}")
    for name, r in rows.items():
        print(f"{name:44s} {r['MAE']:10.3e} {r['RMSE']:10.3e} {r['MAE_px']:8.3f} "
              f"{r['p99_px']:8.3f}")
    # The tracker feeds the prior noisy posterior means, not clean boxes: the same predictors
    # reading jittered boxes (std = jitter x box size per coordinate), scored on the clean ones.
    rng = np.random.RandomState(args.seed + 1)
    wh = np.concatenate([X[..., 2:] - X[..., :2]] * 2, -1)
    Xn = X + args.input_jitter * wh * rng.standard_normal(X.shape)
    mean_n, var_n = prior.predict_next(Xn, **at(jitter_level))
    noisy = {
        "DVAE prior (causal one-step mean)": _errors(mean_n, X),
        "constant velocity 2x[t-1]-x[t-2]": _errors(
            np.concatenate([Xn[:, :2], 2 * Xn[:, 1:-1] - Xn[:, :-2]], 1), X
        ),
        "static x[t-1]": _errors(np.concatenate([Xn[:, :1], Xn[:, :-1]], 1), X),
    }
    print(f"\nsame, inputs jittered by {args.input_jitter:g} x box size (targets clean)")
    for name, r in noisy.items():
        print(f"{name:44s} {r['MAE']:10.3e} {r['RMSE']:10.3e} {r['MAE_px']:8.3f} "
              f"{r['p99_px']:8.3f}")
    z2 = ((mean[:, 2:] - X[:, 2:]) ** 2 / var[:, 2:])
    print(f"\npredictive std: median {np.sqrt(np.median(var[:, 2:])):.2e} "
          f"(floor min_std = {prior.network_.min_std}); mean squared z-score {z2.mean():.3f}; "
          f"share of errors within 2 std {np.mean(z2 < 4):.4f}")
    z2n = ((mean_n[:, 2:] - X[:, 2:]) ** 2 / var_n[:, 2:])
    print(f"jittered inputs: predictive std median {np.sqrt(np.median(var_n[:, 2:])):.2e}; "
          f"mean squared z-score {z2n.mean():.3f}; share within 2 std {np.mean(z2n < 4):.4f}")

    trained = prior.score(X, **at(0.0))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = build_module(prior.module_.config())
    # Untrained = same architecture and data-derived buffers, random weights.
    buffers = {k: v for k, v in prior.module_.state_dict().items()
               if k in dict(prior.module_.named_buffers())}
    fresh.load_state_dict({**fresh.state_dict(), **buffers})
    untrained_est = load()
    untrained_est.module_ = fresh.eval()
    untrained = untrained_est.score(X, **at(0.0))
    print(f"\nper-frame ELBO (nats, beta 1, teacher forcing): trained {trained:.4f}, "
          f"untrained {untrained:.4f}, difference {trained - untrained:+.4f}")
    if noise is not None:  # the training objective: jittered inputs, clean targets
        std = noise.std * (wh if noise.relative else 1.0)
        Xj = X + std * np.random.RandomState(args.seed + 2).standard_normal(X.shape)
        tj = _denoising_elbo(prior.module_, X, Xj, **at(1.0))
        uj = _denoising_elbo(fresh, X, Xj, **at(1.0))
        unit = " x box size" if noise.relative else ""
        print(f"per-frame ELBO on inputs jittered by noise.std={noise.std:g}{unit}, clean "
              f"targets (as in training): trained {tj:.4f}, untrained {uj:.4f}, difference "
              f"{tj - uj:+.4f}")
    print(f"validation objective recorded at training (final scheduled-sampling rate): "
          f"{prior.history_.best_val_elbo:.4f} at epoch {prior.history_.best_epoch}")
    if args.plot is not None:
        _plot(prior, X, args.plot, seed=1, **at(0.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
