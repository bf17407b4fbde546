"""DVAE speed and size: training throughput, per-step decoding cost, the bundled prior's size.

Usage::

    python benchmarks/perf_dvae.py [--device cpu|cuda|auto] [--threads 1] [--n-sequences 1024]

Prints

- training throughput in sequences/s (60-frame box trajectories, batch 256) for the SRNN and
  the VRNN, with teacher forcing and with scheduled sampling (the step-by-step pass);
- the cost of one ``decode_step`` (what the VEM's E-S step calls once per frame) and of
  ``encode`` on a batch of sequences;
- the bundled "mot" prior's size: parameters, float32 bytes, file bytes;
- spectral training throughput in frames/s (the speech and flute priors' SRNN: 513-bin power
  spectra, sequences of 50 frames, batch 256) and those priors' sizes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _throughput(module, X, batch_size: int, feed_prob: float, n_batches: int) -> float:
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    n = 0
    # one warm-up batch (allocations, CUDA kernels) outside the timing
    for i in range(n_batches + 1):
        if i == 1:
            if X.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        xb = X[(i * batch_size) % X.shape[0] :][:batch_size]
        loss = -module.elbo(xb, feed_prob=feed_prob).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += xb.shape[0] if i > 0 else 0
    if X.is_cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-sequences", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=4, help="timed batches per setting")
    args = parser.parse_args(argv)

    import torch

    from mixest.datasets import make_trajectories
    from mixest.dvae import DVAE, SRNN, VRNN, resolve_device
    from mixest.pretrained._registry import weight_path

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU thread(s)")
    X = torch.as_tensor(make_trajectories(args.n_sequences, n_frames=60, random_state=0),
                        dtype=torch.float32, device=device)

    print("\ntraining throughput (sequences/s, T=60, D=4, batch 256, paper sizes)")
    for cls in (SRNN, VRNN):
        torch.manual_seed(0)
        m = cls(4).to(device)
        m.set_normalization(X, 5e-4)
        for p, label in ((0.0, "teacher forcing"), (0.5, "scheduled sampling")):
            r = _throughput(m, X, 256, p, args.batches)
            print(f"  {cls.__name__:5s} {label:20s} {r:9.0f}")

    prior = DVAE.from_pretrained("mot")
    m = prior.module_.to(device)
    with torch.no_grad():
        for B in (3, 256):
            state = m.initial_state(B)
            z = torch.zeros(B, m.z_dim, device=device)
            x = X[:B, 0] if B <= X.shape[0] else X[:1, 0].expand(B, 4)
            m.decode_step(None, z, state)
            t0 = time.perf_counter()
            for _ in range(200):
                _, _, state = m.decode_step(x, z, state)
            dt = (time.perf_counter() - t0) / 200
            xs = X[:B] if B <= X.shape[0] else X[:1].expand(B, -1, -1)
            t0 = time.perf_counter()
            m.encode(xs)
            de = time.perf_counter() - t0
            print(f"\nbatch {B:4d}: decode_step {dt * 1e6:7.1f} us/frame; "
                  f"encode (T=60) {de * 1e3:7.2f} ms")

    for name in ("mot", "speech", "flute"):
        try:
            path = weight_path(name)
        except (ValueError, FileNotFoundError) as exc:
            print(f"\nbundled prior {name!r}: {exc}")
            continue
        module = DVAE.load(path).module_
        n_params = sum(p.numel() for p in module.parameters())
        n_buf = sum(b.numel() for b in module.buffers())
        print(f"\nbundled prior {name!r}: {n_params} parameters ({4 * n_params} bytes float32) "
              f"+ {n_buf} buffer values; file {path.name} {path.stat().st_size} bytes")

    print("\nspectral training throughput (frames/s, T=50, 513 bins, batch 256, paper sizes)")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_priors import _spectral_network

    net = _spectral_network()
    spectra = torch.rand(512, 50, 513, generator=torch.Generator().manual_seed(0)).to(device)
    torch.manual_seed(0)
    m = SRNN(513, z_dim=net.z_dim, rnn_dim=net.rnn_dim, dense_dims=net.dense_dims,
             likelihood="itakura_saito", residual_order=0, latent_dims=net.latent_dims,
             encoder_input=net.encoder_input).to(device)
    m.set_normalization(spectra)
    r = _throughput(m, spectra, 256, 0.0, args.batches)
    print(f"  SRNN teacher forcing {r * 50:9.0f} frames/s ({r:.0f} sequences/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
