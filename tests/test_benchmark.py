"""``mixest benchmark table2`` on a small MOTChallenge-layout folder made here."""

import json
from pathlib import Path

import numpy as np
import pytest

from mixest.cli import main
from mixest.tracking import tracks_to_table, write_mot

pytest.importorskip("trackeval", reason="table2 reports HOTA (TrackEval)")


def _mot_root(tmp_path, lengths=(40, 30)):
    """Sequences of 3 walking pedestrians whose det.txt holds exactly their boxes."""
    root = tmp_path / "MOT"
    for s, T in enumerate(lengths):
        t = np.arange(T)[:, None]
        xywh = np.zeros((T, 3, 4))
        xywh[..., 0] = 100.0 + 400.0 * np.arange(3) + (2.0 + s) * t
        xywh[..., 1] = 300.0 + 1.0 * t
        xywh[..., 2], xywh[..., 3] = 60.0, 150.0
        seq = root / f"SEQ-{s}"
        table = tracks_to_table(xywh)
        write_mot(seq / "gt" / "gt.txt", table, kind="gt")
        write_mot(seq / "det" / "det.txt", table)
        (seq / "seqinfo.ini").write_text(
            f"[Sequence]\nname=SEQ-{s}\nframeRate=30\nseqLength={T}\nimWidth=1920\n"
            "imHeight=1080\n")
    return root


def test_table2_scores_exact_detections_perfectly(tmp_path, capsys):
    root, out = _mot_root(tmp_path), tmp_path / "results"
    argv = ["benchmark", "table2", "--mot-root", str(root), "--lengths", "20", "35", "--stride",
            "20",
            "--half", "all", "--methods", "greedy", "cv", "oracle", "--protocols", "real", "mild",
            "-o", str(out), "-q"]
    assert main(argv) == 0
    assert capsys.readouterr().out == ""  # --quiet
    meta = json.loads((out / "table2.json").read_text())
    assert meta["command"] == "mixest benchmark " + " ".join(argv[1:])
    rows = meta["rows"]
    methods = ("greedy (floor)", "VEM + constant velocity", "detection oracle")
    assert [(r["protocol"], r["T"], r["method"]) for r in rows] == [
        (p, T, m) for p in ("real", "mild") for T in (20, 35) for m in methods]
    # T = 20: 2 windows of the 40-frame sequence, 1 of the 30-frame one; T = 35: the 30-frame
    # sequence has none and is skipped
    assert [r["windows"] for r in rows] == [3, 3, 3, 1, 1, 1] * 2
    for r in rows[:6]:  # the detections are the true boxes
        assert r["MOTA"] == 1.0 and r["HOTA"] == pytest.approx(1.0) and r["FP"] == r["FN"] == 0
        assert r["%IDs"] == 0.0 and r["MT"] == 3 * r["windows"]
    for r in rows[6:]:  # jittered boxes (10% missed, filled in): found, but less tight
        assert r["MOTA"] > 0.9 and 0.5 < r["HOTA"] < 0.99 and r["MOTP"] < 0.99
    assert (out / "table2.png").stat().st_size > 0 and (out / "table2.md").is_file()


@pytest.mark.parametrize("half, windows", [("first", 1), ("second", 1), ("all", 3)])
def test_table2_halves(tmp_path, half, windows):
    """Windows of 20 frames from the first 20 or the last 20 frames of the 40-frame sequence
    (the 30-frame one's halves are too short), or from all frames of both."""
    root, out = _mot_root(tmp_path), tmp_path / "results"
    assert main(["benchmark", "table2", "--mot-root", str(root), "--lengths", "20", "--stride",
                 "20", "--half", half, "--methods", "oracle", "--protocols", "real", "-o",
                 str(out), "-q"]) == 0
    (row,) = json.loads((out / "table2.json").read_text())["rows"]
    assert row["windows"] == windows and row["MOTA"] == 1.0


def test_table2_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "table2", "--mot-root", str(tmp_path / "nowhere")])
    assert exc.value.code == 1 and "--mot-root" in capsys.readouterr().err
    root = _mot_root(tmp_path)
    for seq in root.iterdir():
        (seq / "det" / "det.txt").unlink()
    with pytest.raises(SystemExit) as exc:  # the real protocols need det.txt
        main(["benchmark", "table2", "--mot-root", str(root), "--protocols", "real"])
    assert exc.value.code == 1 and "det/det.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "table2", "--mot-root", str(root), "--methods", "kalman"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # no sequence is long enough
        main(["benchmark", "table2", "--mot-root", str(root), "--protocols", "mild",
              "--lengths", "50", "-q"])
    assert exc.value.code == 1 and "no window" in capsys.readouterr().err


def _audio_folders(tmp_path, seconds=1.0):
    """Speech-like and music-like recordings with disjoint frequency support: low harmonic
    tones with a syllable-rate envelope against high steady tones."""
    import soundfile as sf

    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    folders = {name: tmp_path / name for name in ("speech", "music", "train_s", "train_m")}
    for folder in folders.values():
        folder.mkdir()
    for i in range(2):
        f0 = 150.0 + 30.0 * i
        speech = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
        speech *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
        music = sum(np.sin(2 * np.pi * (1000.0 + 200.0 * i) * h * t) / h for h in range(1, 3))
        sf.write(folders["speech"] / f"s{i}.wav", 0.3 * speech, rate)
        sf.write(folders["music"] / f"m{i}.wav", 0.3 * music, rate)
        sf.write(folders["train_s"] / f"s{i}.wav", 0.3 * speech[::-1], rate)
        sf.write(folders["train_m"] / f"m{i}.wav", 0.3 * music[::-1], rate)
    return folders


def test_table3_separates_disjoint_sources(tmp_path):
    pytest.importorskip("pesq")
    f, out = _audio_folders(tmp_path), tmp_path / "results"
    argv = ["benchmark", "table3", "--speech-dir", str(f["speech"]), "--music-dir",
            str(f["music"]), "--train", f"{f['train_s']},{f['train_m']}", "--quick",
            "--n-mixtures", "2", "--methods", "nmf", "-o", str(out), "-q"]
    assert main(argv) == 0
    meta = json.loads((out / "table3.json").read_text())
    assert meta["command"] == "mixest benchmark " + " ".join(argv[1:])
    rows = {r["method"]: r for r in meta["rows"]}
    assert list(rows) == ["mixture", "oracle ratio mask [oracle]", "NMF"]
    for src in ("speech", "music"):
        assert abs(rows["mixture"][f"SI-SDR {src}"]) < 0.5  # 0 dB: the mixture is 0 dB
        assert rows["oracle ratio mask [oracle]"][f"SI-SDR {src}"] > 20
        assert rows["NMF"][f"SI-SDR {src}"] > 20  # disjoint spectra: NMF's dictionaries
    assert (out / "table3.png").stat().st_size > 0


def test_table3_without_training_audio(tmp_path, capsys):
    f = _audio_folders(tmp_path)
    base = ["benchmark", "table3", "--speech-dir", str(f["speech"]), "--music-dir",
            str(f["music"]), "--quick", "--n-mixtures", "1", "--max-iter", "1",
            "-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:  # asked for a row that needs --train
        main(base + ["--methods", "nmf"])
    assert exc.value.code == 2 and "--train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "table3", "--speech-dir", str(tmp_path / "none"), "--music-dir",
              str(f["music"]), "--methods", "mixdvae", "-q"])
    assert exc.value.code == 1 and "--speech-dir" in capsys.readouterr().err
    # default rows without --train: the trained ones are left out, and the user is told
    assert main(base) == 0
    assert "without --train" in capsys.readouterr().err
    methods = [r["method"] for r in json.loads((tmp_path / "out" / "table3.json")
                                               .read_text())["rows"]]
    assert methods == ["mixture", "oracle ratio mask [oracle]", "DVAE-init (mixest priors)",
                       "Deep AR", "MixDVAE (mixest priors)"]


def test_table3_mixdvae_settings_reach_the_rows_and_their_labels():
    from mixest.benchmark._table3 import selected, separators

    sets = {"mixest": ["pretrained:speech", "pretrained:flute"], "other": ["a.pt", "b.pt"]}
    rows = dict(separators(sets, max_iter=5, n_jobs=1, seed=0,
                           mixdvae={"epsilon": 0.03, "feed": "sample"}))
    sep = rows["MixDVAE (other priors, epsilon=0.03, feed='sample')"]
    assert (sep.epsilon, sep.feed, sep.max_iter) == (0.03, "sample", 5)
    assert sep.priors == ["a.pt", "b.pt"]
    # the other rows keep their own defaults; a run selected by prior set still finds the row
    assert rows["Deep AR"].epsilon == 0.003 and rows["VKF (DVAE-init)"].epsilon == 0.03
    assert selected("MixDVAE (other priors, epsilon=0.03, feed='sample')", ("MixDVAE (other",))
    plain = dict(separators(sets, max_iter=5, n_jobs=1, seed=0))
    assert plain["MixDVAE (mixest priors)"].epsilon == 0.003


def test_perf_runs_every_configuration_in_its_own_process(tmp_path):
    out = tmp_path / "perf"
    argv = ["benchmark", "perf", "--tracking-lengths", "10", "--n-sequences", "4", "8",
            "--separation-lengths", "10", "--n-mixtures", "2", "--max-iter", "2", "--n-jobs",
            "1", "-o", str(out), "-q"]
    assert main(argv) == 0
    rows = json.loads((out / "perf.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["tracking", "tracking", "separation", "kernel"]
    assert [r["n"] for r in rows[:2]] == [4, 8]  # a batch-size sweep
    tracking, _, separation, kernel = rows
    assert tracking["T"] == 10 and tracking["ms_per_sequence"] > 0
    assert tracking["peak_rss_mib"] >= tracking["rss_before_mib"] > 0
    assert set(tracking["steps"]) == {"init", "e_w", "e_z", "e_s", "m", "bound"}
    assert separation["rtf"] == pytest.approx(separation["seconds"]
                                              / separation["audio_seconds"])
    assert separation["audio_seconds"] == pytest.approx(2 * 10 * 256 / 16000)
    assert kernel["numba"] > 0 and kernel["numpy"] > 0


def test_perf_separation_times_the_observation_model_asked_for(tmp_path):
    from mixest.benchmark._perf import perf, run_isolated

    runs = {obs: run_isolated("separation", T=10, n=2, max_iter=2, observation=obs)
            for obs in ("assignment", "additive")}
    for obs, r in runs.items():
        assert r["observation"] == obs and r["rtf"] > 0
    assert runs["assignment"]["steps"] and not runs["additive"]["steps"]  # E-W etc. only there
    out = tmp_path / "perf"
    argv = ["benchmark", "perf", "--tracking-lengths", "10", "--n-sequences", "4",
            "--separation-lengths", "10", "--n-mixtures", "2", "--max-iter", "2", "--n-jobs",
            "1", "--observations", "assignment", "additive", "-o", str(out), "-q"]
    assert main(argv) == 0
    rows = json.loads((out / "perf.json").read_text())["rows"]
    assert [r.get("observation") for r in rows if r["kind"] == "separation"] == [
        "assignment", "additive"]
    table = (out / "perf.md").read_text()
    assert "| separation (additive) | 10 |" in table and "| separation | 10 |" in table
    with pytest.raises(ValueError, match="observations"):
        perf(observations=("additve",), verbose=False)


def test_perf_runs_a_baseline_version_beside_this_one(tmp_path, capsys):
    """``--baseline DIR`` runs another version's benchmark (here: this one's own folder) in a
    fresh process before each configuration and reports both figures and their ratio."""
    import mixest

    out = tmp_path / "perf"
    argv = ["benchmark", "perf", "--tracking-lengths", "10", "--n-sequences", "4",
            "--separation-lengths", "10", "--n-mixtures", "2", "--max-iter", "2", "--n-jobs",
            "1", "-o", str(out), "-q"]
    root = Path(mixest.__file__).resolve().parents[1]
    assert main(argv + ["--baseline", str(root)]) == 0
    data = json.loads((out / "perf.json").read_text())
    tracking, separation, kernel = data["rows"]
    for r in (tracking, separation):
        assert r["baseline"]["T"] == r["T"] == 10 and r["baseline"]["n"] == r["n"]
    table = (out / "perf.md").read_text()
    ratio = tracking["ms_per_sequence"] / tracking["baseline"]["ms_per_sequence"]
    assert f"baseline {tracking['baseline']['ms_per_sequence']:.1f} / " in table
    assert f"({ratio:.2f}x / " in table
    assert f"baseline RTF {separation['baseline']['rtf']:.3f} " in table
    assert f"({separation['rtf'] / separation['baseline']['rtf']:.2f}x)" in table
    assert "baseline" not in kernel and str(root) in data["note"]
    with pytest.raises(SystemExit) as exc:  # not a mixest folder
        main(argv + ["--baseline", str(tmp_path)])
    assert exc.value.code == 2 and "--baseline" in capsys.readouterr().err


def test_isolated_runs_import_the_version_they_are_given(tmp_path, monkeypatch):
    """A baseline's run imports the baseline's mixest, timed by this version's harness, even
    when started from inside another checkout (the working directory may come first on the
    path)."""
    from mixest.benchmark._perf import run_isolated

    stand_in = tmp_path / "older" / "mixest"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text("__version__ = 'older'\n")
    import mixest

    monkeypatch.chdir(Path(mixest.__file__).resolve().parents[1])
    got = run_isolated("version", tmp_path / "older")
    assert got == {"file": str(stand_in / "__init__.py"), "version": "older"}
    assert run_isolated("version")["file"] == mixest.__file__


def test_detection_oracle_follows_the_targets_own_boxes():
    """Known answer: a target box, its detections whole, partial (IoU 0.3: taken), barely
    overlapping (IoU 0.1: interpolated over) and missing, next to another person."""
    from mixest.benchmark._table2 import detection_oracle
    from mixest.tracking._boxes import box_iou

    truth = np.array([0.4, 0.4, 0.5, 0.6])
    partial = np.array([0.4, 0.4, 0.5, 0.46])  # the top 30% of the box
    sliver = np.array([0.49, 0.4, 0.58, 0.6])  # IoU 0.1 with the truth
    other = np.array([0.7, 0.4, 0.8, 0.6])
    assert box_iou(partial[None], truth[None])[0, 0] == pytest.approx(0.3)
    X = np.full((1, 7, 2, 4), np.nan)
    X[0, :, 1] = other
    X[0, 1, 0], X[0, 2, 0], X[0, 3, 0], X[0, 4, 0] = truth + 0.01, sliver, partial, sliver
    y = np.broadcast_to(truth, (1, 7, 1, 4))
    tracks = detection_oracle(X, y)
    halfway = (truth + 0.01 + partial) / 2  # frame 2 lies between frames 1 and 3
    expected = np.array([truth, truth + 0.01, halfway, partial, partial, partial, partial])
    np.testing.assert_allclose(tracks[0, :, 0], expected)
