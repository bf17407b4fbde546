"""How fast this CPU multiplies at the shapes of the audio E-S pass, in three precisions.

Each frame of the assignment VEM's E-S pass multiplies the rows of a batch (12 mixtures per
thread by default) by the weights of each spectral SRNN prior: the frame's features, the
LSTM's input and recurrent shares, and the decoder's two layers. Those products set a floor
under the separation's speed (``docs/separation.md``, "How far this can go on a CPU"). This
script times each of them, one thread, as torch's float32 product (what the separator runs),
bfloat16 product (which returns bfloat16), and int8 product (a dynamically quantised linear
layer, per-channel weights), and prints the multiply-adds per nanosecond and the frame's total
per prior.

    python benchmarks/product_rates.py                # the bundled speech prior's shapes
    python benchmarks/product_rates.py --rows 24
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def best_of(fn, repeats: int = 5, calls: int = 500) -> float:
    """Seconds of one call: the best of ``repeats`` means over ``calls`` calls."""
    for _ in range(50):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def layer_shapes(module) -> dict[str, tuple[int, int]]:
    """``(in, out)`` of each product an E-S frame takes, read from a spectral SRNN module."""
    feature = module.feature_x[0]
    first, *later = [m for m in module.decoder_net if hasattr(m, "weight")]
    hidden = module.rnn.hidden_size
    # the latents' share of the decoder's first layer is computed for all frames at once
    return {"features": (feature.in_features, feature.out_features),
            "LSTM input share": (module.rnn.input_size, 4 * hidden),
            "LSTM recurrent share": (hidden, 4 * hidden),
            "decoder layer 1, LSTM share": (hidden, first.out_features),
            **{f"decoder layer {i + 2}": (m.in_features, m.out_features)
               for i, m in enumerate(later)}}


def time_products(rows: int, n_in: int, n_out: int) -> dict[str, float]:
    """Seconds of one ``(rows, n_in) x (n_in, n_out)`` product (bias added) in float32,
    bfloat16 and int8, one thread."""
    import torch

    x = torch.randn(rows, n_in)
    w = torch.randn(n_out, n_in) / n_in**0.5
    b = torch.randn(n_out)
    out = torch.empty(rows, n_out)
    xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
    with warnings.catch_warnings():  # torch marks its quantised tensors deprecated
        warnings.simplefilter("ignore")
        q = torch.ao.nn.quantized.dynamic.Linear(n_in, n_out)
        scale = w.abs().amax(1) / 127
        q.set_weight_bias(torch.quantize_per_channel(
            w, scale, torch.zeros(n_out, dtype=torch.long), 0, torch.qint8), b)
    return {"float32": best_of(lambda: torch.addmm(b, x, w.t(), out=out)),
            "bfloat16": best_of(lambda: torch.addmm(bb, xb, wb.t())),
            "int8": best_of(lambda: q(x))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="speech", help="a bundled prior's name (default: speech)")
    p.add_argument("--rows", type=int, default=12, help="rows per product (default: 12)")
    args = p.parse_args(argv)
    if args.rows < 1:
        p.error(f"--rows must be a positive integer, got {args.rows}")
    import torch

    from mixest.dvae import DVAE

    torch.set_num_threads(1)
    torch.manual_seed(0)
    shapes = layer_shapes(DVAE.from_pretrained(args.prior).module_)
    print(f"{args.rows} rows, one thread, the '{args.prior}' prior's products "
          "(multiply-adds per ns; microseconds)")
    print("product | in x out | float32 | bfloat16 | int8 | faster of float32 and int8")
    totals = {"float32": 0.0, "best": 0.0}
    for name, (n_in, n_out) in shapes.items():
        seconds = time_products(args.rows, n_in, n_out)
        macs = args.rows * n_in * n_out
        rate = {k: macs / v / 1e9 for k, v in seconds.items()}
        totals["float32"] += seconds["float32"]
        totals["best"] += min(seconds["float32"], seconds["int8"])
        print(f"{name} | {n_in} x {n_out} | " + " | ".join(
            f"{rate[k]:.1f}; {seconds[k] * 1e6:.1f}" for k in seconds)
            + f" | {min(seconds['float32'], seconds['int8']) * 1e6:.1f}")
    print(f"one frame of one prior: float32 {totals['float32'] * 1e6:.1f} us, the faster of "
          f"float32 and int8 per product {totals['best'] * 1e6:.1f} us "
          f"({totals['best'] / totals['float32']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
