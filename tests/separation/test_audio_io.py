"""Audio I/O and resampling: round trips, downmix, resampling, errors, real files."""

import numpy as np
import pytest
import soundfile as sf

from mixest.separation import read_audio, resample, write_audio


def _tone(n, rate, freq=440.0):
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def test_wav_flac_round_trip(tmp_path):
    x = _tone(800, 8000)
    for name, atol in [("a.wav", 1 / 2**15), ("a.flac", 1 / 2**15)]:
        write_audio(tmp_path / name, x, 8000)
        y, rate = read_audio(tmp_path / name)
        assert rate == 8000 and y.dtype == np.float64 and y.shape == x.shape
        np.testing.assert_allclose(y, x, atol=atol)
    write_audio(tmp_path / "f.wav", x, 8000, subtype="DOUBLE")
    np.testing.assert_array_equal(read_audio(str(tmp_path / "f.wav"))[0], x)


def test_multichannel_downmix(tmp_path):
    left, right = _tone(500, 16000), _tone(500, 16000, 1000.0)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="DOUBLE")
    y, rate = read_audio(tmp_path / "st.wav")
    assert y.ndim == 1 and rate == 16000
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-12)


def test_read_with_resampling(tmp_path):
    x = _tone(4410, 44100)
    write_audio(tmp_path / "a.flac", x, 44100)
    y, rate = read_audio(tmp_path / "a.flac", sample_rate=16000)
    assert rate == 16000 and y.shape == (1600,)
    y_same, rate_same = read_audio(tmp_path / "a.flac", sample_rate=44100)
    assert rate_same == 44100 and y_same.shape == (4410,)


def test_resample_reduced_fraction_and_tone():
    rate_in, rate_out = 44100, 16000
    x = _tone(44100, rate_in)
    y = resample(x, rate_in, rate_out)
    assert y.shape == (16000,)
    # A 440 Hz tone stays a 440 Hz tone (away from the filter's edge effects).
    np.testing.assert_allclose(y[1000:-1000], _tone(16000, rate_out)[1000:-1000], atol=1e-3)
    np.testing.assert_array_equal(resample(x, 8000, 8000), x)
    assert resample(np.ones(441), 44100, 16000).shape == (160,)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        read_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match="not a readable audio file"):
        read_audio(tmp_path / "junk.wav")
    sf.write(tmp_path / "zero.wav", np.zeros(0), 8000)
    with pytest.raises(ValueError, match="no audio samples"):
        read_audio(tmp_path / "zero.wav")
    with pytest.raises(TypeError, match="path"):
        read_audio(42)


@pytest.mark.parametrize(
    "rate, exc", [(0, ValueError), (-16000, ValueError), (16000.5, ValueError), ("16k", TypeError)]
)
def test_bad_sample_rates(tmp_path, rate, exc):
    write_audio(tmp_path / "a.wav", _tone(100, 8000), 8000)
    with pytest.raises(exc, match="sample_rate"):
        read_audio(tmp_path / "a.wav", sample_rate=rate)
    with pytest.raises(exc, match="sample_rate"):
        write_audio(tmp_path / "b.wav", _tone(100, 8000), rate)
    with pytest.raises(exc, match="orig_rate"):
        resample(_tone(100, 8000), rate, 8000)


def test_float_rate_with_integer_value_is_accepted(tmp_path):
    write_audio(tmp_path / "a.wav", _tone(100, 8000), 8000.0)
    assert read_audio(tmp_path / "a.wav", sample_rate=16000.0)[1] == 16000


@pytest.mark.parametrize(
    "signal, exc, match",
    [
        (np.zeros((2, 100)), ValueError, "1-D"),
        (np.array([0.0, np.nan]), ValueError, "NaN or infinite"),
        (np.array([0.0, np.inf]), ValueError, "NaN or infinite"),
        (np.zeros(0), ValueError, "empty"),
        (np.zeros(10, dtype=complex), TypeError, "real"),
        ("abc", TypeError, "signal"),
    ],
)
def test_bad_signals(tmp_path, signal, exc, match):
    with pytest.raises(exc, match=match):
        write_audio(tmp_path / "a.wav", signal, 8000)
    with pytest.raises(exc, match=match):
        resample(signal, 8000, 16000)


def test_pcm_clipping_is_refused(tmp_path):
    with pytest.raises(ValueError, match="clip"):
        write_audio(tmp_path / "loud.wav", 3 * _tone(100, 8000), 8000)
    write_audio(tmp_path / "loud.wav", 3 * _tone(100, 8000), 8000, subtype="FLOAT")
    assert np.max(read_audio(tmp_path / "loud.wav")[0]) > 1.4


@pytest.mark.realdata
def test_real_speech_and_flute(shared_data):
    speech = sorted((shared_data / "audio" / "speech" / "sisec2011_dev1").glob("*.wav"))
    flute = sorted((shared_data / "audio" / "flute").glob("*.flac"))
    if not speech or not flute:
        pytest.skip("speech or flute files missing")
    x, rate = read_audio(speech[0])
    assert rate == 16000 and x.ndim == 1 and x.size == 160000
    assert 0 < np.max(np.abs(x)) <= 1
    y, rate = read_audio(flute[0], sample_rate=16000)
    assert rate == 16000 and y.shape == (-(-131072 * 160 // 441),)
    assert np.all(np.isfinite(y)) and np.std(y) > 0


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 1)])
def test_truncated_wav_is_refused(tmp_path, subtype, channels):
    x = np.stack([_tone(1000, 8000)] * channels, axis=1)
    path = tmp_path / "cut.wav"
    sf.write(path, x, 8000, subtype=subtype)
    read_audio(path)  # intact: read
    full = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(full - (full - 44) // 2)  # drop half of the samples
    assert sf.info(path).frames < 1000  # libsndfile alone would read what is left silently
    with pytest.raises(ValueError, match="truncated: its header declares"):
        read_audio(path)


def test_wav_with_extra_chunks_and_unknown_data_size_is_read(tmp_path):
    # A LIST chunk before the data, and a streaming writer's 0xFFFFFFFF data size.
    x = (_tone(500, 8000) * 2**15).astype("<i2").tobytes()
    fmt = (16).to_bytes(4, "little") + bytes.fromhex("0100 0100 401f0000 803e0000 0200 1000")
    info = b"INFOISFT" + (3).to_bytes(4, "little") + b"ab\x00\x00"  # odd size: padded
    chunks = (
        b"fmt " + fmt + b"LIST" + (len(info) - 1).to_bytes(4, "little") + info
        + b"data" + (0xFFFFFFFF).to_bytes(4, "little") + x
    )
    path = tmp_path / "stream.wav"
    path.write_bytes(b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks)
    y, rate = read_audio(path)
    assert rate == 8000 and y.shape == (500,)
