"""Audio mixture builder: exact ratio, exact sum, seeding, silence rejection, errors, real data."""

import numpy as np
import pytest

from mixest.datasets import make_audio_mixtures
from mixest.separation import STFTTransformer, write_audio


def _pools(seed=0):
    rng = np.random.default_rng(seed)
    a = [rng.standard_normal(20000), 0.01 * rng.standard_normal(15000)]
    b = [3.0 * rng.standard_normal(30000)]
    return a, b


def _ratio_db(sources, i=0, k=1):
    return 10 * np.log10((sources[:, i] ** 2).sum(-1) / (sources[:, k] ** 2).sum(-1))


@pytest.mark.parametrize("ratio_db", [0.0, -5.0, 12.5])
def test_ratio_sum_and_shapes(ratio_db):
    a, b = _pools()
    X, S = make_audio_mixtures(
        a, b, n_mixtures=5, n_frames=20, ratio_db=ratio_db, hop_length=256, random_state=0
    )
    assert X.shape == (5, 20 * 256) and S.shape == (5, 2, 20 * 256)
    np.testing.assert_allclose(_ratio_db(S), ratio_db, atol=1e-10)
    np.testing.assert_array_equal(X, S.sum(axis=1))
    # The STFT of a mixture has exactly n_frames frames.
    assert STFTTransformer(hop_length=256).fit().transform(X).shape == (5, 513, 20)


def test_segments_come_from_the_pools():
    a, b = _pools()
    X, S, info = make_audio_mixtures(
        a, b, n_mixtures=4, n_frames=10, random_state=1, return_info=True
    )
    n = 10 * 256
    for m in range(4):
        for k, pool in enumerate([a, b]):
            f, off, g = info["file_index"][m, k], info["offset"][m, k], info["gain"][m, k]
            np.testing.assert_allclose(S[m, k], g * pool[f][off : off + n], rtol=1e-12)
    np.testing.assert_array_equal(info["gain"][:, 0], 1.0)


def test_seeded_reproducibility():
    a, b = _pools()
    first = make_audio_mixtures(a, b, n_mixtures=3, n_frames=8, random_state=42)
    second = make_audio_mixtures(a, b, n_mixtures=3, n_frames=8, random_state=42)
    other = make_audio_mixtures(a, b, n_mixtures=3, n_frames=8, random_state=43)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_silence_rejection():
    rng = np.random.default_rng(2)
    # Half the file is silent (-80 dB): with the threshold no silent segment is drawn.
    quiet = np.concatenate([1e-4 * rng.standard_normal(20000), rng.standard_normal(20000)])
    n = 16 * 256
    _, _, info = make_audio_mixtures(
        [quiet],
        [rng.standard_normal(10000)],
        n_mixtures=30,
        n_frames=16,
        random_state=0,
        return_info=True,
    )
    assert np.all(info["offset"][:, 0] + n > 20000)
    seg_power = [np.mean(quiet[o : o + n] ** 2) / np.mean(quiet**2) for o in info["offset"][:, 0]]
    assert min(seg_power) >= 1e-4
    # Without the threshold silent segments do appear.
    _, _, info = make_audio_mixtures(
        [quiet],
        [rng.standard_normal(10000)],
        n_mixtures=30,
        n_frames=16,
        random_state=0,
        silence_threshold_db=None,
        return_info=True,
    )
    assert np.any(info["offset"][:, 0] + n <= 20000)


def test_more_than_two_sources():
    rng = np.random.default_rng(3)
    pools = [[rng.standard_normal(5000)] for _ in range(3)]
    X, S = make_audio_mixtures(
        *pools, n_mixtures=2, n_frames=4, ratio_db=[3.0, -2.0], random_state=0
    )
    assert S.shape == (2, 3, 1024)
    np.testing.assert_allclose(_ratio_db(S, 0, 1), 3.0, atol=1e-10)
    np.testing.assert_allclose(_ratio_db(S, 0, 2), -2.0, atol=1e-10)
    np.testing.assert_array_equal(X, S.sum(axis=1))


def test_files_and_arrays_mixed(tmp_path):
    rng = np.random.default_rng(4)
    write_audio(tmp_path / "a.wav", 0.3 * np.sin(np.arange(16000) * 0.05), 16000)
    write_audio(tmp_path / "b.flac", 0.2 * rng.uniform(-1, 1, 8000), 8000)
    X, S = make_audio_mixtures(
        [tmp_path / "a.wav"],
        [str(tmp_path / "b.flac"), rng.standard_normal(6000)],
        n_mixtures=3,
        n_frames=10,
        random_state=0,
    )
    assert X.shape == (3, 2560)
    np.testing.assert_allclose(_ratio_db(S), 0.0, atol=1e-10)


def test_errors(tmp_path):
    a, b = _pools()
    with pytest.raises(ValueError, match="sources_b.*n_samples"):
        make_audio_mixtures(a, [np.ones(100)], n_mixtures=1, n_frames=10)
    with pytest.raises(ValueError, match="sources_a.*non-zero energy"):
        make_audio_mixtures([np.zeros(5000)], b, n_mixtures=1, n_frames=10)
    spiky = np.zeros(50000)
    spiky[0] = 1.0  # only one non-silent sample: every other segment is silent
    with pytest.raises(ValueError, match="non-silent segment"):
        make_audio_mixtures([spiky], b, n_mixtures=1, n_frames=10, random_state=0, max_tries=5)
    with pytest.raises(TypeError, match="sources_a"):
        make_audio_mixtures(np.ones(5000), b, n_mixtures=1, n_frames=2)
    with pytest.raises(ValueError, match="sources_a is empty"):
        make_audio_mixtures([], b, n_mixtures=1, n_frames=2)
    with pytest.raises(ValueError, match=r"sources_a\[0\]"):
        make_audio_mixtures([np.full(5000, np.inf)], b, n_mixtures=1, n_frames=2)
    with pytest.raises(ValueError, match=r"sources_b\[0\].*1-D"):
        make_audio_mixtures(a, [np.ones((2, 5000))], n_mixtures=1, n_frames=2)
    with pytest.raises(ValueError, match="n_mixtures"):
        make_audio_mixtures(a, b, n_mixtures=0, n_frames=2)
    with pytest.raises(TypeError, match="n_frames"):
        make_audio_mixtures(a, b, n_mixtures=1, n_frames=2.5)
    with pytest.raises(ValueError, match="sample_rate"):
        make_audio_mixtures(a, b, n_mixtures=1, n_frames=2, sample_rate=-1)
    with pytest.raises(ValueError, match="ratio_db"):
        make_audio_mixtures(a, b, n_mixtures=1, n_frames=2, ratio_db=[1.0, 2.0])
    with pytest.raises(ValueError, match="ratio_db"):
        make_audio_mixtures(a, b, n_mixtures=1, n_frames=2, ratio_db=np.inf)
    with pytest.raises(ValueError, match="hop_length"):
        make_audio_mixtures(a, b, n_mixtures=1, n_frames=2, hop_length=2048)
    with pytest.raises(FileNotFoundError):
        make_audio_mixtures([tmp_path / "missing.wav"], b, n_mixtures=1, n_frames=2)


@pytest.mark.realdata
def test_real_speech_flute_mixtures(shared_data):
    speech = sorted((shared_data / "audio" / "speech" / "sisec2011_dev1").glob("*.wav"))[:2]
    flute = sorted((shared_data / "audio" / "flute").glob("*.flac"))[:2]
    if not speech or not flute:
        pytest.skip("speech or flute files missing")
    X, S = make_audio_mixtures(
        speech, flute, n_mixtures=3, n_frames=50, ratio_db=5.0, random_state=0
    )
    assert X.shape == (3, 12800) and S.shape == (3, 2, 12800)
    np.testing.assert_allclose(_ratio_db(S), 5.0, atol=1e-10)
    np.testing.assert_array_equal(X, S.sum(axis=1))
    assert np.all(np.isfinite(X)) and np.all(np.std(S, axis=-1) > 0)
