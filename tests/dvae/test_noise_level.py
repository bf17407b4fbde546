"""Noise-level input (modules with ``noise_level_input=True``, trained by
``TrainingNoise(level_input=True)``): the recurrence reads how noisy its inputs are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixest.dvae import DVAE, SRNN, VRNN, Network, TrainingNoise
from mixest.dvae._training import jitter, train_dvae


def _module(cls, **kw):
    torch.manual_seed(0)
    m = cls(3, z_dim=2, rnn_dim=5, dense_dims=(6, 4), noise_level_input=True, **kw)
    g = torch.Generator().manual_seed(0)
    x = torch.cumsum(0.1 * torch.randn(4, 7, 3, generator=g), 1) + 0.5
    m.set_normalization(x, 1e-3)
    with torch.no_grad():  # larger weights: the level must visibly change the outputs
        for p in m.parameters():
            p.mul_(2.0)
    return m.eval(), x


@pytest.mark.parametrize("cls", [SRNN, VRNN])
def test_per_sequence_levels_equal_one_call_per_level(cls):
    m, x = _module(cls)
    levels = torch.tensor([0.0, 0.3, 1.0, 2.0])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        batch = m.run(x, sample=False, level=levels)
        fed = m._run_fed(x, m.encoder_summary(x, levels), False, gen, None, 1e-30, levels)
        mean, var = m.predict_next(x, level=levels)
        for i, lv in enumerate(levels.tolist()):
            one = m.run(x[i : i + 1], sample=False, level=lv)
            for k in ("z_mean", "x_mean", "x_var", "prior_mean"):
                torch.testing.assert_close(batch[k][i : i + 1], one[k])
            m_i, v_i = m.predict_next(x[i : i + 1], level=lv)
            torch.testing.assert_close(mean[i : i + 1], m_i)
            torch.testing.assert_close(var[i : i + 1], v_i)
    # the teacher-forced pass (features of the whole sequence at once) equals the stepped pass
    for k in batch:
        torch.testing.assert_close(batch[k], fed[k])
    # the level is read: 0 and 1 give different predictions from the same frames
    at_one = m.run(x[:1], sample=False, level=1.0)["x_mean"][0]
    assert (batch["x_mean"][0] - at_one).abs().max() > 1e-4


@pytest.mark.parametrize("cls", [SRNN, VRNN])
def test_default_level_is_the_buffer(cls):
    m, x = _module(cls)
    with torch.no_grad():
        m.noise_level.fill_(0.4)
        torch.testing.assert_close(m.predict_next(x)[0], m.predict_next(x, level=0.4)[0])
        torch.testing.assert_close(m.encode(x)[1], m.encode(x, level=0.4)[1])


def test_level_errors():
    m, x = _module(SRNN)
    with pytest.raises(ValueError, match="one value per sequence"):
        m.predict_next(x, level=torch.zeros(3))
    plain = SRNN(3)
    plain.set_normalization(x)
    with pytest.raises(ValueError, match="noise_level_input=True"):
        plain.predict_next(x, level=0.0)
    assert "noise_level" not in plain.state_dict()  # older files keep their layout


def test_jitter_returns_each_sequences_level():
    x = torch.rand(64, 5, 2)
    fixed = jitter(x, 0.1, generator=torch.Generator().manual_seed(3))
    noisy, level = jitter(x, 0.1, generator=torch.Generator().manual_seed(3), random_level=True,
                          clean_fraction=0.3, return_level=True)
    assert level.shape == (64,)
    # the same normal draw scaled by each sequence's factor; clean sequences untouched
    torch.testing.assert_close(noisy - x, level[:, None, None] * (fixed - x))
    assert torch.equal(noisy[level == 0], x[level == 0])
    assert 0 < int((level == 0).sum()) < 64
    _, ones = jitter(x, 0.1, return_level=True)
    assert torch.equal(ones, torch.ones(64))


def _random_walks(n, T, q, seed):
    rng = np.random.RandomState(seed)
    return 0.5 + q * rng.standard_normal((n, T, 1)).cumsum(1)


def test_trained_level_input_trusts_exact_frames_and_denoises_noisy_ones():
    """Random walks x_t = x_{t-1} + N(0, q^2), inputs jittered by sigma u (u = 0 for half the
    sequences, else U[0, 1]), targets clean. From exact frames the best prediction is the last
    frame; from noisy ones a smoothed one (a Kalman filter's). One network told the level must
    do both: level 0 must beat level 1 on exact frames, and level 1 beat level 0 on noisy ones.
    """
    q, sigma = 0.01, 0.03
    est = DVAE(
        recipe="plain",
        network=Network(z_dim=2, rnn_dim=8, dense_dims=(16,), residual_order=1,
                        gated_extrapolation=False, min_std=1e-5),
        noise=TrainingNoise(sigma, random_level=True, clean_fraction=0.5, level_input=True),
        n_epochs=12, batch_size=64, learning_rate=5e-3, final_learning_rate=None, kl_warmup=2,
        validation_fraction=0.0, device="cpu", random_state=0,
    ).fit(_random_walks(1024, 16, q, 0))
    Xt = _random_walks(512, 16, q, 1)
    Xn = Xt + sigma * np.random.RandomState(2).standard_normal(Xt.shape)

    def mse(X_in, level):
        mean, _ = est.predict_next(X_in, level=level)
        return np.mean((mean[:, 4:] - Xt[:, 4:]) ** 2)

    clean0, clean1 = mse(Xt, 0.0), mse(Xt, 1.0)
    noisy0, noisy1 = mse(Xn, 0.0), mse(Xn, 1.0)
    assert clean0 < 0.8 * clean1, (clean0, clean1)
    assert noisy1 < 0.8 * noisy0, (noisy0, noisy1)
    assert clean0 < 1.5 * q**2  # close to the last frame's error, q^2


def test_estimator_level_validation():
    X = _random_walks(16, 6, 0.01, 0)
    common = dict(recipe="plain", network=Network(z_dim=2, rnn_dim=2, dense_dims=(2,)),
                  n_epochs=1, validation_fraction=0.0, device="cpu", random_state=0)
    m = SRNN(1, noise_level_input=True)  # a module reading the level needs training noise
    m.set_normalization(torch.as_tensor(X, dtype=torch.float32))
    with pytest.raises(ValueError, match="needs training noise"):
        train_dvae(m, torch.as_tensor(X, dtype=torch.float32), None, n_epochs=1,
                   batch_size=8, learning_rate=1e-3, rng=np.random.RandomState(0))
    plain = DVAE(**common).fit(X)
    with pytest.raises(ValueError, match="noise_level_input=True"):
        plain.predict_next(X, level=0.0)
    est = DVAE(noise=TrainingNoise(0.01, level_input=True), **common).fit(X)
    assert est.module_.noise_level_input and not plain.module_.noise_level_input
    for bad, err in ((-0.1, ValueError), (float("nan"), ValueError), (True, TypeError),
                     ("0", TypeError)):
        with pytest.raises(err, match="level"):
            est.predict_next(X, level=bad)
    # every method takes the level, and level 1 is the default
    np.testing.assert_array_equal(est.predict_next(X)[0], est.predict_next(X, level=1.0)[0])
    assert est.score(X, level=0.0) != est.score(X, level=1.0)
    assert est.transform(X, level=0.0).shape == (16, 6, 2)
    assert est.sample(2, 5, random_state=0, level=0.0).shape == (2, 5, 1)
