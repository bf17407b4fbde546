"""The ``mixest`` command line."""

import numpy as np
import pytest

import mixest
from mixest.cli import METHOD_OPTIONS, METHODS, main
from mixest.datasets import make_tracking_mixture
from mixest.tracking import read_mot, tracks_to_table, write_mot


def _write_sequence(tmp_path, T=20):
    X, y = make_tracking_mixture(1, 3, T, jitter=0.02, miss_prob=0.1, random_state=0)
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
                  "(default: mixdvae)", "(default: 3)", "--max-iter", "--seed",
                  "variational EM iterations", "random seed", "clipped"):
        assert words in track_help
    assert "default: None" not in track_help


def _help(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    return " ".join(capsys.readouterr().out.split())


def test_methods_registry_is_extensible():
    assert {"mixdvae", "greedy", "vkf", "deep-ar", "sort"} <= set(METHODS)


def test_demo_runs(capsys):
    assert main(["demo", "--n-sequences", "3", "--n-frames", "20", "--max-iter", "3",
                 "--prior", "constant-velocity"]) == 0
    out = capsys.readouterr().out
    assert "greedy" in out and "mixdvae" in out and "MOTA" in out


def test_demo_errors(capsys):
    assert "--prior 'foo'" in _fails(["demo", "--prior", "foo"], capsys)
    assert "--max-iter" in _fails(["demo", "--max-iter", "0"], capsys)
