"""The ``mixest`` command line."""

import numpy as np
import pytest

from mixest.cli import METHODS, main
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
            method, "--plot", str(png), "--max-iter", "3"]
    if method == "mixdvae":
        argv += ["--prior", "constant-velocity"]
    assert main(argv) == 0
    table = read_mot(out)
    assert set(table["id"]) == {1, 2, 3}
    assert table["frame"].min() == 2 and table["frame"].max() == 15
    assert png.is_file() and png.stat().st_size > 0
    assert "tracked 3 objects" in capsys.readouterr().out


def test_track_errors(tmp_path):
    det = _write_sequence(tmp_path)
    with pytest.raises(SystemExit):
        main(["track", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "r.txt")])
    with pytest.raises(SystemExit):
        main(["track", str(det), "-o", str(tmp_path / "r.txt"), "--method", "nope"])
    with pytest.raises(SystemExit):
        main(["track", str(det), "-o", str(tmp_path / "r.txt"), "--frames", "9:2"])


def test_methods_registry_is_extensible():
    assert {"mixdvae", "greedy", "vkf", "deep-ar", "sort"} <= set(METHODS)


def test_demo_runs(capsys):
    assert main(["demo", "--n-sequences", "3", "--n-frames", "20", "--max-iter", "3",
                 "--prior", "constant-velocity"]) == 0
    out = capsys.readouterr().out
    assert "greedy" in out and "mixdvae" in out and "MOTA" in out
