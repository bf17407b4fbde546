"""Denoising training (``TrainingNoise``): ``x_cond`` in the ELBO, input-only jitter, the
predictive term, and the checks of the training settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixest.dvae import DVAE, SRNN, VRNN, Network, ScheduledSampling, TrainingNoise
from mixest.dvae._estimator import _pack
from mixest.dvae._training import jitter


def _module(cls, residual_order=2):
    torch.manual_seed(0)
    m = cls(4, residual_order=residual_order)
    x = torch.rand(16, 12, 4)
    m.set_normalization(x, 1e-3)
    return m, x


@pytest.mark.parametrize("cls", [SRNN, VRNN])
@pytest.mark.parametrize("feed_prob", [0.0, 0.5])
def test_elbo_with_x_cond_equal_to_x_is_unchanged(cls, feed_prob):
    m, x = _module(cls)
    terms = []
    for kw in ({}, {"x_cond": x}, {"x_cond": x.clone()}):
        gen = torch.Generator().manual_seed(3)
        terms.append(m.elbo(x, 0.7, generator=gen, feed_prob=feed_prob, return_terms=True, **kw))
    for other in terms[1:]:
        for a, b in zip(terms[0], other, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("cls", [SRNN, VRNN])
def test_elbo_conditions_on_x_cond_and_scores_x(cls):
    m, x = _module(cls, residual_order=1)
    x_cond = x + 0.05 * torch.randn_like(x)
    elbo, recon, kl = m.elbo(x, 1.0, sample=False, x_cond=x_cond, return_terms=True)
    r = m.run(x_cond, sample=False)  # everything conditioned on x_cond ...
    assert torch.allclose(recon, m.log_likelihood(x, r["x_mean"], r["x_var"]).mean(-1))
    plain = m.elbo(x_cond, 1.0, sample=False, return_terms=True)
    assert torch.allclose(kl, plain[2])  # ... the KL does not see the targets
    assert not torch.allclose(recon, plain[1])  # ... and the targets are x, not x_cond
    with pytest.raises(ValueError, match="x_cond must have the shape"):
        m.elbo(x, x_cond=x[:, :-1])


def test_relative_jitter_scales_with_box_size():
    n = 20000
    boxes = torch.tensor([0.1, 0.2, 0.3, 0.7]).expand(n, 1, 4)  # width 0.2, height 0.5
    gen = torch.Generator().manual_seed(0)
    d = jitter(boxes, 0.1, relative=True, generator=gen) - boxes
    std = d.reshape(-1, 4).std(0)
    assert torch.allclose(std, torch.tensor([0.02, 0.05, 0.02, 0.05]), rtol=0.03)
    d_abs = jitter(boxes, 0.1, generator=gen) - boxes
    assert torch.allclose(d_abs.reshape(-1, 4).std(0), torch.full((4,), 0.1), rtol=0.03)
    with pytest.raises(ValueError, match="D = 4"):
        jitter(torch.zeros(2, 3, 2), 0.1, relative=True)


def test_random_level_jitter_draws_one_level_per_sequence():
    n, T = 4000, 400
    x = torch.zeros(n, T, 1)
    gen = torch.Generator().manual_seed(0)
    d = jitter(x, 0.1, generator=gen, random_level=True)
    level = d[..., 0].std(1) / 0.1  # per sequence: about U[0, 1]
    assert 0.47 < float(level.mean()) < 0.53
    assert float(level.min()) < 0.02 and float(level.max()) > 0.97
    assert float(level.max()) < 1.1
    # one level per sequence: both halves of a sequence share it
    first, second = d[:, : T // 2, 0].std(1), d[:, T // 2 :, 0].std(1)
    assert float(torch.corrcoef(torch.stack([first, second]))[0, 1]) > 0.95
    # exactly one normal per value and one uniform level per sequence (the draws of every
    # recipe so far, the bundled prior's included)
    gen = torch.Generator().manual_seed(4)
    noise = torch.randn(x.shape, generator=gen)
    level = torch.rand((n, 1, 1), generator=gen)
    again = jitter(x, 0.1, generator=torch.Generator().manual_seed(4), random_level=True)
    assert torch.equal(again, x + 0.1 * (noise * level))


def test_clean_fraction_leaves_that_share_of_sequences_exactly_clean():
    n, T = 4000, 50
    x = torch.zeros(n, T, 1)
    d = jitter(x, 0.1, generator=torch.Generator().manual_seed(1), random_level=True,
               clean_fraction=0.3)
    clean = (d[..., 0] == 0).all(1)
    assert 0.28 < float(clean.float().mean()) < 0.32
    level = d[~clean][..., 0].std(1) / 0.1  # the others keep a uniform level
    assert 0.46 < float(level.mean()) < 0.54
    # clean_fraction=0 draws exactly what the recipes without it drew
    a = jitter(x, 0.1, generator=torch.Generator().manual_seed(2), random_level=True)
    b = jitter(x, 0.1, generator=torch.Generator().manual_seed(2), random_level=True,
               clean_fraction=0.0)
    assert torch.equal(a, b)
    # without random levels the others are jittered at the full level
    d, lv = jitter(x, 0.1, generator=torch.Generator().manual_seed(3), clean_fraction=0.3,
                   return_level=True)
    assert set(lv.unique().tolist()) == {0.0, 1.0}
    assert 0.28 < float((lv == 0).float().mean()) < 0.32
    assert torch.equal(d[lv == 0], x[lv == 0])
    assert 0.97 < float(d[lv == 1][..., 0].std() / 0.1) < 1.03


def _constant_velocity(n, T, D, seed):
    rng = np.random.RandomState(seed)
    x0 = rng.uniform(0.3, 0.7, (n, 1, D))
    v = rng.normal(0.0, 0.01, (n, 1, D))
    return x0 + v * np.arange(T)[None, :, None]


def _small(**network):
    """A small plain-recipe DVAE (constant step size), with these Network fields."""
    kw = dict(z_dim=2, rnn_dim=8, dense_dims=(16,), residual_order=1, gated_extrapolation=False)
    return dict(recipe="plain", network=Network(**{**kw, **network}), learning_rate=5e-3,
                final_learning_rate=None, device="cpu", random_state=0)


def test_denoising_training_beats_random_walk_on_noisy_inputs():
    """Inputs jittered, targets clean: the one-step mean from noisy inputs, scored on the clean
    frames, must beat the random walk x~_{t-1} (which is also what a first-order residual
    model predicts untrained, and what whole-sequence jitter teaches when noise dominates)."""
    sigma = 0.005
    X = _constant_velocity(256, 12, 1, 0)
    est = DVAE(noise=TrainingNoise(sigma), n_epochs=15, batch_size=64, kl_warmup=2,
               validation_fraction=0.0, **_small(min_std=1e-4)).fit(X)
    Xt = _constant_velocity(256, 16, 1, 1)
    Xn = Xt + sigma * np.random.RandomState(2).standard_normal(Xt.shape)
    mean, var = est.predict_next(Xn)
    err = np.mean((mean[:, 3:] - Xt[:, 3:]) ** 2)
    walk = np.mean((Xn[:, 2:-1] - Xt[:, 3:]) ** 2)
    assert err < 0.5 * walk, (err, walk)
    z2 = np.mean((mean[:, 3:] - Xt[:, 3:]) ** 2 / var[:, 3:])
    assert 0.2 < z2 < 5.0  # the variance was learned against the clean targets


def test_noise_level_augmentation_adapts_to_the_input_noise():
    """Trained on a mix of clean and noisy inputs, the prior must predict clean inputs better,
    and with less variance, than the same prior trained at the top noise level only; and be more
    confident on clean inputs than on noisy ones."""
    sigma = 0.01
    X = _constant_velocity(512, 24, 1, 0)
    Xt = _constant_velocity(256, 24, 1, 1)
    Xn = Xt + sigma * np.random.RandomState(2).standard_normal(Xt.shape)
    out = {}
    for random_level in (True, False):
        est = DVAE(noise=TrainingNoise(sigma, random_level=random_level), n_epochs=15,
                   batch_size=64, kl_warmup=2, validation_fraction=0.0,
                   **_small(min_std=1e-5)).fit(X)
        (m_c, v_c), (_, v_n) = est.predict_next(Xt), est.predict_next(Xn)
        out[random_level] = (np.mean((m_c[:, 6:] - Xt[:, 6:]) ** 2),
                             np.median(v_c[:, 6:]), np.median(v_n[:, 6:]))
    err_mix, var_clean_mix, var_noisy_mix = out[True]
    err_fixed, var_clean_fixed, _ = out[False]
    assert err_mix < 0.5 * err_fixed, out
    assert var_clean_mix < 0.7 * var_clean_fixed, out
    assert var_clean_mix < var_noisy_mix, out


def test_denoising_4d_relative_noise_fit_save_load(tmp_path):
    X = np.concatenate([_constant_velocity(64, 10, 2, 0)] * 2, -1)
    X[..., 2:] += np.array([0.05, 0.15])  # boxes (x1, y1, x2, y2)
    noise = TrainingNoise(0.05, relative=True)
    est = DVAE(recipe="plain", network=Network(residual_order=2), noise=noise, n_epochs=2,
               batch_size=32, kl_warmup=1, device="cpu", random_state=0).fit(X)
    assert np.isfinite(est.history_.val_elbo).all()
    path = tmp_path / "denoise.pt"
    est.save(path)
    same = DVAE.load(path)
    assert same.noise == noise and same.noise_ == noise
    assert same.network_ == est.network_ and same.network_.residual_order == 2
    np.testing.assert_array_equal(same.predict_next(X)[0], est.predict_next(X)[0])


def test_training_noise_standardises_by_the_clean_data():
    """With training noise the input standardisation (the difference scales the residual is
    output in) is taken from the clean training split, not from jittered data: jittered scales
    cap how exactly a network can predict from exact frames (docs/dvae.md, K1-K3)."""
    X = _constant_velocity(64, 10, 2, 0)
    est = DVAE(noise=TrainingNoise(0.05), n_epochs=1, batch_size=32, kl_warmup=1,
               validation_fraction=0.25, **_small(rnn_dim=4, dense_dims=(8,))).fit(X)
    perm = np.random.RandomState(0).permutation(64)
    train = X[perm[16:]]  # the split fit makes with this seed
    clean = np.sqrt(np.mean(np.diff(train, axis=1) ** 2, axis=(0, 1)))
    np.testing.assert_allclose(est.module_.dx_scale.numpy(), clean, rtol=1e-5)


def test_gate_init_offsets_the_initial_gate_biases():
    """``Network(gate_init=b)`` adds +b to the velocity gate's bias and -b to the acceleration
    gate's, nothing else (compared after one step of a vanishing learning rate, same seed)."""
    X = _constant_velocity(32, 8, 4, 0)
    kw = dict(n_epochs=1, learning_rate=1e-12, validation_fraction=0.0)
    small = dict(rnn_dim=4, dense_dims=(8,), gated_extrapolation=True)
    a = DVAE(**{**_small(**small, gate_init=0.0), **kw}).fit(X).module_.state_dict()
    b = DVAE(**{**_small(**small, gate_init=4.0), **kw}).fit(X).module_.state_dict()
    last = [k for k in a if k.startswith("decoder_net.")][-1]
    expected = torch.zeros(4, 4)
    expected[2], expected[3] = 4.0, -4.0
    torch.testing.assert_close((b[last] - a[last]).view(4, 4), expected)
    assert all(torch.equal(a[k], b[k]) for k in a if k != last)
    # the default with the gates is the bundled prior's start, near constant velocity
    c = DVAE(**{**_small(**small), **kw}).fit(X).module_.state_dict()
    assert all(torch.equal(b[k], c[k]) for k in b)


def test_predictive_weight_zero_is_the_plain_elbo():
    """Weight 0 reproduces the plain ELBO's weights exactly; a positive weight changes the
    training (the term itself is checked against decoding at the prior mean in
    test_modules.py)."""
    rng = np.random.RandomState(0)
    X = 0.5 + np.cumsum(0.01 * rng.standard_normal((256, 12, 1)) + 0.002, axis=1)
    kw = dict(n_epochs=2, batch_size=32, kl_warmup=1, validation_fraction=0.0,
              **_small(rnn_dim=4, dense_dims=(8,)))
    a = DVAE(**kw).fit(X)
    b = DVAE(predictive_weight=0.0, **kw).fit(X)
    c = DVAE(predictive_weight=1.0, **kw).fit(X)
    fa = _pack(a.module_.state_dict())[0]
    assert torch.equal(fa, _pack(b.module_.state_dict())[0])
    assert not torch.equal(fa, _pack(c.module_.state_dict())[0])
    assert np.isfinite(c.history_.train_loss).all()
    assert c.predictive_weight_ == 1.0 and a.predictive_weight_ == 0.0


def test_validation_score_is_the_trained_objective():
    """With ``predictive_weight`` the early-stopping score is the ELBO minus the weighted
    one-step absolute error of the exact-input sequences (same draws, so the ELBO parts
    match)."""
    from mixest.dvae._training import _mean_elbo

    rng = np.random.RandomState(0)
    X = torch.as_tensor(0.5 + np.cumsum(0.01 * rng.standard_normal((40, 10, 1)), 1),
                        dtype=torch.float32)
    m = SRNN(1, residual_order=1)
    m.set_normalization(X, 1e-3)
    exact = torch.arange(40) % 2 == 0
    plain = _mean_elbo(m, X, 16, 7)
    scored = _mean_elbo(m, X, 16, 7, predictive_weight=2.0, exact=exact)
    with torch.no_grad():
        mean, _ = m.predict_next(X)
    err = ((X - mean) / m.dx_scale)[:, 2:].abs()
    expected = plain - 2.0 * float(err.mean((1, 2))[exact].sum()) / 40
    assert scored == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "params, D, match",
    [
        ({"noise": TrainingNoise(0.0)}, 4, "noise.std"),
        ({"noise": TrainingNoise(0.1, relative=1.5)}, 4, "noise.relative"),
        ({"noise": TrainingNoise(0.1, random_level="yes")}, 4, "noise.random_level"),
        ({"noise": TrainingNoise(0.1, clean_fraction=1.0)}, 4, "noise.clean_fraction"),
        ({"noise": TrainingNoise(0.1, level_input=None)}, 4, "noise.level_input"),
        ({"noise": TrainingNoise(0.1, relative=True)}, 3, "D = 4"),
        ({"noise": TrainingNoise(0.1, relative=True), "likelihood": "itakura_saito"}, 4,
         "Gaussian"),
        ({"noise": "gaussian"}, 4, "noise"),
        ({"network": Network(gated_extrapolation=True, residual_order=2)}, 4,
         "gated_extrapolation"),
        ({"network": Network(gate_init=4.0, gated_extrapolation=False)}, 4, "gate_init"),
        ({"network": Network(residual_order=3)}, 4, "network.residual_order"),
        ({"network": Network(residual_order=1), "likelihood": "itakura_saito"}, 4,
         "network.residual_order"),
        ({"network": Network(dense_dims=(8, 0))}, 4, "network.dense_dims"),
        ({"network": Network(z_dim=0)}, 4, "network.z_dim"),
        ({"network": Network(min_std=-1.0)}, 4, "network.min_std"),
        ({"network": {"z_dim": 2}}, 4, "network"),
        ({"predictive_weight": -1.0}, 4, "predictive_weight"),
        ({"predictive_weight": 1.0, "noise": TrainingNoise(0.1, random_level=True)}, 4,
         "clean_fraction"),
        ({"predictive_weight": 1.0, "likelihood": "itakura_saito", "recipe": "plain"}, 4,
         "predictive_weight"),
        ({"recipe": "fast"}, 4, "recipe"),
        ({"recipe": "mot", "likelihood": "itakura_saito"}, 4, "recipe='mot'"),
        ({"recipe": "mot"}, 2, "recipe='mot'.*D = 4"),  # the bundled recipe needs boxes
        ({"scheduled_sampling": ScheduledSampling(0.5, start=5, end=2)}, 4,
         "scheduled_sampling.end"),
        ({"scheduled_sampling": (0.5, 1, 2)}, 4, "scheduled_sampling"),
    ],
)
def test_bad_settings_rejected(params, D, match):
    """Every setting is honoured or refused, with a ValueError naming it."""
    X = np.random.default_rng(0).uniform(0.1, 0.9, (8, 6, D))
    X[..., 2:] += 0.1 if D == 4 else 0.0
    with pytest.raises(ValueError, match=match):
        DVAE(n_epochs=1, device="cpu", **params).fit(X)
