"""Denoising training: conditioning sequence ``x_cond`` in the ELBO, input-only jitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixest.dvae import DVAE, SRNN, VRNN
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


def test_clean_fraction_leaves_that_share_of_sequences_exactly_clean():
    n, T = 4000, 50
    x = torch.zeros(n, T, 1)
    d = jitter(x, 0.1, generator=torch.Generator().manual_seed(1), random_level=True,
               clean_fraction=0.3)
    clean = (d[..., 0] == 0).all(1)
    assert 0.28 < float(clean.float().mean()) < 0.32
    level = d[~clean][..., 0].std(1) / 0.1  # the others keep a uniform level
    assert 0.46 < float(level.mean()) < 0.54
    # clean_fraction=0 draws exactly what the older recipes drew
    a = jitter(x, 0.1, generator=torch.Generator().manual_seed(2), random_level=True)
    b = jitter(x, 0.1, generator=torch.Generator().manual_seed(2), random_level=True,
               clean_fraction=0.0)
    assert torch.equal(a, b)


def test_min_level_leaves_a_gap_between_clean_and_noisy_sequences():
    n, T = 4000, 400
    x = torch.zeros(n, T, 1)
    d = jitter(x, 0.1, generator=torch.Generator().manual_seed(3), random_level=True,
               clean_fraction=0.5, min_level=0.25)
    level = d[..., 0].std(1) / 0.1
    clean = level == 0
    assert 0.47 < float(clean.float().mean()) < 0.53
    noisy = level[~clean]  # U[0.25, 1]: mean 0.625, nothing near zero
    assert 0.6 < float(noisy.mean()) < 0.65
    assert 0.2 < float(noisy.min()) < 0.27 and 0.97 < float(noisy.max()) < 1.1
    # min_level=0 gives exactly the older recipes' draw: one normal per value, one uniform
    # level per sequence
    gen = torch.Generator().manual_seed(4)
    noise = torch.randn(x.shape, generator=gen)
    level = torch.rand((n, 1, 1), generator=gen)
    b = jitter(x, 0.1, generator=torch.Generator().manual_seed(4), random_level=True,
               min_level=0.0)
    assert torch.equal(b, x + 0.1 * (noise * level))


def _constant_velocity(n, T, D, seed):
    rng = np.random.RandomState(seed)
    x0 = rng.uniform(0.3, 0.7, (n, 1, D))
    v = rng.normal(0.0, 0.01, (n, 1, D))
    return x0 + v * np.arange(T)[None, :, None]


def test_denoising_training_beats_random_walk_on_noisy_inputs():
    """Inputs jittered, targets clean: the one-step mean from noisy inputs, scored on the clean
    frames, must beat the random walk x~_{t-1} (which is also what a first-order residual
    model predicts untrained, and what whole-sequence jitter teaches when noise dominates)."""
    sigma = 0.005
    X = _constant_velocity(256, 12, 1, 0)
    est = DVAE(
        z_dim=2, rnn_dim=8, dense_dims=(16,), residual_order=1, min_std=1e-4,
        input_noise=sigma, noise_targets=False, n_epochs=15, batch_size=64,
        learning_rate=5e-3, kl_warmup=2, validation_fraction=0.0, device="cpu",
        random_state=0,
    ).fit(X)
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
        est = DVAE(
            z_dim=2, rnn_dim=8, dense_dims=(16,), residual_order=1, min_std=1e-5,
            input_noise=sigma, input_noise_random=random_level, noise_targets=False,
            n_epochs=15, batch_size=64, learning_rate=5e-3, kl_warmup=2,
            validation_fraction=0.0, device="cpu", random_state=0,
        ).fit(X)
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
    est = DVAE(residual_order=2, input_noise=0.05, input_noise_relative=True,
               noise_targets=False, n_epochs=2, batch_size=32, kl_warmup=1, device="cpu",
               random_state=0).fit(X)
    assert np.isfinite(est.history_.val_elbo).all()
    path = tmp_path / "denoise.pt"
    est.save(path)
    same = DVAE.load(path)
    assert same.noise_targets is False and same.input_noise_relative is True
    assert same.input_noise == 0.05
    np.testing.assert_array_equal(same.predict_next(X)[0], est.predict_next(X)[0])
    # A file written before these parameters existed loads with the old behaviour.
    payload = est._payload()
    for key in ("noise_targets", "input_noise_relative", "input_noise_random"):
        del payload["params"][key]
    torch.save(payload, path)
    old = DVAE.load(path)
    assert old.noise_targets is True and old.input_noise_relative is False
    assert old.input_noise_random is False


def test_noise_targets_default_is_whole_batch_jitter():
    """The defaults (``noise_targets=True``, absolute noise) train exactly as before the options
    existed (same weights when passed explicitly); input-only jitter trains differently."""
    X = _constant_velocity(48, 8, 4, 0)
    kw = dict(z_dim=2, rnn_dim=4, dense_dims=(8,), input_noise=0.01, n_epochs=2,
              batch_size=16, kl_warmup=1, device="cpu", random_state=0)
    a = DVAE(**kw).fit(X)
    b = DVAE(**kw, noise_targets=True, input_noise_relative=False).fit(X)
    c = DVAE(**kw, noise_targets=False).fit(X)
    fa = _pack(a.module_.state_dict())[0]
    assert torch.equal(fa, _pack(b.module_.state_dict())[0])
    assert not torch.equal(fa, _pack(c.module_.state_dict())[0])


def test_jittered_scales_false_takes_the_scales_from_the_clean_data():
    """Denoising training standardises by one jittered copy of the training split unless
    ``jittered_scales=False``, which takes the clean split's difference scales."""
    X = _constant_velocity(64, 10, 2, 0)
    kw = dict(z_dim=2, rnn_dim=4, dense_dims=(8,), residual_order=1, input_noise=0.05,
              noise_targets=False, n_epochs=1, batch_size=32, kl_warmup=1,
              validation_fraction=0.25, device="cpu", random_state=0)
    perm = np.random.RandomState(0).permutation(64)
    train = X[perm[16:]]  # the split fit makes with this seed
    clean = np.sqrt(np.mean(np.diff(train, axis=1) ** 2, axis=(0, 1)))
    scales = {}
    for jittered in (True, False):
        est = DVAE(jittered_scales=jittered, **kw).fit(X)
        scales[jittered] = est.module_.dx_scale.numpy()
    np.testing.assert_allclose(scales[False], clean, rtol=1e-5)
    assert np.all(scales[True] > 3 * clean)  # jitter 0.05 against steps of about 0.01


def test_gate_init_offsets_the_initial_gate_biases():
    """``gate_init=b`` adds +b to the velocity gate's bias and -b to the acceleration gate's,
    nothing else (compared after one step of a vanishing learning rate, same seed)."""
    X = _constant_velocity(32, 8, 4, 0)
    kw = dict(z_dim=2, rnn_dim=4, dense_dims=(8,), residual_order=1, gated_extrapolation=True,
              n_epochs=1, learning_rate=1e-12, validation_fraction=0.0, device="cpu",
              random_state=0)
    a = DVAE(**kw).fit(X).module_.state_dict()
    b = DVAE(gate_init=4.0, **kw).fit(X).module_.state_dict()
    last = [k for k in a if k.startswith("decoder_net.")][-1]
    expected = torch.zeros(4, 4)
    expected[2], expected[3] = 4.0, -4.0
    torch.testing.assert_close((b[last] - a[last]).view(4, 4), expected)
    assert all(torch.equal(a[k], b[k]) for k in a if k != last)


def test_predictive_weight_zero_is_the_plain_elbo():
    """Weight 0 reproduces the plain ELBO's weights exactly; a positive weight changes the
    training (the term itself is checked against decoding at the prior mean in
    test_modules.py)."""
    rng = np.random.RandomState(0)
    X = 0.5 + np.cumsum(0.01 * rng.standard_normal((256, 12, 1)) + 0.002, axis=1)
    kw = dict(z_dim=2, rnn_dim=4, dense_dims=(8,), residual_order=1, n_epochs=2,
              batch_size=32, kl_warmup=1, validation_fraction=0.0, device="cpu",
              random_state=0)
    a = DVAE(**kw).fit(X)
    b = DVAE(predictive_weight=0.0, **kw).fit(X)
    c = DVAE(predictive_weight=1.0, **kw).fit(X)
    d = DVAE(predictive_weight=1.0, predictive_loss="absolute", **kw).fit(X)
    fa = _pack(a.module_.state_dict())[0]
    assert torch.equal(fa, _pack(b.module_.state_dict())[0])
    assert not torch.equal(fa, _pack(c.module_.state_dict())[0])
    assert not torch.equal(_pack(c.module_.state_dict())[0], _pack(d.module_.state_dict())[0])
    assert np.isfinite(c.history_.train_loss).all()


@pytest.mark.parametrize("loss", ["squared", "absolute"])
def test_validation_score_is_the_trained_objective(loss):
    """With ``predictive_weight`` the early-stopping score is the ELBO minus the weighted
    one-step error of the exact-input sequences (same draws, so the ELBO parts match)."""
    from mixest.dvae._training import _mean_elbo

    rng = np.random.RandomState(0)
    X = torch.as_tensor(0.5 + np.cumsum(0.01 * rng.standard_normal((40, 10, 1)), 1),
                        dtype=torch.float32)
    m = SRNN(1, residual_order=1)
    m.set_normalization(X, 1e-3)
    exact = torch.arange(40) % 2 == 0
    plain = _mean_elbo(m, X, 16, 7)
    scored = _mean_elbo(m, X, 16, 7, predictive_weight=2.0, exact=exact, predictive_loss=loss)
    with torch.no_grad():
        mean, _ = m.predict_next(X)
    err = ((X - mean) / m.dx_scale)[:, 2:]
    err = err.pow(2) if loss == "squared" else err.abs()
    expected = plain - 2.0 * float(err.mean((1, 2))[exact].sum()) / 40
    assert scored == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "params, D, match",
    [
        ({"noise_targets": "no"}, 4, "noise_targets"),
        ({"input_noise_relative": 1.5}, 4, "input_noise_relative"),
        ({"input_noise_random": "yes"}, 4, "input_noise_random"),
        ({"input_noise_clean": 1.0}, 4, "input_noise_clean"),
        ({"input_noise_min": -0.1}, 4, "input_noise_min"),
        ({"input_noise_min": 1.0}, 4, "input_noise_min"),
        ({"gated_extrapolation": True, "residual_order": 2}, 4, "gated_extrapolation"),
        ({"input_noise_relative": True}, 3, "D = 4"),
        ({"input_noise_relative": True, "likelihood": "itakura_saito"}, 4, "Gaussian"),
        ({"predictive_loss": "huber"}, 4, "predictive_loss"),
        ({"predictive_weight": -1.0}, 4, "predictive_weight"),
    ],
)
def test_bad_denoising_params_rejected(params, D, match):
    X = np.random.default_rng(0).uniform(0.1, 0.9, (8, 6, D))
    with pytest.raises(ValueError, match=match):
        DVAE(n_epochs=1, device="cpu", **params).fit(X)
