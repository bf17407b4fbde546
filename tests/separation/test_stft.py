"""STFT transformer and functions: exact inverse, dual window, frame convention, validation."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from mixest.separation import STFTTransformer, istft, stft
from mixest.separation._stft import make_window


@pytest.fixture
def waveforms():
    return np.random.default_rng(0).standard_normal((3, 12800))


def test_sine_window_definition():
    st = STFTTransformer().fit()
    n = np.arange(1024)
    np.testing.assert_allclose(st.window_, np.sin(np.pi * (n + 0.5) / 1024), atol=0)


def test_dual_window_sine_hop_quarter():
    # The squared sine windows shifted by N/4 sum to 2 (COLA for w^2, NOLA), so the canonical
    # dual window is w / 2 and sum_t w * dual over all shifts is 1 at every sample.
    st = STFTTransformer().fit()
    w, dual = st.window_, st.dual_window_
    np.testing.assert_allclose(dual, w / 2, atol=1e-15)
    np.testing.assert_allclose((w * dual).reshape(4, 256).sum(axis=0), 1.0, atol=1e-14)
    np.testing.assert_allclose((w**2).reshape(4, 256).sum(axis=0), 2.0, atol=1e-13)


def test_transform_shape_and_exact_inverse(waveforms):
    st = STFTTransformer().fit(waveforms)
    S = st.transform(waveforms)
    assert S.shape == (3, 513, 50)
    assert np.iscomplexobj(S)
    assert st.n_freqs_ == 513
    assert np.max(np.abs(st.inverse_transform(S) - waveforms)) < 1e-10


@pytest.mark.parametrize("n_samples", [1, 100, 511, 513, 1000, 12801, 16000])
def test_exact_inverse_any_length(n_samples):
    x = np.random.default_rng(n_samples).standard_normal((2, n_samples))
    S = stft(x)
    assert S.shape == (2, 513, -(-n_samples // 256))
    assert np.max(np.abs(istft(S, n_samples=n_samples) - x)) < 1e-10


@pytest.mark.parametrize("window", ["hann", "hamming", "sqrt_hann"])
def test_exact_inverse_other_windows(window):
    x = np.random.default_rng(1).standard_normal(3000)
    S = stft(x, window=window, n_fft=512, hop_length=128)
    assert S.shape == (257, 24)
    out = istft(S, n_samples=3000, window=window, n_fft=512, hop_length=128)
    assert np.max(np.abs(out - x)) < 1e-10


def test_matches_direct_dft_of_centred_frame():
    # Frame t is centred on sample t * hop; phase_shift=0 puts the phase origin at the centre.
    x = np.random.default_rng(2).standard_normal(4000)
    S = stft(x)
    w = STFTTransformer().fit().window_
    t = 5
    seg = x[t * 256 - 512 : t * 256 + 512] * w
    expected = np.fft.rfft(np.roll(seg, -512))
    np.testing.assert_allclose(S[:, t], expected, atol=1e-10)


def test_three_d_input_and_batch_independence(waveforms):
    st = STFTTransformer().fit()
    X3 = waveforms.reshape(1, 3, -1)
    S3 = st.transform(X3)
    assert S3.shape == (1, 3, 513, 50)
    np.testing.assert_allclose(S3[0], st.transform(waveforms))
    np.testing.assert_allclose(st.inverse_transform(S3), X3, atol=1e-10)


def test_fit_transform_clone_pickle(waveforms):
    st = STFTTransformer(n_fft=512, hop_length=128)
    S = st.fit_transform(waveforms)
    assert S.shape == (3, 257, 100)
    st2 = pickle.loads(pickle.dumps(st))
    np.testing.assert_array_equal(st2.transform(waveforms), S)
    assert clone(st).get_params() == st.get_params()
    assert not hasattr(clone(st), "n_freqs_")


def test_not_fitted(waveforms):
    with pytest.raises(NotFittedError):
        STFTTransformer().transform(waveforms)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_fft": 0}, "n_fft"),
        ({"hop_length": 0}, "hop_length"),
        ({"window": "boxcar"}, "window"),
        ({"sample_rate": -1}, "sample_rate"),
        ({"hop_length": 2048}, "hop_length"),
    ],
)
def test_invalid_params(params, match):
    with pytest.raises(ValueError, match=match):
        STFTTransformer(**params).fit()


def test_invalid_inputs(waveforms):
    st = STFTTransformer().fit()
    with pytest.raises(ValueError, match="X"):
        st.transform(waveforms[0])
    bad = waveforms.copy()
    bad[0, 3] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        st.transform(bad)
    with pytest.raises(TypeError, match="X"):
        st.transform("not audio")
    S = st.transform(waveforms)
    with pytest.raises(ValueError, match="frequency bins"):
        st.inverse_transform(S[:, :100])
    with pytest.raises(ValueError, match="n_samples"):
        st.inverse_transform(S, n_samples=5)
    with pytest.raises(ValueError, match="window"):
        stft(waveforms, window=np.ones(10))


def test_all_zero_window_is_refused(waveforms):
    with pytest.raises(ValueError, match="window is all zeros"):
        stft(waveforms, window=np.zeros(1024))
    with pytest.raises(ValueError, match="window is all zeros"):
        STFTTransformer(window=np.zeros(1024)).fit()
    with pytest.raises(ValueError, match="window is all zeros"):
        make_window(np.zeros(8), 8)


@pytest.mark.parametrize("n_samples", [16000 * 7, 16000 * 7 + 37])
def test_segmented_stft_adds_up_to_the_whole_inverse(n_samples):
    # Frames taken a range at a time are the whole STFT's frames, and overlap-adding modified
    # frames range by range, in overlapping and cross-faded ranges, gives istft of the whole.
    from mixest.separation._base import fade_weights, segment_bounds
    from mixest.separation._stft import SegmentedSTFT

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, n_samples))
    S = stft(x)
    modified = S * (rng.standard_normal(S.shape) + 1j * rng.standard_normal(S.shape))
    bounds = segment_bounds(S.shape[-1], 64, 8)
    weights = fade_weights(bounds, S.shape[-1])
    segmented = SegmentedSTFT(x)
    out = np.zeros_like(x)
    for k, (a, b) in enumerate(bounds):
        np.testing.assert_array_equal(segmented.frames(a, b), S[..., a:b])
        np.testing.assert_array_equal(segmented.frames(a, b, 1), S[1, :, a:b])
        # the frames see exactly these samples: zeroing the others changes none of them, and
        # the first and the last of them each change some frame
        span = segmented.samples(a, b)
        outside = np.ones(n_samples, dtype=bool)
        outside[span] = False
        np.testing.assert_array_equal(stft(np.where(outside, 0.0, x))[..., a:b], S[..., a:b])
        for n in (span.start, span.stop - 1):
            impulse = np.zeros(n_samples)
            impulse[n] = 1.0
            assert np.any(stft(impulse)[:, a:b] != 0)
        segmented.add(out, modified[..., a:b] * weights[k, a:b], a)
    expected = istft(modified, n_samples=n_samples)
    np.testing.assert_allclose(segmented.finish(out), expected, rtol=0,
                               atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(istft(S, n_samples=n_samples), x, atol=1e-10)
