"""Training loop of the DVAE modules (DESIGN §3): Adam, mini-batches, early stopping.

One function, :func:`train_dvae`, used by :class:`mixest.dvae.DVAE` and by
``benchmarks/train_priors.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from mixest.dvae._modules import DVAEModule

__all__ = ["TrainingHistory", "resolve_device", "schedule", "torch_threads", "train_dvae"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's CPU thread count (None: leave it alone).

    The DVAEs are tiny, so their ops are too small to split across threads: on a busy machine
    more threads only add contention (10x slower training was measured with 2 threads on 2
    shared cores).
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def resolve_device(device: str) -> torch.device:
    """Map ``"cpu" | "cuda" | "auto"`` to a torch device (``"auto"``: CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but torch sees no CUDA device.")
    return torch.device(device)


@dataclass
class TrainingHistory:
    """Per-epoch record of a training run."""

    train_loss: list[float] = field(default_factory=list)
    val_elbo: list[float] = field(default_factory=list)
    kl_weight: list[float] = field(default_factory=list)
    feed_prob: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_elbo: float = -math.inf
    seconds: float = 0.0
    n_sequences_seen: int = 0


def schedule(
    epoch: int, *, kl_warmup: int, ss_start: int, ss_end: int, ss_max: float
) -> tuple[float, float]:
    """KL weight and scheduled-sampling probability at ``epoch`` (0-based).

    The KL weight rises linearly to 1 over the first ``kl_warmup`` epochs; the probability of
    feeding the model's own prediction rises linearly from 0 at ``ss_start`` to ``ss_max`` at
    ``ss_end``.
    """
    kl_w = 1.0 if kl_warmup <= 0 else min(1.0, (epoch + 1) / kl_warmup)
    if ss_max <= 0.0 or epoch < ss_start:
        p = 0.0
    elif ss_end <= ss_start:
        p = ss_max
    else:
        p = ss_max * min(1.0, (epoch - ss_start + 1) / (ss_end - ss_start))
    return kl_w, p


@torch.no_grad()
def _mean_elbo(
    module: DVAEModule, X: torch.Tensor, batch_size: int, seed: int, feed_prob: float = 0.0
) -> float:
    """Mean per-frame ELBO (beta 1) with a fixed noise seed."""
    module.eval()
    gen = torch.Generator(device=X.device).manual_seed(seed)
    total = 0.0
    for i in range(0, X.shape[0], batch_size):
        xb = X[i : i + batch_size]
        total += float(module.elbo(xb, 1.0, generator=gen, feed_prob=feed_prob).sum())
    return total / X.shape[0]


def train_dvae(
    module: DVAEModule,
    X_train: torch.Tensor,
    X_val: torch.Tensor | None,
    *,
    n_epochs: int,
    batch_size: int,
    learning_rate: float,
    beta: float,
    kl_warmup: int,
    ss_start: int,
    ss_end: int,
    ss_max: float,
    patience: int | None,
    grad_clip: float | None,
    input_noise: float,
    rng: np.random.RandomState,
    verbose: bool = False,
) -> TrainingHistory:
    """Fit ``module`` in place by maximising the ELBO; leave the best validation weights in it.

    Parameters
    ----------
    module : DVAEModule
        Normalisation buffers already set; on the device of the data.
    X_train, X_val : Tensor of shape (n, T, D)
        Training and (optional) validation sequences, on the module's device.
    n_epochs, batch_size, learning_rate, beta, kl_warmup, ss_start, ss_end, ss_max
        See :class:`mixest.dvae.DVAE`.
    patience : int or None
        Stop after this many epochs without a better validation ELBO (None: never).
    grad_clip : float or None
        Maximum global gradient norm.
    input_noise : float
        Standard deviation (data units) of Gaussian jitter added to every training batch.
    rng : numpy RandomState
        Shuffling; torch's global generator (seeded by the caller) draws the noise.
    verbose : bool
        Show a tqdm progress bar.

    Returns
    -------
    TrainingHistory
    """
    import time

    opt = torch.optim.Adam(module.parameters(), lr=learning_rate)
    n = X_train.shape[0]
    hist = TrainingHistory()
    best_state = None
    since_best = 0
    val_seed = int(rng.randint(2**31 - 1))
    t0 = time.perf_counter()
    bar = tqdm(range(n_epochs), disable=not verbose, desc="DVAE", unit="epoch")
    for epoch in bar:
        kl_w, p = schedule(
            epoch, kl_warmup=kl_warmup, ss_start=ss_start, ss_end=ss_end, ss_max=ss_max
        )
        module.train()
        perm = torch.as_tensor(rng.permutation(n), device=X_train.device)
        epoch_loss = 0.0
        for i in range(0, n, batch_size):
            xb = X_train[perm[i : i + batch_size]]
            if input_noise > 0.0:
                xb = xb + input_noise * torch.randn_like(xb)
            _, recon, kl = module.elbo(xb, beta, feed_prob=p, return_terms=True)
            loss = -(recon - beta * kl_w * kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
            opt.step()
            epoch_loss += loss.item() * xb.shape[0]
        hist.n_sequences_seen += n
        hist.train_loss.append(epoch_loss / n)
        hist.kl_weight.append(kl_w)
        hist.feed_prob.append(p)
        if not math.isfinite(hist.train_loss[-1]):
            raise FloatingPointError(
                f"DVAE training diverged at epoch {epoch} (loss {hist.train_loss[-1]}); "
                "lower learning_rate or set grad_clip."
            )
        if X_val is not None:
            score = _mean_elbo(module, X_val, max(batch_size, 512), val_seed, p)
        else:
            score = -hist.train_loss[-1]
        hist.val_elbo.append(score)
        # Validation runs under the current scheduled-sampling rate (early stopping on the
        # teacher-forced ELBO would undo scheduled sampling), so scores are comparable only
        # once both schedules are complete: before that, keep the latest weights.
        ramping = kl_w < 1.0 or (ss_max > 0.0 and p < ss_max)
        if ramping or score > hist.best_val_elbo or best_state is None:
            hist.best_val_elbo, hist.best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            since_best = 0
        else:
            since_best += 1
        bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}", val_elbo=f"{score:.4g}", ss=f"{p:.2f}")
        if patience is not None and since_best >= patience:
            break
    bar.close()
    module.load_state_dict(best_state)
    module.eval()
    hist.seconds = time.perf_counter() - t0
    return hist
