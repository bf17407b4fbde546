"""NMFSeparator (scikit-learn's NMF) and TemporalNMFSeparator (Virtanen 2007)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import NMF, non_negative_factorization
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from mixest.baselines import NMFSeparator, TemporalNMFSeparator
from mixest.baselines._nmf import temporal_nmf, virtanen_cost, virtanen_gradients
from mixest.separation import si_sdr
from mixest.separation._stft import istft, stft

RATE = 16000

# the small settings here often stop at max_iter: warnings that are not what is tested
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _band_noise(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """White noise restricted to [low, high] Hz (FFT mask), unit power."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    x = np.fft.irfft(spectrum, n)
    return x / x.std()


def _disjoint_sources(seed: int, n_mixtures: int, seconds: float) -> np.ndarray:
    """``(n_mixtures, 2, n_samples)``: a low band (200-1500 Hz) and a high band (3-6 kHz),
    both amplitude-modulated so the activations vary in time."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    y = np.empty((n_mixtures, 2, n))
    for m in range(n_mixtures):
        for k, (low, high, rate) in enumerate([(200, 1500, 1.5), (3000, 6000, 2.5)]):
            envelope = 1.1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
            y[m, k] = envelope * _band_noise(rng, n, low, high)
    return y


@pytest.fixture(scope="module")
def disjoint():
    """Training sources (two draws) and a test mixture (another draw)."""
    return _disjoint_sources(0, 2, 1.0), _disjoint_sources(1, 1, 1.0)


# ------------------------------------------------------------------ NMFSeparator = scikit-learn
def _reference_spectrogram(S: np.ndarray, beta_loss: str) -> np.ndarray:
    """The documented model input, written out independently: rows are frames."""
    power = np.abs(S) ** 2
    power = power + 1e-6 * power.mean()
    return (power if beta_loss == "itakura-saito" else np.sqrt(power)).T


@pytest.mark.parametrize("beta_loss", ["itakura-saito", "kullback-leibler"])
def test_nmf_separator_equals_sklearn(beta_loss):
    y = 0.3 * _disjoint_sources(2, 2, 0.5)  # not at peak 1: fit scales each source to it
    y[0, 1, :RATE // 4] = 0  # digitally silent frames, dropped from the training data
    params = dict(beta_loss=beta_loss, max_iter=60, tol=1e-4)
    sep = NMFSeparator(5, random_state=3, **params).fit(y.sum(1), y)
    seeds = np.random.RandomState(3).randint(2**31 - 1, size=2)
    # every separator learns from sources scaled to peak 1 and separates mixtures at peak 1
    peaks = np.abs(y).max(axis=2)
    for n in range(2):
        S = stft(y[:, n] / peaks[:, n, None], n_fft=1024, hop_length=256)  # (2, F, T)
        frames = np.concatenate(list(S), axis=1)
        frames = frames[:, np.abs(frames).max(axis=0) > 0]
        if n == 1:
            assert frames.shape[1] < 2 * S.shape[-1]  # the silent frames are gone
        model = NMF(5, solver="mu", random_state=int(seeds[n]), **params)
        model.fit(_reference_spectrogram(frames, beta_loss))
        np.testing.assert_allclose(sep.dictionaries_[n], model.components_, rtol=1e-12)
        assert sep.n_iter_[n] == model.n_iter_
        np.testing.assert_allclose(sep.reconstruction_err_[n], model.reconstruction_err_,
                                   rtol=1e-12)
    # on a mixture: the stacked dictionaries fixed, only the activations learned
    x = _disjoint_sources(4, 1, 0.5).sum(1)
    peak = np.abs(x).max()
    S = stft(x / peak, n_fft=1024, hop_length=256)[0]
    H = sep.dictionaries_.reshape(10, -1)
    W, _, _ = non_negative_factorization(_reference_spectrogram(S, beta_loss), H=H,
                                         n_components=10, update_H=False, solver="mu", **params)
    np.testing.assert_allclose(sep._activations(S, 0), W.T.reshape(2, 5, -1), rtol=1e-12)
    # and the sources are the Wiener masks of the modelled powers times the mixture
    model = np.stack([(W[:, 5 * n:5 * n + 5] @ H[5 * n:5 * n + 5]).T for n in range(2)])
    power = model if beta_loss == "itakura-saito" else model**2
    want = peak * istft(power / power.sum(0) * S, n_fft=1024, hop_length=256,
                        n_samples=x.shape[1])
    np.testing.assert_allclose(sep.transform(x)[0], want, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ Virtanen's cost and updates
def _problem(seed: int, F: int = 30, T: int = 40, J: int = 4):
    rng = np.random.default_rng(seed)
    X = rng.gamma(1.0, size=(F, J)) @ rng.gamma(0.5, size=(J, T)) + 0.01 * rng.random((F, T))
    return X, rng.uniform(0.5, 1.5, (F, J)), rng.uniform(0.5, 1.5, (J, T))


@pytest.mark.parametrize("alpha, beta", [(0.0, 0.0), (2.0, 0.0), (0.0, 3.0), (2.0, 3.0)])
@pytest.mark.parametrize("T", [2, 7])
def test_gradient_split_equals_finite_differences(alpha, beta, T):
    X, B, G = _problem(1, F=5, T=T, J=3)
    grads = virtanen_gradients(X, B, G, alpha, beta)
    h = 1e-6
    for name, factor in (("G", G), ("B", B)):
        plus, minus = grads[name]
        assert (plus > 0).all() and (minus >= 0).all()
        numeric = np.zeros_like(factor)
        for idx in np.ndindex(factor.shape):
            step = np.zeros_like(factor)
            step[idx] = h
            args = ((B, G + step), (B, G - step)) if name == "G" else ((B + step, G),
                                                                        (B - step, G))
            numeric[idx] = (virtanen_cost(X, *args[0], alpha, beta)
                            - virtanen_cost(X, *args[1], alpha, beta)) / (2 * h)
        np.testing.assert_allclose(plus - minus, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("update_B", [True, False])
@pytest.mark.parametrize("alpha, beta", [(0.0, 0.0), (10.0, 0.0), (0.0, 5.0), (100.0, 5.0)])
def test_virtanen_cost_never_increases(alpha, beta, update_B):
    X, B, G = _problem(0)
    B_out, G_out, n_iter, costs = temporal_nmf(X, B, G, alpha=alpha, beta=beta, max_iter=150,
                                               tol=0, update_B=update_B)
    assert n_iter == 150 and costs.shape == (151,)
    assert np.all(np.diff(costs) <= 1e-12 * np.abs(costs[:-1]))
    assert costs[-1] < 0.9 * costs[0]
    # the recorded cost is the cost of what is returned (the column scaling changes nothing)
    np.testing.assert_allclose(costs[-1], virtanen_cost(X, B_out, G_out, alpha, beta),
                               rtol=1e-12)
    if not update_B:
        np.testing.assert_array_equal(B_out, B)
    else:
        np.testing.assert_allclose(B_out.sum(axis=0), 1.0)


def _roughness(G: np.ndarray) -> float:
    """Frame-to-frame variation relative to the activations' energy (scale-free)."""
    return float(((np.diff(G, axis=1) ** 2).sum(axis=1) / (G**2).sum(axis=1)).sum())


def test_temporal_continuity_smooths_the_activations():
    X, B, G = _problem(5, T=80)
    X = X * np.random.default_rng(6).uniform(0.3, 1.7, X.shape[1])  # frame-wise jitter
    rough = {}
    for alpha in (0.0, 10.0):
        _, G_out, _, _ = temporal_nmf(X, B, G, alpha=alpha, beta=0.0, max_iter=200, tol=0)
        rough[alpha] = _roughness(G_out)
    assert rough[10.0] < 0.5 * rough[0.0]


def test_temporal_separator_learns_with_the_penalised_cost(disjoint):
    y_train, _ = disjoint
    sep = TemporalNMFSeparator(4, alpha=5.0, beta=1.0, max_iter=40, tol=0, random_state=0)
    sep.fit(y_train.sum(1), y_train)
    assert sep.dictionaries_.shape == (2, 4, 513)
    np.testing.assert_allclose(sep.dictionaries_.sum(axis=-1), 1.0)
    for cost in sep.costs_:
        assert cost.shape == (41,) and np.all(np.diff(cost) <= 1e-12 * np.abs(cost[:-1]))
    np.testing.assert_array_equal(sep.n_iter_, [40, 40])
    with pytest.warns(ConvergenceWarning, match="dictionary of source 0 did not converge"):
        sep.set_params(max_iter=2, tol=1e-12).fit(y_train.sum(1), y_train)
    with pytest.warns(ConvergenceWarning, match="activations of a mixture did not converge"):
        sep.transform(y_train.sum(1)[:1])


# ------------------------------------------------------------------ known answer
@pytest.mark.parametrize("make", [
    lambda: NMFSeparator(4, max_iter=50, random_state=0),
    lambda: NMFSeparator(4, beta_loss="kullback-leibler", max_iter=50, random_state=0),
    lambda: TemporalNMFSeparator(4, max_iter=50, random_state=0),
], ids=["NMF-IS", "NMF-KL", "TemporalNMF"])
def test_disjoint_bands_are_separated(make, disjoint):
    y_train, y_test = disjoint
    x = y_test.sum(1)
    sep = make().fit(y_train.sum(1), y_train)
    out = sep.transform(x)
    assert out.shape == y_test.shape
    np.testing.assert_allclose(out.sum(1), x, atol=1e-8)  # the masks sum to one
    assert np.all(si_sdr(y_test, out) > 10)


# ------------------------------------------------------------------ rates, silence, errors
@pytest.mark.parametrize("cls", [NMFSeparator, TemporalNMFSeparator])
def test_other_rates_and_silent_mixtures(cls):
    y = _disjoint_sources(7, 2, 0.5)[..., ::2]  # as if recorded at 8 kHz
    sep = cls(3, max_iter=20, tol=0, sample_rate=8000, random_state=0).fit(y.sum(1), y)
    X = np.concatenate([y.sum(1), np.zeros((1, y.shape[-1]))])
    out = sep.transform(X)
    assert out.shape == (3, 2, y.shape[-1])
    assert np.all(out[2] == 0)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("cls", [NMFSeparator, TemporalNMFSeparator])
def test_clear_errors(cls):
    y = _disjoint_sources(8, 1, 0.25)
    X = y.sum(1)
    with pytest.raises(ValueError, match="y"):
        cls().fit(X)
    with pytest.raises(InvalidParameterError, match="n_components"):
        cls(0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="n_components"):
        cls(True).fit(X, y)
    with pytest.raises(InvalidParameterError, match="tol"):
        cls(tol=-1.0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="max_iter"):
        cls(max_iter=0).fit(X, y)
    silent = y.copy()
    silent[:, 1] = 0
    with pytest.raises(ValueError, match=r"y\[:, 1\] is silent"):
        cls(2, max_iter=5).fit(X, silent)
    with pytest.raises(ValueError, match="y"):
        cls(2).fit(X, y[:, 0])  # 2-D y
    sep = cls(2, max_iter=5, tol=0, random_state=0).fit(X, y)
    S = stft(X, n_fft=1024, hop_length=256)
    with pytest.raises(ValueError, match="references"):
        sep._separate_spectra(S, stft(y, n_fft=1024, hop_length=256), 0)


def test_model_specific_parameters_are_checked():
    y = _disjoint_sources(8, 1, 0.25)
    with pytest.raises(InvalidParameterError, match="beta_loss"):
        NMFSeparator(beta_loss="frobenius").fit(y.sum(1), y)
    with pytest.raises(InvalidParameterError, match="init"):
        NMFSeparator(init="nndsvd").fit(y.sum(1), y)
    with pytest.raises(InvalidParameterError, match="alpha"):
        TemporalNMFSeparator(alpha=-1.0).fit(y.sum(1), y)
    with pytest.raises(InvalidParameterError, match="beta"):
        TemporalNMFSeparator(beta="a lot").fit(y.sum(1), y)
