"""Training loop of the DVAE modules: Adam, mini-batches, KL warm-up, early stopping.

One function, :func:`train_dvae`, used by :class:`mixest.dvae.DVAE` (``docs/dvae.md`` describes
the objective and the recipe of the bundled prior).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from mixest.dvae._config import ScheduledSampling, TrainingNoise
from mixest.dvae._modules import DVAEModule

__all__ = [
    "TrainingHistory",
    "jitter",
    "learning_rate_at",
    "resolve_device",
    "schedule",
    "torch_threads",
    "train_dvae",
]


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
    learning_rate: list[float] = field(default_factory=list)
    feed_prob: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_elbo: float = -math.inf
    seconds: float = 0.0
    n_sequences_seen: int = 0


def schedule(
    epoch: int, *, kl_warmup: int, scheduled_sampling: ScheduledSampling | None = None
) -> tuple[float, float]:
    """KL weight and scheduled-sampling probability at ``epoch`` (0-based).

    The KL weight rises linearly to 1 over the first ``kl_warmup`` epochs; the probability of
    feeding the model's own prediction follows ``scheduled_sampling`` (0 without it).
    """
    kl_w = 1.0 if kl_warmup <= 0 else min(1.0, (epoch + 1) / kl_warmup)
    p = 0.0 if scheduled_sampling is None else scheduled_sampling.probability(epoch)
    return kl_w, p


def learning_rate_at(
    epoch: int, *, n_epochs: int, learning_rate: float, final_learning_rate: float | None
) -> float:
    """Learning rate of ``epoch`` (0-based): constant, or annealed on a half cosine.

    With ``final_learning_rate`` the rate falls from ``learning_rate`` at the first epoch to
    ``final_learning_rate`` at the last one (``n_epochs - 1``).
    """
    if final_learning_rate is None or n_epochs <= 1:
        return learning_rate
    progress = epoch / (n_epochs - 1)
    return final_learning_rate + 0.5 * (learning_rate - final_learning_rate) * (
        1.0 + math.cos(math.pi * progress)
    )


def jitter(
    x: torch.Tensor,
    std: float,
    relative: bool = False,
    generator: torch.Generator | None = None,
    random_level: bool = False,
    clean_fraction: float = 0.0,
    return_level: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``x`` plus Gaussian noise: std ``std`` in data units, or relative to the box size.

    The primitive behind :class:`~mixest.dvae.TrainingNoise` (whose fields it takes).

    Parameters
    ----------
    x : Tensor of shape (..., T, D)
        Sequences in data units; with ``relative`` boxes ``(x1, y1, x2, y2)`` (D = 4).
    std : float
        Noise standard deviation (data units), or with ``relative`` the fraction of the box
        width (x coordinates) and height (y coordinates) of the same frame.
    relative : bool, default=False
    generator : torch.Generator, optional
        Noise source (default: torch's global generator).
    random_level : bool, default=False
        Scale the noise of each sequence (each index of the leading axes but the last two) by
        its own level drawn uniformly from [0, 1], so that clean and noisy sequences are mixed.
    clean_fraction : float, default=0.0
        The share of sequences (each an independent draw) whose level is 0, left exactly clean.
    return_level : bool, default=False
        Also return each sequence's noise level (1 without ``random_level``, 0 for the clean
        ones), the number a module built with ``noise_level_input=True`` reads.

    Returns
    -------
    Tensor
        A new tensor of the shape of ``x``.
    level : Tensor of shape ``x.shape[:-2]``, only with ``return_level``
    """
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    shape = x.shape[:-2] + (1, 1)
    if random_level:
        level = torch.rand(shape, dtype=x.dtype, device=x.device, generator=generator)
    else:
        level = torch.ones(shape, dtype=x.dtype, device=x.device)
    if clean_fraction > 0.0:  # (no extra draw otherwise: recipes without it stay reproducible)
        keep = torch.rand(shape, dtype=x.dtype, device=x.device, generator=generator)
        level = level * (keep >= clean_fraction)
    if random_level or clean_fraction > 0.0:
        noise = noise * level
    if relative:
        if x.shape[-1] != 4:
            raise ValueError(
                f"relative input noise needs boxes (x1, y1, x2, y2), D = 4; got D = {x.shape[-1]}"
            )
        wh = (x[..., 2:] - x[..., :2]).abs()
        out = x + std * torch.cat([wh, wh], -1) * noise
    else:
        out = x + std * noise
    return (out, level[..., 0, 0]) if return_level else out


@torch.no_grad()
def _mean_elbo(
    module: DVAEModule,
    X: torch.Tensor,
    batch_size: int,
    seed: int,
    feed_prob: float = 0.0,
    X_cond: torch.Tensor | None = None,
    levels: torch.Tensor | None = None,
    predictive_weight: float = 0.0,
    exact: torch.Tensor | None = None,
) -> float:
    """The objective that training maximises, on ``X``: mean per-frame ELBO (beta 1, fixed
    noise seed; conditioned on ``X_cond``, whose noise levels are ``levels``) minus
    ``predictive_weight`` times the one-step absolute error on the sequences flagged ``exact``
    (all when None)."""
    module.eval()
    gen = torch.Generator(device=X.device).manual_seed(seed)
    total = 0.0
    for i in range(0, X.shape[0], batch_size):
        xb = X[i : i + batch_size]
        cb = None if X_cond is None else X_cond[i : i + batch_size]
        lb = None if levels is None else levels[i : i + batch_size]
        terms = module.elbo(xb, 1.0, generator=gen, feed_prob=feed_prob, x_cond=cb, level=lb,
                            return_terms=True, predictive=predictive_weight > 0)
        score = terms[0]
        if predictive_weight > 0:
            w = 1.0 if exact is None else exact[i : i + batch_size].to(xb.dtype)
            score = score - predictive_weight * w * terms[3]
        total += float(score.sum())
    return total / X.shape[0]


def train_dvae(
    module: DVAEModule,
    X_train: torch.Tensor,
    X_val: torch.Tensor | None,
    *,
    n_epochs: int,
    batch_size: int,
    learning_rate: float,
    rng: np.random.RandomState,
    final_learning_rate: float | None = None,
    beta: float = 1.0,
    kl_warmup: int = 0,
    scheduled_sampling: ScheduledSampling | None = None,
    noise: TrainingNoise | None = None,
    predictive_weight: float = 0.0,
    patience: int | None = None,
    grad_clip: float | None = None,
    verbose: bool = False,
) -> TrainingHistory:
    """Fit ``module`` in place by maximising the ELBO; leave the best validation weights in it.

    Parameters
    ----------
    module : DVAEModule
        Normalisation buffers already set; on the device of the data.
    X_train, X_val : Tensor of shape (n, T, D)
        Training and (optional) validation sequences, on the module's device.
    n_epochs, batch_size, learning_rate, final_learning_rate, beta, kl_warmup
        See :class:`mixest.dvae.DVAE` (``final_learning_rate``: :func:`learning_rate_at`).
    rng : numpy RandomState
        Shuffling; torch's global generator (seeded by the caller) draws the noise.
    scheduled_sampling : ScheduledSampling or None, default=None
        Feed the model's own predictions into the recurrence (see
        :class:`~mixest.dvae.ScheduledSampling`); None: teacher forcing throughout.
    noise : TrainingNoise or None, default=None
        Denoising training (checked by the caller): each batch's conditioning sequence, which
        the recurrence, the encoder and the residual base read, is jittered while the targets
        stay clean; the validation objective is computed from one fixed jittered copy of the
        validation inputs. A module built with ``noise_level_input=True`` reads each
        sequence's level. None: the plain ELBO on the data as given.
    predictive_weight : float, default=0.0
        Weight of the auxiliary one-step absolute error in the training loss, on the sequences
        whose inputs are exact (see :class:`mixest.dvae.DVAE`); the validation score of early
        stopping is the same objective.
    patience : int or None, default=None
        Stop after this many epochs without a better validation objective (without
        ``X_val``: training objective). None: never.
    grad_clip : float or None, default=None
        Maximum global gradient norm.
    verbose : bool, default=False
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
    # a noise_level_input module reads each sequence's jitter level (0: clean validation data)
    read_level = getattr(module, "noise_level_input", False)
    if read_level and noise is None:
        raise ValueError("a module with noise_level_input=True needs training noise: it reads "
                         "the level of the training jitter.")
    add_noise = None if noise is None else functools.partial(
        jitter, std=noise.std, relative=noise.relative, random_level=noise.random_level,
        clean_fraction=noise.clean_fraction, return_level=True,
    )
    X_val_cond = val_levels = None
    if X_val is not None and add_noise is not None:
        gen = torch.Generator(device=X_val.device).manual_seed(val_seed + 1)
        X_val_cond, val_levels = add_noise(X_val, generator=gen)
    if X_val is not None and read_level and X_val_cond is None:
        val_levels = torch.zeros(X_val.shape[0], dtype=X_val.dtype, device=X_val.device)
    ss_max = 0.0 if scheduled_sampling is None else scheduled_sampling.max_prob
    t0 = time.perf_counter()
    bar = tqdm(range(n_epochs), disable=not verbose, desc="DVAE", unit="epoch")
    for epoch in bar:
        kl_w, p = schedule(epoch, kl_warmup=kl_warmup, scheduled_sampling=scheduled_sampling)
        lr = learning_rate_at(epoch, n_epochs=n_epochs, learning_rate=learning_rate,
                              final_learning_rate=final_learning_rate)
        for group in opt.param_groups:
            group["lr"] = lr
        module.train()
        perm = torch.as_tensor(rng.permutation(n), device=X_train.device)
        epoch_loss = 0.0
        for i in range(0, n, batch_size):
            xb = X_train[perm[i : i + batch_size]]
            xc = level = None
            if add_noise is not None:  # denoising: jittered inputs, clean targets
                xc, level = add_noise(xb)
            terms = module.elbo(xb, beta, feed_prob=p, return_terms=True, x_cond=xc,
                                level=level if read_level else None,
                                predictive=predictive_weight > 0)
            objective = terms[1] - beta * kl_w * terms[2]
            if predictive_weight > 0:  # on the sequences whose inputs are exact
                exact = 1.0 if level is None else (level == 0).to(objective.dtype)
                objective = objective - predictive_weight * exact * terms[3]
            loss = -objective.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
            opt.step()
            epoch_loss += loss.item() * xb.shape[0]
        hist.n_sequences_seen += n
        hist.train_loss.append(epoch_loss / n)
        hist.kl_weight.append(kl_w)
        hist.learning_rate.append(lr)
        hist.feed_prob.append(p)
        if not math.isfinite(hist.train_loss[-1]):
            raise FloatingPointError(
                f"DVAE training diverged at epoch {epoch} (loss {hist.train_loss[-1]}); "
                "lower learning_rate or set grad_clip."
            )
        if X_val is not None:
            score = _mean_elbo(module, X_val, max(batch_size, 512), val_seed, p, X_val_cond,
                               val_levels if read_level else None, predictive_weight,
                               None if X_val_cond is None else val_levels == 0)
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
