"""Separation metrics: closed forms, invariances, batching, PESQ/ESTOI ranking, scorers."""

import numpy as np
import pytest
from scipy.signal import lfilter
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV

from mixest import metrics
from mixest.separation import (
    estoi_score,
    estoi_scorer,
    pesq_score,
    pesq_scorer,
    scale_optimal_rmse,
    si_sdr,
    si_sdr_improvement,
    si_sdr_scorer,
    si_sdri_scorer,
)


def _speech_like(n, rate, seed=0):
    """A voiced, formant-filtered, syllable-modulated tone: enough speech for PESQ and ESTOI."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 30))
    for fc, bw in [(500, 80), (1500, 120)]:
        r, th = np.exp(-np.pi * bw / rate), 2 * np.pi * fc / rate
        x = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)
    x = x * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2 + 1e-3 * rng.standard_normal(n)
    return 0.3 * x / np.max(np.abs(x))


def _orthogonal_pair(n, seed, zero_mean):
    rng = np.random.default_rng(seed)
    s, e = rng.standard_normal(n), rng.standard_normal(n)
    if zero_mean:
        s, e = s - s.mean(), e - e.mean()
    e -= (e @ s) / (s @ s) * s
    return s, e


@pytest.mark.parametrize("zero_mean", [True, False])
@pytest.mark.parametrize("a", [0.3, 1.0, -2.5])
def test_si_sdr_closed_form(a, zero_mean):
    s, e = _orthogonal_pair(1000, 0, zero_mean)
    e *= 0.2
    expected = 10 * np.log10(a**2 * (s @ s) / (e @ e))
    assert si_sdr(s, a * s + e, zero_mean=zero_mean) == pytest.approx(expected, abs=1e-10)


def test_si_sdr_scale_invariance_and_zero_mean():
    rng = np.random.default_rng(1)
    s, s_hat = rng.standard_normal(500), rng.standard_normal(500)
    s_hat += 2 * s
    base = si_sdr(s, s_hat)
    for c in [1e-3, 7.0, -3.0]:
        assert si_sdr(s, c * s_hat) == pytest.approx(base, abs=1e-9)
        assert si_sdr(c * s, s_hat) == pytest.approx(base, abs=1e-9)
    # zero_mean=True ignores offsets; zero_mean=False does not.
    assert si_sdr(s + 5, s_hat - 1) == pytest.approx(base, abs=1e-9)
    assert si_sdr(s + 5, s_hat - 1, zero_mean=False) != pytest.approx(base, abs=1e-3)


def test_si_sdr_batched_matches_loop_and_extremes():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((3, 2, 300))
    est = ref + rng.standard_normal((3, 2, 300))
    values = si_sdr(ref, est)
    assert values.shape == (3, 2)
    loop = [[si_sdr(ref[i, j], est[i, j]) for j in range(2)] for i in range(3)]
    np.testing.assert_allclose(values, loop, atol=1e-12)
    assert isinstance(si_sdr(ref[0, 0], est[0, 0]), float)
    assert si_sdr(ref[0, 0], 2 * ref[0, 0]) == np.inf
    assert si_sdr(ref[0, 0], np.zeros(300)) == -np.inf


def test_si_sdr_errors():
    s = np.random.default_rng(3).standard_normal(100)
    with pytest.raises(ValueError, match="same shape"):
        si_sdr(s, s[:50])
    with pytest.raises(ValueError, match="zero energy"):
        si_sdr(np.ones(100), s)
    with pytest.raises(ValueError, match="infinite"):
        si_sdr(s, np.full(100, np.inf))
    with pytest.raises(ValueError, match="NaN"):
        si_sdr(np.full(100, np.nan), s)
    with pytest.raises(TypeError, match="reference"):
        si_sdr("abc", s)


def test_si_sdr_improvement():
    rng = np.random.default_rng(4)
    sources = rng.standard_normal((2, 2, 400))
    mixture = sources.sum(axis=1)
    estimate = sources + 0.1 * rng.standard_normal(sources.shape)
    values = si_sdr_improvement(sources, estimate, mixture)
    assert values.shape == (2, 2)
    expected = si_sdr(sources, estimate) - si_sdr(sources, np.stack([mixture, mixture], axis=1))
    np.testing.assert_allclose(values, expected, atol=1e-12)
    assert np.all(values > 0)
    full = si_sdr_improvement(sources, estimate, np.stack([mixture, mixture], axis=1))
    np.testing.assert_allclose(full, values)
    with pytest.raises(ValueError, match="mixture"):
        si_sdr_improvement(sources, estimate, mixture[:1])


def test_scale_optimal_rmse():
    rng = np.random.default_rng(5)
    s, e = _orthogonal_pair(800, 5, zero_mean=False)
    assert scale_optimal_rmse(s, -4.0 * s) == pytest.approx(0.0, abs=1e-12)
    est = 3.0 * (s + e)
    gain = np.linalg.lstsq(est[:, None], s, rcond=None)[0][0]
    expected = np.sqrt(np.mean((s - gain * est) ** 2))
    assert scale_optimal_rmse(s, est) == pytest.approx(expected, rel=1e-10)
    assert scale_optimal_rmse(s, np.zeros(800)) == pytest.approx(np.sqrt(np.mean(s**2)))
    batch = rng.standard_normal((4, 200))
    assert scale_optimal_rmse(batch, batch + 1).shape == (4,)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_pesq_and_estoi_rank_clean_above_noisy(rate):
    x = _speech_like(rate * 2, rate)
    noisy = x + np.std(x) * np.random.default_rng(6).standard_normal(x.size)
    clean_pesq, noisy_pesq = pesq_score(np.stack([x, x]), np.stack([x, noisy]), rate)
    assert clean_pesq > 4.0 and noisy_pesq < clean_pesq - 1.0
    clean_estoi, noisy_estoi = estoi_score(np.stack([x, x]), np.stack([x, noisy]), rate)
    assert clean_estoi == pytest.approx(1.0, abs=1e-6) and noisy_estoi < 0.5


def test_pesq_errors():
    x = _speech_like(8000, 16000)
    with pytest.raises(ValueError, match="16000"):
        pesq_score(x, x, 44100)
    with pytest.raises(ValueError, match="wide-band"):
        pesq_score(x[::2], x[::2], 8000, mode="wb")
    with pytest.raises(ValueError, match="sample_rate"):
        pesq_score(x, x, 0)
    with pytest.raises(ValueError, match="on_error"):
        pesq_score(np.zeros(8000), x, 16000)
    values = pesq_score(np.stack([np.zeros(8000), x]), np.stack([x, x]), 16000, on_error="nan")
    assert np.isnan(values[0]) and values[1] > 4.0


class _FixedSplit(BaseEstimator):
    """Splits a mixture into ``weight * X`` and ``(1 - weight) * X``."""

    def __init__(self, weight=0.5, sample_rate=16000):
        self.weight = weight
        self.sample_rate = sample_rate

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.stack([self.weight * X, (1 - self.weight) * X + 1e-3 * X**2], axis=1)


def test_scorers_and_grid_search():
    rng = np.random.default_rng(7)
    y = rng.standard_normal((6, 2, 400))
    X = y.sum(axis=1)
    est = _FixedSplit(0.3)
    expected = float(np.mean(si_sdr(y, est.transform(X))))
    assert si_sdr_scorer(est, X, y) == pytest.approx(expected)
    expected_i = float(np.mean(si_sdr_improvement(y, est.transform(X), X)))
    assert si_sdri_scorer(est, X, y) == pytest.approx(expected_i)
    search = GridSearchCV(_FixedSplit(), {"weight": [0.2, 0.5]}, scoring=si_sdr_scorer, cv=2)
    search.fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    with pytest.raises(ValueError, match="y"):
        si_sdr_scorer(est, X, y[:, :, :10])
    with pytest.raises(ValueError, match="transform"):
        si_sdr_scorer(_FixedSplit(), X, np.concatenate([y, y], axis=1))


def test_pesq_estoi_scorers_use_sample_rate():
    x = _speech_like(8000, 8000)
    other = _speech_like(8000, 8000, seed=1)[::-1]
    y = np.stack([x, other])[None]
    X = y.sum(axis=1)
    est = _FixedSplit(0.5, sample_rate=8000)
    assert 1.0 <= pesq_scorer(est, X, y) <= 4.6
    assert 0.0 <= estoi_scorer(est, X, y) <= 1.0


def test_exported_in_mixest_metrics():
    assert metrics.si_sdr is si_sdr
    assert metrics.si_sdr_scorer is si_sdr_scorer
    for name in ["si_sdr_improvement", "scale_optimal_rmse", "pesq_score", "estoi_score"]:
        assert callable(getattr(metrics, name))
    assert {"pesq_scorer", "estoi_scorer", "si_sdri_scorer"} <= set(dir(metrics))


@pytest.mark.realdata
def test_real_speech_pesq_estoi(shared_data):
    from mixest.separation import read_audio

    files = sorted((shared_data / "audio" / "speech" / "cmu_arctic").glob("*.wav"))
    if not files:
        pytest.skip("cmu_arctic speech files missing")
    x, rate = read_audio(files[0], sample_rate=16000)
    x = x[: 2 * rate]
    noisy = x + 0.5 * np.std(x) * np.random.default_rng(8).standard_normal(x.size)
    p = pesq_score(np.stack([x, x]), np.stack([x, noisy]), rate)
    e = estoi_score(np.stack([x, x]), np.stack([x, noisy]), rate)
    assert p[0] > p[1] + 1.0 and e[0] > e[1]


# ---------------------------------------------------------------------------------------------
# Finite answers at the ends of the floating-point range and on degenerate input (issue 21)


@pytest.mark.parametrize("scale", [1e200, 1e-300, 1e300])
@pytest.mark.parametrize("zero_mean", [True, False])
def test_si_sdr_of_huge_and_tiny_signals_equals_unscaled(scale, zero_mean):
    rng = np.random.default_rng(7)
    s = rng.standard_normal((2, 1000)) + 0.5
    e = s + rng.standard_normal((2, 1000))
    base = si_sdr(s, e, zero_mean=zero_mean)
    np.testing.assert_allclose(si_sdr(scale * s, scale * e, zero_mean=zero_mean), base, rtol=1e-12)
    np.testing.assert_allclose(si_sdr(scale * s, e, zero_mean=zero_mean), base, rtol=1e-12)
    np.testing.assert_allclose(si_sdr(s, scale * e, zero_mean=zero_mean), base, rtol=1e-12)
    sdri = si_sdr_improvement(s, e, s + 2 * e, zero_mean=zero_mean)
    np.testing.assert_allclose(
        si_sdr_improvement(scale * s, scale * e, scale * (s + 2 * e), zero_mean=zero_mean),
        sdri,
        rtol=1e-12,
    )


@pytest.mark.parametrize("scale", [1e200, 1e-300, 1e300])
def test_scale_optimal_rmse_of_huge_and_tiny_signals(scale):
    rng = np.random.default_rng(8)
    s, e = rng.standard_normal(1000), rng.standard_normal(1000)
    base = scale_optimal_rmse(s, s + e)
    # Invariant to the estimate's scale, proportional to the reference's.
    assert scale_optimal_rmse(s, scale * (s + e)) == pytest.approx(base, rel=1e-12)
    assert scale_optimal_rmse(scale * s, scale * (s + e)) == pytest.approx(scale * base, rel=1e-12)


def test_si_sdr_of_a_constant_reference_is_refused():
    e = np.random.default_rng(9).standard_normal(1000)
    for value in (0.1, 7.7):  # their mean leaves rounding noise that must not count as signal
        with pytest.raises(ValueError, match="reference has zero energy after removing its mean"):
            si_sdr(np.full(1000, value), e)


def test_si_sdr_improvement_over_a_silent_mixture_is_refused():
    rng = np.random.default_rng(10)
    s = rng.standard_normal((2, 2, 300))
    mixture = s.sum(axis=1)
    mixture[1] = 0.0
    with pytest.raises(ValueError, match="mixture is silent after removing its mean in 1"):
        si_sdr_improvement(s, s + 0.1, mixture)
    with pytest.raises(ValueError, match="mixture is silent in 1"):
        si_sdr_improvement(s, s + 0.1, mixture, zero_mean=False)


def test_si_sdr_improvement_of_a_perfect_mixture_kept_as_is_is_zero():
    s = np.random.default_rng(11).standard_normal(300)
    # estimate == mixture == reference: +inf - +inf; nothing was improved.
    assert si_sdr_improvement(s, s, s) == 0.0
    assert si_sdr_improvement(s, 2 * s, -s) == 0.0
    # A perfect estimate from an imperfect mixture stays an infinite improvement.
    assert si_sdr_improvement(s, s, s + np.roll(s, 1)) == np.inf


def test_estoi_of_a_silent_reference_is_refused():
    x = _speech_like(16000, 16000)
    with pytest.raises(ValueError, match="reference is all zeros in 1 signal"):
        estoi_score(np.stack([x, np.zeros_like(x)]), np.stack([x, x]), 16000)


@pytest.mark.parametrize(("rate", "minimum"), [(16000, 6554), (10000, 4097), (8000, 3277)])
def test_estoi_of_a_short_signal_names_the_minimum_length(rate, minimum):
    x = _speech_like(minimum, rate)
    with pytest.raises(ValueError, match=f"at least {minimum} samples"):
        estoi_score(x[:100], x[:100], rate)
    with pytest.raises(ValueError, match=f"at least {minimum} samples .*got {minimum - 1}"):
        estoi_score(x[:-1], x[:-1], rate)
    assert estoi_score(x, x, rate) == pytest.approx(1.0, abs=1e-6)  # the minimum is enough


def test_estoi_with_too_little_speech_after_silence_removal_is_refused():
    # Long enough, but all but 0.2 s is silent: pystoi would warn and return 1e-5.
    x = np.zeros(16000)
    x[:3200] = _speech_like(3200, 16000)
    with pytest.raises(ValueError, match="fewer than 30 frames"):
        estoi_score(x, x, 16000)


def test_pesq_of_a_silent_estimate_honours_on_error():
    x = _speech_like(16000, 16000)
    with pytest.raises(ValueError, match="estimate is all zeros"):
        pesq_score(x, np.zeros_like(x), 16000)
    values = pesq_score(np.stack([x, x]), np.stack([np.zeros_like(x), x]), 16000, on_error="nan")
    assert np.isnan(values[0]) and values[1] > 4.0
