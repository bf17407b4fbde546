"""Corpus loaders: silence trimming, folder loading, power-spectrum sequences, real flute data."""

import csv

import numpy as np
import pytest

from mixest.datasets import load_audio_folder, make_spectral_sequences, trim_silence
from mixest.separation import read_audio, stft, write_audio


def _tone_with_silence(n=32000, a=8000, b=24000, amplitude=0.5, freq=440.0, rate=16000):
    x = np.zeros(n)
    x[a:b] = amplitude * np.sin(2 * np.pi * freq * np.arange(b - a) / rate)
    return x


def _locate(trimmed, x, a):
    """Start index of ``trimmed`` inside ``x``: its first nonzero sample is ``x[a]``'s next."""
    first = int(np.flatnonzero(trimmed)[0])
    first_in_x = a + int(np.flatnonzero(x[a:])[0])
    return first_in_x - first


# --------------------------------------------------------------------------------------------
# trim_silence
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_length, hop_length", [(1024, 256), (256, 64), (512, 512)])
def test_trim_silence_keeps_the_tone_and_drops_the_silent_ends(frame_length, hop_length):
    a, b = 8000, 24000
    x = _tone_with_silence(a=a, b=b)
    y = trim_silence(x, top_db=30.0, frame_length=frame_length, hop_length=hop_length)
    start = _locate(y, x, a)
    stop = start + y.shape[0]
    np.testing.assert_array_equal(y, x[start:stop])
    # The whole tone is kept ...
    assert start <= a and stop >= b
    # ... with at most one frame of silence on each side: the first loud frame is the first
    # one reaching into the tone (up to one hop), the last one the last reaching into it.
    assert a - frame_length < start <= a - frame_length + hop_length
    assert b + frame_length - hop_length <= stop < b + frame_length


def test_trim_silence_no_silence_and_loud_end():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000)
    np.testing.assert_array_equal(trim_silence(x), x)
    # Silence only at the start; the (partial) last frame reaches the end of the signal.
    z = np.concatenate([np.zeros(3000), x])
    y = trim_silence(z, frame_length=1024, hop_length=256)
    assert y.shape[0] <= 5000 + 1024 and np.array_equal(y[-5000:], x)
    # Shorter than one frame: the whole (non-silent) signal is one frame.
    np.testing.assert_array_equal(trim_silence(x[:100]), x[:100])


def test_trim_silence_threshold():
    # A quiet part 40 dB down is kept with top_db=50 and dropped with top_db=30.
    rng = np.random.default_rng(1)
    loud, quiet = rng.standard_normal(8000), 0.01 * rng.standard_normal(8000)
    x = np.concatenate([quiet, loud])
    assert trim_silence(x, top_db=50.0).shape[0] == 16000
    assert trim_silence(x, top_db=30.0).shape[0] < 8000 + 1024


def test_trim_silence_errors():
    with pytest.raises(ValueError, match="signal is all zeros"):
        trim_silence(np.zeros(1000))
    with pytest.raises(ValueError, match="signal"):
        trim_silence(np.ones((2, 100)))
    with pytest.raises(TypeError, match="signal"):
        trim_silence("abc")
    with pytest.raises(ValueError, match="top_db"):
        trim_silence(np.ones(100), top_db=-3.0)
    with pytest.raises(TypeError, match="top_db"):
        trim_silence(np.ones(100), top_db="30")
    with pytest.raises(ValueError, match="frame_length"):
        trim_silence(np.ones(100), frame_length=0)
    with pytest.raises(ValueError, match="hop_length"):
        trim_silence(np.ones(100), frame_length=256, hop_length=512)


# --------------------------------------------------------------------------------------------
# load_audio_folder
# --------------------------------------------------------------------------------------------


@pytest.fixture
def audio_folder(tmp_path):
    """Known files: tones with silence around them, at 16 and 8 kHz, in sub-folders."""
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "test").mkdir()
    write_audio(tmp_path / "b.wav", _tone_with_silence(amplitude=0.5), 16000)
    write_audio(tmp_path / "a" / "x.flac", _tone_with_silence(amplitude=0.25), 16000)
    write_audio(tmp_path / "a" / "y.wav", 0.3 * rng.uniform(-1, 1, 4000), 8000)
    write_audio(tmp_path / "test" / "t.wav", 0.5 * rng.uniform(-1, 1, 3000), 16000)
    write_audio(tmp_path / "testing.WAV", 0.5 * rng.uniform(-1, 1, 2000), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def test_load_audio_folder_order_resampling_normalisation(audio_folder):
    signals, paths = load_audio_folder(audio_folder, trim_db=None, return_paths=True)
    rel = [p.relative_to(audio_folder).as_posix() for p in paths]
    assert rel == ["a/x.flac", "a/y.wav", "b.wav", "test/t.wav", "testing.WAV"]
    assert all(s.dtype == np.float64 and s.ndim == 1 for s in signals)
    # 4000 samples at 8 kHz come back as 8000 samples at 16 kHz.
    assert signals[1].shape == (8000,)
    assert [s.shape[0] for s in signals] == [32000, 8000, 32000, 3000, 2000]
    for s in signals:
        assert np.max(np.abs(s)) == 1.0
    # Same as reading the file, then scaling.
    ref, _ = read_audio(audio_folder / "a" / "y.wav", sample_rate=16000)
    np.testing.assert_allclose(signals[1], ref / np.max(np.abs(ref)))
    # Without normalisation the file's level is kept.
    raw = load_audio_folder(audio_folder, trim_db=None, normalize=False)
    assert abs(np.max(np.abs(raw[0])) - 0.25) < 1e-3


def test_load_audio_folder_trims(audio_folder):
    signals, paths = load_audio_folder(audio_folder, exclude=["a/y", "test"], return_paths=True)
    assert [p.name for p in paths] == ["x.flac", "b.wav"]
    for s, p in zip(signals, paths, strict=True):
        x, _ = read_audio(p)
        expected = trim_silence(x, top_db=30.0)
        np.testing.assert_allclose(s, expected / np.max(np.abs(expected)))
        assert 16000 <= s.shape[0] <= 16000 + 2 * 1024


def test_load_audio_folder_exclude(audio_folder):
    def names(**kwargs):
        _, paths = load_audio_folder(audio_folder, trim_db=None, return_paths=True, **kwargs)
        return [p.relative_to(audio_folder).as_posix() for p in paths]

    # "test/" is the sub-folder only; "test" is a text prefix and also matches testing.WAV.
    assert names(exclude=["test/"]) == ["a/x.flac", "a/y.wav", "b.wav", "testing.WAV"]
    assert names(exclude=["test"]) == ["a/x.flac", "a/y.wav", "b.wav"]
    assert names(exclude="a") == ["b.wav", "test/t.wav", "testing.WAV"]  # one string, one entry
    assert names(exclude=["a/x.flac", "./b.wav"]) == ["a/y.wav", "test/t.wav", "testing.WAV"]


def test_load_audio_folder_errors(audio_folder, tmp_path_factory):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_audio_folder(audio_folder / "missing")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_audio_folder(audio_folder / "b.wav")
    empty = tmp_path_factory.mktemp("empty")
    (empty / "readme.txt").write_text("nothing")
    with pytest.raises(ValueError, match="no audio file .* folder"):
        load_audio_folder(empty)
    with pytest.raises(ValueError, match="excluded"):
        load_audio_folder(audio_folder, exclude=["a", "b", "t"])
    with pytest.raises(TypeError, match="folder"):
        load_audio_folder(3)
    with pytest.raises(TypeError, match="exclude"):
        load_audio_folder(audio_folder, exclude=[3])
    with pytest.raises(ValueError, match="exclude"):
        load_audio_folder(audio_folder, exclude=[""])
    with pytest.raises(ValueError, match="trim_db"):
        load_audio_folder(audio_folder, trim_db=0)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio_folder(audio_folder, sample_rate=0)
    with pytest.raises(TypeError, match="normalize"):
        load_audio_folder(audio_folder, normalize="yes")
    silent = tmp_path_factory.mktemp("silent")
    write_audio(silent / "zero.wav", np.zeros(100), 16000)
    with pytest.raises(ValueError, match="zero.wav"):
        load_audio_folder(silent)
    assert load_audio_folder(silent, trim_db=None, normalize=False)[0].shape == (100,)


# --------------------------------------------------------------------------------------------
# make_spectral_sequences
# --------------------------------------------------------------------------------------------


def test_spectral_sequences_values_match_the_stft():
    rng = np.random.default_rng(0)
    signals = [rng.standard_normal(16000), rng.standard_normal(1000), rng.standard_normal(9000)]
    n_frames, step = 10, 7
    seqs = make_spectral_sequences(signals, n_frames=n_frames, step=step)
    # 63 frames -> 8 sequences; 4 frames -> skipped; 36 frames -> 4 sequences.
    assert seqs.shape == (8 + 4, n_frames, 513) and seqs.dtype == np.float32
    i = 0
    for x in signals:
        power = np.abs(stft(x)) ** 2  # (513, n_frames_total)
        for start in range(0, power.shape[1] - n_frames + 1, step):
            np.testing.assert_allclose(
                seqs[i], power[:, start : start + n_frames].T, rtol=1e-5, atol=1e-6
            )
            i += 1
    assert i == seqs.shape[0]


def test_spectral_sequences_frame_is_a_windowed_fft():
    # Independent of mixest.separation.stft: frame t is centred on sample t * hop_length.
    rng = np.random.default_rng(3)
    x = rng.standard_normal(6000)
    n_fft, hop = 512, 128
    seqs = make_spectral_sequences([x], n_frames=5, step=9, n_fft=n_fft, hop_length=hop)
    window = np.sin(np.pi * (np.arange(n_fft) + 0.5) / n_fft)
    padded = np.concatenate([np.zeros(n_fft), x, np.zeros(n_fft)])
    for i, k in [(0, 0), (0, 4), (2, 3)]:
        t = i * 9 + k
        frame = padded[n_fft + t * hop - n_fft // 2 : n_fft + t * hop + n_fft // 2]
        expected = np.abs(np.fft.rfft(window * frame)) ** 2
        np.testing.assert_allclose(seqs[i, k], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("step, expected", [(None, 6), (10, 6), (5, 11), (20, 3), (1, 54)])
def test_spectral_sequences_step(step, expected):
    x = np.random.default_rng(1).standard_normal(16000)  # 63 frames
    seqs = make_spectral_sequences([x], n_frames=10, step=step)
    assert seqs.shape == (expected, 10, 513)
    if step == 5:  # overlapping sequences share frames
        np.testing.assert_array_equal(seqs[0, 5:], seqs[1, :5])


def test_spectral_sequences_2d_array_and_options():
    X = np.random.default_rng(2).standard_normal((3, 5120))  # 20 frames each
    seqs = make_spectral_sequences(X, n_frames=20, n_fft=512, hop_length=256, window="hann")
    assert seqs.shape == (3, 20, 257)


def test_spectral_sequences_min_level_db():
    rng = np.random.default_rng(4)
    seg = 10 * 256  # one sequence of 10 frames
    loud = rng.standard_normal(2 * seg)
    quiet = 1e-4 * rng.standard_normal(4 * seg)  # -80 dB
    x = np.concatenate([loud, quiet, loud])
    all_seqs = make_spectral_sequences([x], n_frames=10)
    assert all_seqs.shape[0] == 8
    level = 10 * np.log10(all_seqs.mean(axis=(1, 2)))
    assert np.sum(level < level.max() - 60) >= 2  # the fully quiet sequences 3 and 4
    kept = make_spectral_sequences([x], n_frames=10, min_level_db=40)
    np.testing.assert_array_equal(kept, all_seqs[level >= np.median(level) - 40])
    assert kept.shape[0] < 8
    assert np.array_equal(make_spectral_sequences([x], n_frames=10, min_level_db=200), all_seqs)
    # All-zero sequences are dropped whatever the median.
    z = np.concatenate([np.zeros(3 * seg), loud[:seg]])
    assert make_spectral_sequences([z], n_frames=10, min_level_db=0).shape[0] < 4


def test_spectral_sequences_errors():
    x = np.random.default_rng(0).standard_normal(4000)
    with pytest.raises(ValueError, match="signals is empty"):
        make_spectral_sequences([])
    with pytest.raises(TypeError, match="signals.*wrap"):
        make_spectral_sequences(x)
    with pytest.raises(ValueError, match="n_frames"):
        make_spectral_sequences([x], n_frames=0)
    with pytest.raises(TypeError, match="n_frames"):
        make_spectral_sequences([x], n_frames=2.5)
    with pytest.raises(ValueError, match="step"):
        make_spectral_sequences([x], n_frames=2, step=0)
    with pytest.raises(ValueError, match="min_level_db"):
        make_spectral_sequences([x], n_frames=2, min_level_db=-40)
    with pytest.raises(ValueError, match="hop_length"):
        make_spectral_sequences([x], n_frames=2, n_fft=256, hop_length=512)
    with pytest.raises(ValueError, match="window"):
        make_spectral_sequences([x], n_frames=2, window="boxcar")
    with pytest.raises(ValueError, match=r"signals\[1\]"):
        make_spectral_sequences([x, np.array([1.0, np.nan])], n_frames=2)
    with pytest.raises(ValueError, match="long enough"):
        make_spectral_sequences([x], n_frames=50)  # 16 frames only
    with pytest.raises(ValueError, match="silent"):
        make_spectral_sequences([np.zeros(4000)], n_frames=2, min_level_db=10)


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_flute_training_clips(shared_data):
    folder = shared_data / "audio" / "flute"
    if not folder.is_dir():
        pytest.skip(f"no flute clips in {folder}")
    signals, paths = load_audio_folder(
        folder,
        exclude=["Medley-solos-DB_test", "Medley-solos-DB_validation"],
        return_paths=True,
    )
    with (folder / "flute_clips.csv").open() as f:
        split = {row["file"]: row["split"] for row in csv.DictReader(f)}
    assert [split[p.name] for p in paths] == ["training"] * len(paths)
    assert len(paths) == sum(s == "training" for s in split.values()) == 10
    for s in signals:
        # 131072 samples at 44.1 kHz are 47555 samples at 16 kHz; trimming only shortens them.
        assert 16000 < s.shape[0] <= 47555 and np.max(np.abs(s)) == 1.0
    seqs = make_spectral_sequences(signals, n_frames=50, min_level_db=40)
    assert seqs.ndim == 3 and seqs.shape[1:] == (50, 513) and seqs.shape[0] >= 10
    assert np.all(np.isfinite(seqs)) and np.all(seqs >= 0)
