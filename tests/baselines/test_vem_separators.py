"""The VEM separation baselines: VKFSeparator (complex AR(1) Kalman) and DeepARSeparator."""

from __future__ import annotations

import numpy as np
import pytest

from mixest._kernels._spectral import spectral_data_bound
from mixest.baselines import DeepARSeparator, VKFSeparator
from mixest.baselines._deep_ar_separator import (
    is_divergence,
    module_from_weights,
    train_spectral_ar,
)
from mixest.baselines._vkf_separator import ComplexAR1Dynamics, fit_complex_ar1
from mixest.separation import si_sdr


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _ar1_problem(rng, M=2, T=7, F=3):
    coef = 0.9 * rng.uniform(0.2, 1.0, (M, F)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (M, F)))
    noise = rng.uniform(0.5, 2.0, (M, F))
    prec = rng.uniform(0.1, 3.0, (M, T, F))
    prec[0, 2] = 0.0  # a frame where nothing is assigned
    x = _complex(rng, (M, T, F))
    return coef, noise, prec, x


def _dense_posterior(a, q, prec, info):
    """Exact posterior of one AR(1) chain (T,) by Gaussian conditioning: prior covariance
    E[s_i conj(s_j)] = a^(i-j) q / (1 - |a|^2) for i >= j."""
    T = len(prec)
    p0 = q / (1 - abs(a) ** 2)
    i, j = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    lag = np.abs(i - j)
    cov = p0 * np.where(i >= j, a ** lag, np.conj(a) ** lag)
    post_prec = np.linalg.inv(cov) + np.diag(prec)
    post_cov = np.linalg.inv(post_prec)
    return post_cov @ info, post_cov, cov


def test_kalman_smoother_equals_exact_gaussian_conditioning():
    rng = np.random.default_rng(0)
    coef, noise, prec, x = _ar1_problem(rng)
    info = prec * x
    dyn = ComplexAR1Dynamics(coef, noise)
    dyn.start_batch(2, 1, rng)
    out = dyn.forward_pass(info, prec, None)
    means, covs = dyn.smooth(*out)
    M, T, F = prec.shape
    for m in range(M):
        for f in range(F):
            mean, cov, _ = _dense_posterior(coef[m, f], noise[m, f], prec[m, :, f],
                                            info[m, :, f])
            np.testing.assert_allclose(means[m, :, f], mean, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(covs[m, :, f], np.diag(cov).real, rtol=1e-9)
            # the M-step: a = sum E[s_t conj(s_{t-1})] / sum E|s_{t-1}|^2 under that posterior
            second = np.outer(mean, mean.conj()) + cov
            s10 = np.trace(second, offset=-1)
            s00 = np.trace(second[:-1, :-1]).real
            s11 = np.trace(second[1:, 1:]).real
            a = s10 / s00
            np.testing.assert_allclose(dyn.coef_[m, f], a, rtol=1e-9)
            q = (s11 - 2 * (np.conj(a) * s10).real + abs(a) ** 2 * s00) / (T - 1)
            np.testing.assert_allclose(dyn.noise_var_[m, f], q, rtol=1e-9)


def test_lower_bound_equals_log_evidence_at_the_exact_posterior():
    """One source, every bin assigned to it: the bound at the exact posterior is log p(x)."""
    rng = np.random.default_rng(1)
    coef, noise, _, x = _ar1_problem(rng, M=1, T=6, F=4)
    v_x = rng.uniform(0.2, 1.5, x.shape)
    dyn = ComplexAR1Dynamics(coef, noise, learn=False)
    dyn.start_batch(1, 1, rng)
    means, covs = dyn.smooth(*dyn.forward_pass(x / v_x, 1.0 / v_x, None))
    eta = np.ones((1, 6, 1, 4))
    bound = (spectral_data_bound(x, v_x, means[:, :, None], covs[:, :, None], eta,
                                 np.zeros((1, 1)))
             + dyn.expected_log_prior(means[:, :, None], covs[:, :, None], None, None))
    log_p = 0.0
    for f in range(4):
        _, _, cov = _dense_posterior(coef[0, f], noise[0, f], np.zeros(6), np.zeros(6))
        C = cov + np.diag(v_x[0, :, f])
        xf = x[0, :, f]
        log_p += (-6 * np.log(np.pi) - np.linalg.slogdet(C)[1]
                  - (xf.conj() @ np.linalg.solve(C, xf)).real)
    np.testing.assert_allclose(bound[0], log_p, rtol=1e-10)


def test_complex_ar1_fit_recovers_the_generating_model():
    rng = np.random.default_rng(2)
    a, q, T = np.array([0.8 * np.exp(0.5j), -0.3]), np.array([1.0, 0.25]), 20000
    s = np.zeros((2, T), dtype=complex)
    e = np.sqrt(q / 2)[:, None] * _complex(rng, (2, T))
    for t in range(1, T):
        s[:, t] = a * s[:, t - 1] + e[:, t]
    coef, noise = fit_complex_ar1([s])
    np.testing.assert_allclose(coef, a, atol=0.02)
    np.testing.assert_allclose(noise, q, rtol=0.03)


def test_vkf_separates_disjoint_sources(disjoint_audio, disjoint_priors):
    train, X, y = disjoint_audio
    sep = VKFSeparator(priors=disjoint_priors, max_iter=10).fit(train.sum(0)[None], train[None])
    assert si_sdr(y, sep.transform(X)).min() > 10
    oracle = VKFSeparator(init="oracle", max_iter=10).fit(train.sum(0)[None], train[None])
    assert oracle.score(X, y) > 10
    # the oracle start is the ideal ratio mask of the true powers: the iterations may lose
    # some of it, never all
    start = VKFSeparator(init="oracle", max_iter=0).fit(train.sum(0)[None], train[None])
    assert start.score(X, y) > 20



def test_vkf_oracle_start_follows_long_mixtures_segments(disjoint_audio, monkeypatch):
    """The true sources are cut into the same segments as the mixture they start from."""
    train, X, y = disjoint_audio
    long_x, long_y = X.reshape(1, -1), y.transpose(1, 0, 2).reshape(1, 2, -1)  # 150 frames
    monkeypatch.setattr(VKFSeparator, "_segments", (64, 16))
    start = VKFSeparator(init="oracle", max_iter=0).fit(train.sum(0)[None], train[None])
    assert start.score(long_x, long_y) > 20


def test_vkf_oracle_mode_is_explicit(disjoint_audio, disjoint_priors):
    train, X, y = disjoint_audio
    with pytest.raises(ValueError, match="oracle"):
        VKFSeparator(init="oracle").fit(train.sum(0)[None], train[None]).transform(X)
    dvae = VKFSeparator(priors=disjoint_priors, max_iter=1).fit(train.sum(0)[None], train[None])
    with pytest.raises(ValueError, match="oracle"):
        dvae.transform(X, y)
    with pytest.raises(ValueError, match="priors"):
        VKFSeparator(priors=disjoint_priors, init="oracle").fit(X, y)
    with pytest.raises(ValueError, match="device"):
        VKFSeparator(init="oracle", device="auto").fit(X, y)
    with pytest.raises(ValueError, match="isolated sources"):
        VKFSeparator().fit(X)
    with pytest.raises(ValueError, match="3 mixtures, X has 2"):
        VKFSeparator(init="oracle").fit(X[:2], y)


def test_spectral_ar_learns_its_source(disjoint_audio):
    """A trained network predicts its own source type far better than the other one."""
    import torch

    from mixest.datasets import make_spectral_sequences

    train = disjoint_audio[0]
    seqs = [make_spectral_sequences(train[n][None], 50) for n in range(2)]
    weights, history = train_spectral_ar(seqs[0], hidden_size=16, max_epochs=15,
                                         random_state=0)
    assert history["best_val_nll"] < history["val_nll"][0]
    module = module_from_weights(weights)
    with torch.no_grad():
        own = float(is_divergence(module, torch.as_tensor(seqs[0], dtype=torch.float32)))
        other = float(is_divergence(module, torch.as_tensor(seqs[1], dtype=torch.float32)))
    assert own < 0.5 * other


def test_deep_ar_separates_disjoint_sources(disjoint_audio):
    train, X, y = disjoint_audio
    sep = DeepARSeparator(priors=("train", "train"), hidden_size=16, max_epochs=15,
                          max_iter=10, random_state=0).fit(train.sum(0)[None], train[None])
    assert si_sdr(y, sep.transform(X)).min() > 10
    with pytest.raises(ValueError, match="hidden_size"):
        DeepARSeparator(hidden_size=8).fit(X)
    with pytest.raises(ValueError, match="priors\\[0\\]"):
        DeepARSeparator(priors=("nope", "train")).fit(X, y)


@pytest.mark.parametrize("T", [1, 2, 9])
def test_ar1_kernels_equal_their_numpy_twins(T):
    from mixest._kernels._complex_ar1 import (
        ar1_filter,
        ar1_filter_numpy,
        ar1_smoother,
        ar1_smoother_numpy,
    )

    rng = np.random.default_rng(T)
    coef, noise, prec, x = _ar1_problem(rng, M=3, T=max(T, 3), F=5)
    prec, x = prec[:, :T], x[:, :T]
    filtered = ar1_filter(prec * x, prec, coef, noise)
    for got, want in zip(filtered, ar1_filter_numpy(prec * x, prec, coef, noise), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    smoothed = ar1_smoother(*filtered, coef, noise)
    for got, want in zip(smoothed, ar1_smoother_numpy(*filtered, coef, noise), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
