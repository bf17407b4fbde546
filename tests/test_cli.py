"""The ``mixest`` command line."""

import numpy as np
import pytest

import mixest
from mixest.cli import METHOD_OPTIONS, METHODS, main
from mixest.datasets import make_tracking_mixture
from mixest.tracking import read_mot, tracks_to_table, write_mot


def _write_sequence(tmp_path, T=20):
    X, y = make_tracking_mixture(1, 3, T, jitter=0.02, miss_prob=0.1, random_state=0,
                                 box_format="xyxy", image_size=None)
    size = np.array([1920.0, 1080.0, 1920.0, 1080.0])
    xyxy = X[0] * size
    xywh = np.concatenate([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2]], -1)
    det = tracks_to_table(xywh)  # one row per detection; ids are ignored by the tracker
    seq = tmp_path / "SEQ"
    write_mot(seq / "det" / "det.txt", det)
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname=SEQ\nimDir=img1\nframeRate=30\nseqLength={T}\nimWidth=1920\n"
        "imHeight=1080\nimExt=.jpg\n"
    )
    return seq / "det" / "det.txt"


@pytest.mark.parametrize("method", ["greedy", "mixdvae", "vkf", "sort"])
def test_track_writes_results_and_plot(tmp_path, method, capsys):
    det = _write_sequence(tmp_path)
    out = tmp_path / "res.txt"
    png = tmp_path / "tracks.png"
    argv = ["track", str(det), "-n", "3", "--frames", "2:15", "-o", str(out), "--method",
            method, "--plot", str(png)]
    if "max_iter" in METHOD_OPTIONS[method]:
        argv += ["--max-iter", "3"]
    if method == "mixdvae":
        argv += ["--prior", "constant-velocity"]
    assert main(argv) == 0
    table = read_mot(out)
    assert set(table["id"]) == {1, 2, 3}
    assert table["frame"].min() == 2 and table["frame"].max() == 15
    assert png.is_file() and png.stat().st_size > 0
    assert "tracked 3 objects" in capsys.readouterr().out


def _fails(argv, capsys, status=2):
    """Run ``main(argv)``; check it exits with ``status`` and a one-line message, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == status
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("mixest: error: ") and "\n" not in err and "Traceback" not in err
    return err


def _fit_must_not_run(monkeypatch):
    """Make every tracker's fit fail, to show that a check runs before the tracking."""
    from mixest.baselines import DeepARTracker, GreedyTracker, SORTTracker, VKFTracker
    from mixest.tracking._tracker import MixDVAETracker

    def fit(self, *args, **kwargs):
        raise AssertionError("the tracking ran before the check")

    for cls in (MixDVAETracker, VKFTracker, DeepARTracker, SORTTracker, GreedyTracker):
        monkeypatch.setattr(cls, "fit", fit)


def test_track_errors(tmp_path, capsys):
    det = _write_sequence(tmp_path)
    out = str(tmp_path / "r.txt")
    err = _fails(["track", str(tmp_path / "missing.txt"), "-o", out], capsys, status=1)
    assert "missing.txt" in err
    assert "'nope'" in _fails(["track", str(det), "-o", out, "--method", "nope"], capsys)
    assert "9:2" in _fails(["track", str(det), "-o", out, "--frames", "9:2"], capsys)
    assert "1-based" in _fails(["track", str(det), "-o", out, "--frames", "0:5"], capsys)
    assert "FIRST:LAST" in _fails(["track", str(det), "-o", out, "--frames", "a:b"], capsys)
    assert "--n-sources" in _fails(["track", str(det), "-o", out, "-n", "0"], capsys)
    # argparse's own errors are one line too
    assert "--max-iter" in _fails(["track", str(det), "-o", out, "--max-iter", "x"], capsys)
    assert "--output" in _fails(["track", str(det)], capsys)


@pytest.mark.parametrize(
    ("method", "option", "value"),
    [
        ("vkf", "--prior", "train"),
        ("sort", "--prior", "pretrained:mot"),
        ("greedy", "--prior", "constant-velocity"),
        ("sort", "--max-iter", "3"),
        ("greedy", "--max-iter", "3"),
        ("sort", "--seed", "0"),
        ("greedy", "--seed", "1"),
    ],
)
def test_track_refuses_options_the_method_ignores(tmp_path, capsys, monkeypatch, method, option,
                                                  value):
    _fit_must_not_run(monkeypatch)
    det = _write_sequence(tmp_path)
    err = _fails(["track", str(det), "-o", str(tmp_path / "r.txt"), "--method", method, option,
                  value], capsys)
    assert f"{option} does not apply to --method {method}" in err
    assert not (tmp_path / "r.txt").exists()


@pytest.mark.parametrize(
    ("method", "prior", "match"),
    [
        ("mixdvae", "foo", "--prior 'foo' is not a prior of --method mixdvae"),
        ("mixdvae", "pretrained:mot-ar", "choose from pretrained:mot, constant-velocity"),
        ("mixdvae", "train", "--prior train needs ground-truth tracks"),
        ("deep-ar", "pretrained:mot", "choose from pretrained:mot-ar, train"),
        ("deep-ar", "constant-velocity", "not a prior of --method deep-ar"),
    ],
)
def test_track_refuses_unknown_priors(tmp_path, capsys, monkeypatch, method, prior, match):
    _fit_must_not_run(monkeypatch)
    det = _write_sequence(tmp_path)
    err = _fails(["track", str(det), "-o", str(tmp_path / "r.txt"), "--method", method,
                  "--prior", prior], capsys)
    assert match in err


def test_track_prior_file(tmp_path, capsys):
    from mixest.dvae import DVAE

    det = _write_sequence(tmp_path, T=10)
    out = tmp_path / "r.txt"
    err = _fails(["track", str(det), "-o", str(out), "--prior", str(tmp_path / "none.pt")],
                 capsys, status=1)
    assert "none.pt: file not found" in err
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    err = _fails(["track", str(det), "-o", str(out), "--prior", str(tmp_path / "bad.pt")],
                 capsys, status=1)
    assert "bad.pt" in err
    DVAE.from_pretrained("mot").save(tmp_path / "prior.pt")
    argv = ["track", str(det), "-o", str(out), "--prior", str(tmp_path / "prior.pt"),
            "--max-iter", "2"]
    assert main(argv) == 0
    assert set(read_mot(out)["id"]) == {1, 2, 3}


@pytest.mark.parametrize(
    ("method", "given", "expected"),
    [
        ("mixdvae", [], {"prior": "pretrained:mot", "max_iter": 70, "random_state": 0}),
        ("mixdvae", ["--prior", "constant-velocity", "--max-iter", "4", "--seed", "7"],
         {"prior": "constant-velocity", "max_iter": 4, "random_state": 7}),
        ("vkf", [], {"max_iter": 30, "random_state": 0}),
        ("vkf", ["--max-iter", "5", "--seed", "3"], {"max_iter": 5, "random_state": 3}),
        ("deep-ar", [], {"prior": "pretrained:mot-ar", "max_iter": 30, "random_state": 0}),
        ("deep-ar", ["--prior", "train", "--max-iter", "2", "--seed", "9"],
         {"prior": "train", "max_iter": 2, "random_state": 9}),
    ],
)
def test_track_passes_options_to_the_tracker(tmp_path, capsys, monkeypatch, method, given,
                                             expected):
    from mixest.baselines import DeepARTracker, VKFTracker
    from mixest.tracking._tracker import MixDVAETracker

    seen = {}

    class Stop(Exception):
        pass

    def fit(self, *args, **kwargs):
        seen.update(self.get_params())
        raise Stop

    cls = {"mixdvae": MixDVAETracker, "vkf": VKFTracker, "deep-ar": DeepARTracker}[method]
    monkeypatch.setattr(cls, "fit", fit)
    det = _write_sequence(tmp_path, T=5)
    with pytest.raises(Stop):
        main(["track", str(det), "-o", str(tmp_path / "r.txt"), "--method", method, *given])
    assert {k: seen[k] for k in expected} == expected
    assert seen["image_size"] == (1920.0, 1080.0) and seen["n_sources"] == 3


def test_method_options_cover_the_registry():
    assert set(METHOD_OPTIONS) == set(METHODS)
    assert METHOD_OPTIONS["deep-ar"]["prior"] == "pretrained:mot-ar"
    assert METHOD_OPTIONS["sort"] == METHOD_OPTIONS["greedy"] == {}


def test_track_same_seed_same_file(tmp_path, capsys):
    det = _write_sequence(tmp_path, T=12)
    files = []
    for name in ("a.txt", "b.txt"):
        out = tmp_path / name
        assert main(["track", str(det), "-o", str(out), "--max-iter", "3", "--seed", "0"]) == 0
        files.append(out.read_bytes())
    assert files[0] == files[1]


def test_track_deep_ar_uses_bundled_weights(tmp_path, capsys, monkeypatch):
    import mixest.datasets

    def no_training(*args, **kwargs):
        raise AssertionError("deep-ar trained a network instead of loading the bundled one")

    monkeypatch.setattr(mixest.datasets, "make_trajectories", no_training)
    det = _write_sequence(tmp_path, T=10)
    out = tmp_path / "r.txt"
    assert main(["track", str(det), "-o", str(out), "--method", "deep-ar", "--max-iter",
                 "2"]) == 0
    assert set(read_mot(out)["id"]) == {1, 2, 3}


def test_track_one_object_and_more_objects_than_detections(tmp_path, capsys):
    det = _write_sequence(tmp_path, T=8)
    out = tmp_path / "r.txt"
    assert main(["track", str(det), "-o", str(out), "-n", "1", "--method", "greedy"]) == 0
    assert "tracked 1 object over" in capsys.readouterr().out
    # 5 objects, at most 3 detections a frame: the missing ones are NaN rows, not an error
    assert main(["track", str(det), "-o", str(out), "-n", "5", "--max-iter", "2",
                 "--prior", "constant-velocity"]) == 0
    assert "tracked 5 objects" in capsys.readouterr().out


def test_track_targets_choose_whom_to_track(tmp_path, capsys):
    """Six walkers, the three to track listed last in every frame of det.txt: by default the
    tracker follows the first three boxes of the first frame; ``--targets`` with the three
    walkers' first boxes makes it follow them instead, over every frame."""
    from mixest.tracking import mota_score

    T = 40
    _, y = make_tracking_mixture(1, 6, T, random_state=1, box_format="xyxy", image_size=None)
    xyxy = y[0] * np.array([1920.0, 1080.0, 1920.0, 1080.0])
    xywh = np.concatenate([xyxy[..., :2], xyxy[..., 2:] - xyxy[..., :2]], -1)
    det, out = tmp_path / "det.txt", tmp_path / "r.txt"
    write_mot(det, tracks_to_table(xywh[:, [3, 4, 5, 0, 1, 2]]))
    argv = ["track", str(det), "-o", str(out), "--prior", "constant-velocity", "--max-iter",
            "5"]

    def tracks():
        table = read_mot(out)
        return np.stack([table[table["id"] == i][["bb_left", "bb_top", "bb_width",
                                                  "bb_height"]].to_numpy() for i in (1, 2, 3)], 1)

    targets = xywh[:, :3]
    assert main(argv) == 0
    assert mota_score(targets[None], tracks()[None]) < 0.1
    assert main(argv + ["--targets", *(",".join(map(str, box)) for box in targets[0])]) == 0
    assert "tracked 3 objects" in capsys.readouterr().out
    assert mota_score(targets[None], tracks()[None]) > 0.95
    # the number of boxes is the number of objects; a different -n is refused, as are bad boxes
    assert "--targets gives 2 boxes but --n-sources is 3" in _fails(
        argv + ["-n", "3", "--targets", "1,2,3,4", "5,6,7,8"], capsys)
    for bad in ("1,2,3", "1,2,3,x", "1,2,0,4", "1,2,3,inf"):
        assert "X,Y,W,H" in _fails(argv + ["--targets", bad], capsys)


def test_track_frames_without_detections(tmp_path, capsys, monkeypatch):
    det = _write_sequence(tmp_path, T=30)
    out = tmp_path / "r.txt"
    with monkeypatch.context() as m:
        _fit_must_not_run(m)
        for frames in ("900:960", "31:40"):
            err = _fails(["track", str(det), "-o", str(out), "--frames", frames], capsys)
            assert f"--frames {frames}" in err and str(det) in err and "frames 1-30" in err
    assert not out.exists()
    # a range reaching past the end is clipped (a note, and no huge array)
    assert main(["track", str(det), "-o", str(out), "--frames", "25:100000000", "--method",
                 "greedy"]) == 0
    captured = capsys.readouterr()
    assert "clipped to 25:30" in captured.err and "frames 25-30" in captured.out
    table = read_mot(out)
    assert table["frame"].min() == 25 and table["frame"].max() == 30


def test_track_frames_with_a_gap_are_tracked(tmp_path, capsys):
    det = _write_sequence(tmp_path, T=20)
    table = read_mot(det)
    write_mot(det, table[(table["frame"] < 8) | (table["frame"] > 12)])  # frames 8-12 empty
    out = tmp_path / "r.txt"
    assert main(["track", str(det), "-o", str(out), "--frames", "5:15", "--max-iter", "2",
                 "--prior", "constant-velocity"]) == 0
    result = read_mot(out)
    assert result["frame"].min() == 5 and result["frame"].max() == 15


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file"),
        (b"1,-1,10,20,30,40,1,-1,-1,-1\n2,-1,10,abc,30,40,1,-1,-1,-1\n",
         r"line 2, column 4 (bb_top) is not a number: 'abc'"),
        (b"", "empty"),
    ],
)
def test_track_bad_detection_file(tmp_path, capsys, monkeypatch, content, match):
    _fit_must_not_run(monkeypatch)
    det = tmp_path / "det.txt"
    det.write_bytes(content)
    err = _fails(["track", str(det), "-o", str(tmp_path / "r.txt")], capsys, status=1)
    assert str(det) in err and match in err


@pytest.mark.parametrize(
    ("ini", "match"),
    [
        ("imWidth=abc\nimHeight=1080\n", "imWidth must be a positive number of pixels, got 'abc'"),
        ("imWidth=1920\nimHeight=0\n", "imHeight must be a positive number of pixels, got 0"),
        ("imHeight=1080\n", "[Sequence] has no imWidth"),
        ("imWidth=1920\n", "[Sequence] has no imHeight"),
    ],
)
def test_track_bad_seqinfo(tmp_path, capsys, monkeypatch, ini, match):
    _fit_must_not_run(monkeypatch)
    det = _write_sequence(tmp_path)
    seqinfo = tmp_path / "SEQ" / "seqinfo.ini"
    seqinfo.write_text("[Sequence]\nname=SEQ\n" + ini)
    err = _fails(["track", str(det), "-o", str(tmp_path / "r.txt")], capsys, status=1)
    assert str(seqinfo) in err and match in err
    seqinfo.write_bytes(b"\xff\xfe\x00binary")
    err = _fails(["track", str(det), "-o", str(tmp_path / "r.txt")], capsys, status=1)
    assert "seqinfo.ini" in err and "binary" in err


def test_track_checks_output_and_plot_before_tracking(tmp_path, capsys, monkeypatch):
    _fit_must_not_run(monkeypatch)
    det = _write_sequence(tmp_path)
    out = str(tmp_path / "r.txt")
    err = _fails(["track", str(det), "-o", str(tmp_path)], capsys)
    assert "--output" in err and "is a folder" in err
    err = _fails(["track", str(det), "-o", str(det)], capsys)
    assert "--output" in err and "would overwrite it" in err
    err = _fails(["track", str(det), "-o", str(det / "sub" / "r.txt")], capsys)
    assert "--output" in err and "cannot create the folder" in err
    err = _fails(["track", str(det), "-o", out, "--plot", str(tmp_path / "t.foo")], capsys)
    assert "--plot" in err and "'.foo'" in err and ".png" in err
    err = _fails(["track", str(det), "-o", out, "--plot", str(tmp_path / "tracks")], capsys)
    assert "without an extension" in err
    err = _fails(["track", str(det), "-o", out, "--plot", str(det / "t.png")], capsys)
    assert "--plot" in err and "cannot create the folder" in err
    assert not (tmp_path / "r.txt").exists()


def test_track_plot_formats(tmp_path, capsys):
    det = _write_sequence(tmp_path, T=6)
    for name in ("deep/er/tracks.svg", "tracks.PDF"):
        plot = tmp_path / name
        assert main(["track", str(det), "-o", str(tmp_path / "r.txt"), "--method", "greedy",
                     "--plot", str(plot)]) == 0
        assert plot.is_file() and plot.stat().st_size > 0


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert mixest.__version__ in capsys.readouterr().out
    for argv in (["--help"], ["track", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "``" not in text and ":data:" not in text and ":meth:" not in text
    main_help = _help(["--help"], capsys)
    assert "track" in main_help and "demo" in main_help
    track_help = _help(["track", "--help"], capsys)
    for words in ("pretrained:mot, constant-velocity", "pretrained:mot-ar, train",
                  "(default: mixdvae)", "(default: 3, or the number of --targets)",
                  "--max-iter", "--seed", "variational EM iterations", "random seed", "clipped",
                  "--targets names the objects"):
        assert words in track_help
    assert "default: None" not in track_help


def _help(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    return " ".join(capsys.readouterr().out.split())


def test_methods_registry_is_extensible():
    assert {"mixdvae", "greedy", "vkf", "deep-ar", "sort"} <= set(METHODS)


def test_demo_runs(capsys, tmp_path):
    import matplotlib.image

    from mixest.separation import read_audio

    out_dir = tmp_path / "demo"
    assert main(["demo", "--n-sequences", "3", "--n-frames", "20", "--max-iter", "3",
                 "--prior", "constant-velocity", "-o", str(out_dir)]) == 0
    out = capsys.readouterr().out
    for name in ("greedy", "sort", "vkf", "vem+cv", "mixdvae", "MOTA", "SI-SDR", "oracle mask",
                 "dvae-init", "deep-ar", "nmf", "tnmf", str(out_dir)):
        assert name in out, name
    files = {p.name for p in out_dir.iterdir()}
    assert files == {"tracks.png", "separation.png", "mixture.wav", "mixdvae_tone.wav",
                     "mixdvae_hiss.wav"}
    assert matplotlib.image.imread(out_dir / "tracks.png").ndim == 3
    mixture, rate = read_audio(out_dir / "mixture.wav")
    sources = [read_audio(out_dir / f"mixdvae_{n}.wav")[0] for n in ("tone", "hiss")]
    assert rate == 16000 and np.abs(mixture).max() <= 1.0
    # the sources sum back to the mixture (16-bit rounding aside)
    np.testing.assert_allclose(sources[0] + sources[1], mixture, atol=2e-3)


def test_demo_errors(capsys, tmp_path):
    assert "--prior 'foo'" in _fails(["demo", "--prior", "foo"], capsys)
    assert "--max-iter" in _fails(["demo", "--max-iter", "0"], capsys)
    (tmp_path / "f").write_text("x")
    assert "is a file" in _fails(["demo", "-o", str(tmp_path / "f")], capsys)


# ---------------------------------------------------------------------------- mixest separate


def _tiny_is_prior(signals, path):
    """Train a tiny Itakura-Saito prior on the power spectra of ``signals`` and save it."""
    from mixest.dvae import DVAE, Network
    from mixest.separation import stft

    power = np.moveaxis(np.abs(stft(signals)) ** 2, -1, -2)  # (n, 50, 513)
    prior = DVAE(likelihood="itakura_saito", network=Network(z_dim=2, rnn_dim=4, dense_dims=(8,)),
                 n_epochs=2, batch_size=8, validation_fraction=0.0, device="cpu", random_state=0)
    prior.fit(power).save(path)
    return path


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Two tiny spectral priors (a tone, noise) and 1 s mixtures of both at 16 and 44.1 kHz."""
    from mixest.separation import write_audio

    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    t = np.arange(4 * 12800) / 16000
    tone = _tiny_is_prior(np.sin(2 * np.pi * 440 * t).reshape(4, 12800), folder / "tone.pt")
    noise = _tiny_is_prior(0.1 * rng.standard_normal((4, 12800)), folder / "noise.pt")
    mixtures = {}
    for rate in (16000, 44100):
        t = np.arange(rate) / rate
        x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(rate)
        mixtures[rate] = folder / f"mix{rate}.wav"
        write_audio(mixtures[rate], x, rate)
    train = {}
    for name, signal in (("tone", np.sin(2 * np.pi * 440 * t)),
                         ("noise", 0.1 * rng.standard_normal(t.size))):
        train[name] = folder / "train" / name
        train[name].mkdir(parents=True)
        write_audio(train[name] / "a.wav", signal, 16000)
    return {"tone": tone, "noise": noise, "mix": mixtures, "folder": folder, "train": train}


def _priors(audio, *names):
    return ",".join(str(audio[name]) for name in names)


def _separation_must_not_run(monkeypatch):
    """Make the separator fail if used, to show that a check runs before the separation."""
    from mixest.separation._separator import MixDVAESeparator

    def fail(self, *args, **kwargs):
        raise AssertionError("the separation ran before the check")

    monkeypatch.setattr(MixDVAESeparator, "fit", fail)
    monkeypatch.setattr(MixDVAESeparator, "transform", fail)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_separate_writes_one_file_per_source(tmp_path, capsys, audio, rate):
    from mixest.separation import read_audio, resample, si_sdr

    mix = audio["mix"][rate]
    out = tmp_path / "new" / "sources"
    argv = ["separate", str(mix), "--out-dir", str(out), "--priors",
            _priors(audio, "tone", "noise"), "--max-iter", "3"]
    assert main(argv) == 0
    x, x_rate = read_audio(mix)
    files = [out / f"{mix.stem}_tone.wav", out / f"{mix.stem}_noise.wav"]
    assert sorted(out.iterdir()) == sorted(files)
    sources = []
    for path in files:
        signal, file_rate = read_audio(path)
        assert file_rate == x_rate == rate and signal.shape == x.shape
        sources.append(signal)
    # the read-out is a Wiener filter of the mixture's STFT: the sources sum to the mixture,
    # as the priors hear it (at 16 kHz: what lies above 8 kHz is lost to the resampling)
    heard = resample(resample(x, rate, 16000), 16000, rate)[: x.size]
    assert si_sdr(heard, np.sum(sources, axis=0)) > 20
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2
    assert all(str(path) in line for path, line in zip(files, lines, strict=True))
    assert "Traceback" not in captured.err


def test_separate_quiet_duplicate_labels_and_plot(tmp_path, capsys, audio):
    import matplotlib.image

    png = tmp_path / "figs" / "separation.png"
    argv = ["separate", str(audio["mix"][16000]), "-o", str(tmp_path), "--priors",
            _priors(audio, "tone", "tone"), "--max-iter", "0", "--plot", str(png), "--quiet"]
    assert main(argv) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "mix16000_tone_1.wav").is_file()
    assert (tmp_path / "mix16000_tone_2.wav").is_file()
    assert png.is_file() and matplotlib.image.imread(png).ndim == 3


def test_plot_without_a_file_name_goes_next_to_the_output(tmp_path, capsys, audio):
    det = _write_sequence(tmp_path)
    out = tmp_path / "results" / "res.txt"
    assert main(["track", str(det), "-n", "3", "--frames", "2:15", "-o", str(out), "--method",
                 "greedy", "--plot", "--quiet"]) == 0
    assert out.is_file() and (tmp_path / "results" / "res.png").stat().st_size > 0
    err = _fails(["track", str(det), "-o", str(tmp_path / "res.png"), "--plot"], capsys)
    assert "--plot" in err and "--output" in err
    # a bare --plot before the positional argument would take it as the file: refused
    err = _fails(["track", "--plot", str(det), "-o", str(out)], capsys)
    assert "detections" in err
    out_dir = tmp_path / "sources"
    assert main(["separate", str(audio["mix"][16000]), "-o", str(out_dir), "--priors",
                 _priors(audio, "tone", "noise"), "--max-iter", "0", "--plot", "-q"]) == 0
    assert (out_dir / "mix16000.png").stat().st_size > 0
    assert (out_dir / "mix16000_tone.wav").is_file()


def test_separate_checks_before_separating(tmp_path, capsys, monkeypatch, audio):
    _separation_must_not_run(monkeypatch)
    mix, priors = str(audio["mix"][16000]), _priors(audio, "tone", "noise")
    out = str(tmp_path / "out")

    def fails(*extra, status=2, argv=None):
        argv = argv or ["separate", mix, "-o", out, "--priors", priors, *extra]
        return _fails(argv, capsys, status=status)

    err = fails("--plot", str(tmp_path / "p.xyz"))
    assert "--plot" in err and "'.xyz'" in err and ".png" in err
    assert "--max-iter must be at least 0, got -1" in fails("--max-iter", "-1")
    err = fails(argv=["separate", mix, "-o", out, "--priors", str(audio["tone"])])
    assert "at least two" in err
    assert "empty item" in fails(argv=["separate", mix, "-o", out, "--priors", priors + ","])
    missing = tmp_path / "none.pt"
    err = fails(argv=["separate", mix, "-o", out, "--priors", f"{audio['tone']},{missing}"],
                status=1)
    assert f"{missing}: file not found" in err
    err = fails(argv=["separate", mix, "-o", out, "--priors", f"{audio['tone']},nosuchprior"],
                status=1)
    assert "'nosuchprior'" in err and "available" in err and "mot" in err
    (tmp_path / "a_file").write_text("x")
    err = fails(argv=["separate", mix, "-o", str(tmp_path / "a_file"), "--priors", priors])
    assert "--out-dir" in err and "is a file" in err
    err = fails(argv=["separate", str(tmp_path / "nope.wav"), "-o", out, "--priors", priors],
                status=1)
    assert "nope.wav" in err
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n")
    err = fails(argv=["separate", str(text), "-o", out, "--priors", priors], status=1)
    assert "notes.txt" in err
    assert "MIXTURE" in fails(argv=["separate", "-o", out])  # argparse: one line too
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_separate_refuses_priors_that_are_not_spectral(tmp_path, capsys, audio):
    from mixest.dvae import DVAE

    box_prior = tmp_path / "boxes.pt"
    DVAE.from_pretrained("mot").save(box_prior)
    err = _fails(["separate", str(audio["mix"][16000]), "-o", str(tmp_path / "out"),
                  "--priors", f"{audio['tone']},{box_prior}", "--max-iter", "1"], capsys,
                 status=1)
    assert "Itakura-Saito" in err and "513" in err and str(box_prior) in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    err = _fails(["separate", str(audio["mix"][16000]), "-o", str(tmp_path / "out"),
                  "--priors", f"{audio['tone']},{bad}"], capsys, status=1)
    assert "bad.pt" in err


def test_separate_bundled_prior_names(tmp_path, capsys, monkeypatch, audio):
    """A name goes to the registry: unknown, or its weights missing, is one line, status 1."""
    from mixest.pretrained import _registry

    _separation_must_not_run(monkeypatch)
    monkeypatch.setitem(_registry.PRETRAINED, "nofile", ("no_such_file.pt", "missing"))
    base = ["separate", str(audio["mix"][16000]), "-o", str(tmp_path / "out")]
    err = _fails([*base, "--priors", "nofile,mot"], capsys, status=1)
    assert "--priors nofile" in err and "missing" in err

    def installed(name):
        try:
            _registry.weight_path(name)
        except (ValueError, FileNotFoundError):
            return False
        return True

    missing = [name for name in ("speech", "flute") if not installed(name)]
    if missing:  # the default priors are not (all) bundled yet: the registry's message
        err = _fails(base, capsys, status=1)
        assert f"--priors {missing[0]}: " in err


def test_separate_passes_options_to_the_separator(tmp_path, capsys, monkeypatch, audio):
    from mixest.separation._separator import MixDVAESeparator

    seen = {}

    class Stop(Exception):
        pass

    def fit(self, *args, **kwargs):
        seen.update(self.get_params())
        raise Stop

    monkeypatch.setattr(MixDVAESeparator, "fit", fit)
    with pytest.raises(Stop):
        main(["separate", str(audio["mix"][44100]), "-o", str(tmp_path), "--priors",
              f"mot,{audio['noise']}", "--max-iter", "5", "-q"])
    assert seen["priors"] == ["pretrained:mot", str(audio["noise"])]
    assert seen["sample_rate"] == 44100 and seen["max_iter"] == 5
    assert seen["device"] == "cpu" and seen["verbose"] is False
    assert seen["epsilon"] == 0.003 and seen["observation"] == "assignment"  # the defaults
    with pytest.raises(Stop):
        main(["separate", str(audio["mix"][44100]), "-o", str(tmp_path), "--priors",
              f"mot,{audio['noise']}", "--epsilon", "0.03", "--observation", "additive", "-q"])
    assert seen["epsilon"] == 0.03 and seen["observation"] == "additive"
    assert seen["n_jobs"] is None  # the separator's default: one worker
    with pytest.raises(Stop):
        main(["separate", str(audio["mix"][44100]), "-o", str(tmp_path), "--priors",
              f"mot,{audio['noise']}", "--n-jobs", "2", "-q"])
    assert seen["n_jobs"] == 2


def test_separate_additive_model_and_epsilon_give_the_separators_sources(tmp_path, audio):
    from mixest.separation import MixDVAESeparator, read_audio

    mix = audio["mix"][16000]
    argv = ["separate", str(mix), "-o", str(tmp_path), "--priors", _priors(audio, "tone", "noise"),
            "--max-iter", "2", "--epsilon", "0.03", "--observation", "additive", "-q"]
    assert main(argv) == 0
    x, rate = read_audio(mix)
    separator = MixDVAESeparator(priors=[str(audio["tone"]), str(audio["noise"])], max_iter=2,
                                 epsilon=0.03, observation="additive").fit(x[None])
    expected = separator.transform(x[None])[0]
    paper = separator.set_params(observation="assignment").transform(x[None])[0]
    got = [read_audio(tmp_path / f"{mix.stem}_{name}.wav")[0] for name in ("tone", "noise")]
    np.testing.assert_allclose(got, expected, atol=1e-6)  # float32 WAV files
    assert np.abs(paper - expected).max() > 1e-3  # the option changed the separation


@pytest.mark.parametrize("method", ["vkf", "deep-ar", "nmf", "tnmf"])
def test_separate_baselines_write_sources_and_honour_the_seed(tmp_path, capsys, audio, method):
    from mixest.separation import read_audio

    mix = audio["mix"][44100]
    train = f"{audio['train']['tone']},{audio['train']['noise']}"
    extra = {"vkf": ["--priors", _priors(audio, "tone", "noise")], "deep-ar": [],
             "nmf": [], "tnmf": []}[method]
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        argv = ["separate", str(mix), "-o", str(out), "--method", method, "--train", train,
                "--max-iter", "3", "--seed", "1", "-q", *extra]
        assert main(argv) == 0
        files = sorted(out.iterdir())
        names = [p.name for p in files]
        assert names == [f"{mix.stem}_noise.wav", f"{mix.stem}_tone.wav"], names
        outs.append([read_audio(p)[0] for p in files])
    assert capsys.readouterr().out == ""
    x, _ = read_audio(mix)
    for a, b in zip(*outs, strict=True):
        assert a.shape == x.shape and np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)  # the same seed, the same sources


def test_separate_methods_refuse_options_they_do_not_take(tmp_path, capsys, monkeypatch,
                                                          audio):
    _separation_must_not_run(monkeypatch)
    mix, out = str(audio["mix"][16000]), str(tmp_path / "out")
    train = f"{audio['train']['tone']},{audio['train']['noise']}"
    base = ["separate", mix, "-o", out]
    err = _fails([*base, "--method", "nmf", "--train", train, "--priors", "speech,flute"],
                 capsys)
    assert "--priors does not apply to --method nmf" in err
    err = _fails([*base, "--method", "tnmf", "--train", train, "--device", "cpu"], capsys)
    assert "--device does not apply to --method tnmf" in err
    assert "--train" in _fails([*base, "--method", "nmf"], capsys)
    assert "--train" in _fails([*base, "--method", "vkf"], capsys)
    err = _fails([*base, "--train", train], capsys)
    assert "--train does not apply to --method mixdvae" in err
    err = _fails([*base, "--method", "nmf", "--train", train, "--epsilon", "0.03"], capsys)
    assert "--epsilon does not apply to --method nmf" in err
    err = _fails([*base, "--method", "vkf", "--train", train, "--observation", "additive"],
                 capsys)
    assert "--observation does not apply to --method vkf" in err
    for bad in ("0", "-0.1", "nan", "inf"):
        assert "--epsilon must be a positive number" in _fails([*base, "--epsilon", bad], capsys)
    assert "--n-jobs must be a positive number" in _fails([*base, "--n-jobs", "0"], capsys)
    err = _fails([*base, "--method", "tnmf", "--train", train, "--n-jobs", "2"], capsys)
    assert "--n-jobs does not apply to --method tnmf" in err and "one batch" in err
    err = _fails([*base, "--method", "nmf", "--train", train, "--max-iter", "0"], capsys)
    assert "--max-iter must be at least 1, got 0" in err
    err = _fails([*base, "--method", "deep-ar", "--train", train, "--priors",
                  "speech-ar,flute-ar"], capsys)
    assert "not both" in err
    err = _fails([*base, "--method", "deep-ar", "--priors", "speech,flute"], capsys, status=1)
    assert "speech-ar" in err
    err = _fails([*base, "--method", "nmf", "--train", f"{audio['train']['tone']},/no/dir"],
                 capsys, status=1)
    assert "/no/dir" in err and "not a folder" in err
    err = _fails([*base, "--method", "vkf", "--train", train, "--priors",
                  _priors(audio, "tone", "noise", "tone")], capsys)
    assert "3 sources" in err and "--train 2" in err


def test_separate_help(capsys):
    assert "separate" in _help(["--help"], capsys)
    text = _help(["separate", "--help"], capsys)
    for words in ("--out-dir", "(default: speech,flute;", "(default: 70)", "(default: cpu;",
                  "--plot", "--quiet", "DVAE.save", "--method", "--train", "--seed",
                  "(default: mixdvae)", "--epsilon", "--observation", "(default: assignment)",
                  "--n-jobs", "-1: all cores"):
        assert words in text
    assert "default: None" not in text and "``" not in text


def test_plot_separation():
    import matplotlib.pyplot as plt

    from mixest.separation import plot_separation

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    sources = np.stack([np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(t.size)])
    fig = plot_separation(sources.sum(0), sources, 16000, labels=["tone", "noise"])
    try:
        titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
        assert set(titled) == {"mixture", "tone", "noise", "mask of tone", "mask of noise"}
        rows = {round(ax.get_position().y0, 3) for ax in titled.values()}
        assert len(rows) == 1 + 2
        masks = [np.asarray(titled[f"mask of {n}"].get_images()[0].get_array())
                 for n in ("tone", "noise")]
        for mask in masks:
            assert mask.min() >= 0 and mask.max() <= 1
        np.testing.assert_allclose(masks[0] + masks[1], 1.0, atol=1e-12)
        assert masks[0][28].mean() > 0.9 > 0.1 > masks[0][200:].mean()  # 440 Hz: bin 28
        assert titled["mixture"].get_ylim()[1] == pytest.approx(8.0, abs=0.05)  # kHz
        assert titled["noise"].get_xlim()[1] == pytest.approx(0.5, abs=0.02)  # seconds
        clims = {titled[n].get_images()[0].get_clim() for n in ("mixture", "tone", "noise")}
        assert len(clims) == 1  # one colour scale
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="labels"):
        plot_separation(sources.sum(0), sources, 16000, labels=["one"])
    with pytest.raises(ValueError, match="samples"):
        plot_separation(sources.sum(0)[:100], sources, 16000)


def test_track_quiet_prints_nothing_and_still_writes(tmp_path, capsys):
    det = tmp_path / "det.txt"
    rows = [f"{f},-1,{100 + 2 * f},{200 + k * 300},50,120,0.9,-1,-1,-1"
            for f in range(1, 21) for k in range(2)]
    det.write_text("\n".join(rows) + "\n")
    out, plot = tmp_path / "res.txt", tmp_path / "tracks.png"
    assert main(["track", str(det), "-n", "2", "-o", str(out), "--method", "greedy", "-q",
                 "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert out.is_file() and plot.is_file()
