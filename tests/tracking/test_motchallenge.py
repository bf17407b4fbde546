"""MOTChallenge I/O: read/write round trips, seqinfo, array conversions, bad files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mixest.tracking import (
    detections_to_array,
    read_mot,
    read_seqinfo,
    table_to_tracks,
    tracks_to_table,
    write_mot,
)

GT_TEXT = """\
1,1,17,150,77,191,1,1,1
2,1,20,148,78,195,1,1,0.5
1,2,-3.5,40,10,20,0,7,0.25
"""
DET_TEXT = """\
1,-1,10,20,30,40,0.9,-1,-1,-1
1,-1,50,60,5,6,0.8,-1,-1,-1
3,-1,1.5,2.5,3.5,4.5,0.7,-1,-1,-1
"""
SEQINFO = """\
[Sequence]
name=TOY-01
imDir=img1
frameRate=14
seqLength=3
imWidth=640
imHeight=480
imExt=.jpg
"""


def _write(tmp_path, text, name="gt.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_gt(tmp_path):
    table = read_mot(_write(tmp_path, GT_TEXT))
    assert table.columns.tolist() == [
        "frame",
        "id",
        "bb_left",
        "bb_top",
        "bb_width",
        "bb_height",
        "conf",
        "class",
        "visibility",
    ]
    assert len(table) == 3
    assert table["frame"].dtype == np.int64 and table["class"].dtype == np.int64
    assert table["bb_left"].dtype == np.float64
    assert table.loc[2, "bb_left"] == -3.5 and table.loc[2, "class"] == 7
    assert table.attrs["path"].endswith("gt.txt")


def test_read_det(tmp_path):
    table = read_mot(_write(tmp_path, DET_TEXT, "det.txt"))
    assert table.columns.tolist() == [
        "frame",
        "id",
        "bb_left",
        "bb_top",
        "bb_width",
        "bb_height",
        "conf",
        "x",
        "y",
        "z",
    ]
    assert (table["id"] == -1).all()
    np.testing.assert_allclose(table["conf"], [0.9, 0.8, 0.7])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("\n  \n", "empty"),
        ("1,1,2,3,4,5\n", "expected 9 columns .* got 6"),
        ("1,1,2,3,4,5,1,1,1,1,1\n", "got 11"),
        ("1,1,2,3,4,5,1,1,1\n2,1,2,3,4,5,1,1\n", "line 2 has 8 columns"),
        ("1,1,2,3,4,5,1,1,1\n2,1,a,3,4,5,1,1,1\n", r"line 2, column 3 \(bb_left\) .* 'a'"),
        ("frame,id,x,y,w,h,conf,class,vis\n", r"line 1, column 1 \(frame\) is not a number"),
        ("1,1,2,3,4,5,1,1,1\n2,1,nan,3,4,5,1,1,1\n", "line 2 has NaN or infinite"),
        ("1.5,1,2,3,4,5,1,1,1\n", "'frame' has non-integer"),
        ("0,1,2,3,4,5,1,1,1\n", "1-based"),
        ("1,1,2,3,-4,5,1,1,1\n", "negative bb_width"),
    ],
)
def test_read_bad_files(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=match) as info:
        read_mot(path)
    assert "path" in str(info.value)


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n\xff\xfe\x00", b"1,1,2\x00,3,4,5,1,1,1\n"])
def test_read_binary_file(tmp_path, data):
    path = tmp_path / "det.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="is a binary file"):
        read_mot(path)
    (tmp_path / "seqinfo.ini").write_bytes(b"\xff\xfe[Sequence]\x80\n")
    with pytest.raises(ValueError, match="seqinfo.ini' is a binary file"):
        read_seqinfo(tmp_path)


def test_read_missing_file_and_bad_path_type(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_mot(tmp_path / "nope.txt")
    with pytest.raises(TypeError, match="path must be"):
        read_mot(3)


@pytest.mark.parametrize("kind", ["gt", "result"])
def test_write_read_round_trip(tmp_path, kind):
    table = read_mot(_write(tmp_path, GT_TEXT if kind == "gt" else DET_TEXT))
    write_mot(tmp_path / "out" / "seq.txt", table, kind=kind)
    back = read_mot(tmp_path / "out" / "seq.txt")
    # write_mot sorts by (frame, id); compare in that order.
    expected = table.sort_values(["frame", "id"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, expected, check_like=False)


def test_write_result_text_and_defaults(tmp_path):
    table = pd.DataFrame(
        {
            "frame": [2, 1],
            "id": [1, 3],
            "bb_left": [1.25, 0.0],
            "bb_top": [2.0, 0.0],
            "bb_width": [3.0, 1.0],
            "bb_height": [4.0, 1.0],
        }
    )
    write_mot(tmp_path / "r.txt", table)
    lines = (tmp_path / "r.txt").read_text().splitlines()
    # Sorted by frame; integral columns without a decimal point; conf 1 and x, y, z = -1.
    assert lines == ["1,3,0.0,0,1,1,1,-1,-1,-1", "2,1,1.25,2,3,4,1,-1,-1,-1"]


tracks_strategy = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 4), st.just(4)),
    elements=st.floats(0, 2000, allow_nan=False, width=32),
)


@settings(max_examples=25, deadline=None)
@given(tracks=tracks_strategy, absent=st.data(), offset=st.integers(1, 50))
def test_tracks_table_file_round_trip(tmp_path_factory, tracks, absent, offset):
    mask = absent.draw(hnp.arrays(bool, tracks.shape[:2]))
    tracks = tracks.copy()
    tracks[mask] = np.nan
    table = tracks_to_table(tracks, frame_offset=offset)
    assert len(table) == int((~mask).sum())
    path = tmp_path_factory.mktemp("rt") / "res.txt"
    write_mot(path, table)
    if len(table) == 0:
        assert path.read_text() == ""
        return
    back = read_mot(path)
    frames = np.arange(offset, offset + tracks.shape[0])
    ids = np.arange(1, tracks.shape[1] + 1)
    np.testing.assert_array_equal(table_to_tracks(back, frames=frames, ids=ids), tracks)


def test_tracks_to_table_columns_and_order():
    tracks = np.full((3, 2, 4), np.nan)
    tracks[0, 1] = [1, 2, 3, 4]
    tracks[2, 0] = [5, 6, 7, 8]
    table = tracks_to_table(tracks)
    assert table.columns.tolist() == [
        "frame",
        "id",
        "bb_left",
        "bb_top",
        "bb_width",
        "bb_height",
        "conf",
        "x",
        "y",
        "z",
    ]
    assert table["frame"].tolist() == [1, 3] and table["id"].tolist() == [2, 1]
    np.testing.assert_array_equal(table_to_tracks(table), tracks[[0, 1, 2]][:, [0, 1]])


@pytest.mark.parametrize(
    ("tracks", "error", "match"),
    [
        (np.zeros((3, 4)), ValueError, r"tracks must have shape \(T, N, 4\)"),
        (np.zeros((3, 2, 5)), ValueError, "tracks must have 4 entries"),
        (np.full((3, 2, 4), np.inf), ValueError, "tracks contains infinite"),
        (np.array([[[1, 2, np.nan, 4]]]), ValueError, "only some coordinates"),
        (np.array([[[1, 2, -3, 4]]]), ValueError, "negative width"),
        ("tracks", TypeError, "tracks must be"),
    ],
)
def test_tracks_to_table_bad_input(tracks, error, match):
    with pytest.raises(error, match=match):
        tracks_to_table(tracks)


def test_detections_to_array(tmp_path):
    table = read_mot(_write(tmp_path, DET_TEXT, "det.txt"))
    obs = detections_to_array(table)
    assert obs.shape == (3, 2, 4)  # frames 1..3, at most 2 detections per frame
    np.testing.assert_array_equal(obs[0], [[10, 20, 30, 40], [50, 60, 5, 6]])
    assert np.isnan(obs[1]).all()  # frame 2 has no detection
    np.testing.assert_array_equal(obs[2, 0], [1.5, 2.5, 3.5, 4.5])
    assert np.isnan(obs[2, 1]).all()
    # Explicit frames, in the given order; frames outside the table are all-NaN.
    obs = detections_to_array(table, frames=[3, 1, 7])
    np.testing.assert_array_equal(obs[0, 0], [1.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(obs[1, 1], [50, 60, 5, 6])
    assert np.isnan(obs[2]).all()


def test_detections_to_array_keeps_order_within_interleaved_frames():
    table = pd.DataFrame(
        {
            "frame": [2, 1, 2, 1, 2],
            "id": -1,
            "bb_left": [0.0, 1, 2, 3, 4],
            "bb_top": 0.0,
            "bb_width": 1.0,
            "bb_height": 1.0,
        }
    )
    obs = detections_to_array(table)
    np.testing.assert_array_equal(obs[0, :2, 0], [1, 3])
    np.testing.assert_array_equal(obs[1, :, 0], [0, 2, 4])


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (np.zeros((3, 6)), TypeError, "table must be a pandas DataFrame"),
        (pd.DataFrame({"frame": [1], "id": [1]}), ValueError, "lacks the column"),
        (
            pd.DataFrame(
                {
                    "frame": [1],
                    "id": [1],
                    "bb_left": ["a"],
                    "bb_top": [0.0],
                    "bb_width": [1.0],
                    "bb_height": [1.0],
                }
            ),
            TypeError,
            r"table\['bb_left'\] must be numeric",
        ),
        (
            pd.DataFrame(
                {
                    "frame": [1],
                    "id": [1],
                    "bb_left": [np.inf],
                    "bb_top": [0.0],
                    "bb_width": [1.0],
                    "bb_height": [1.0],
                }
            ),
            ValueError,
            "infinite",
        ),
        (
            pd.DataFrame(
                {
                    "frame": [1.5],
                    "id": [1],
                    "bb_left": [0.0],
                    "bb_top": [0.0],
                    "bb_width": [1.0],
                    "bb_height": [1.0],
                }
            ),
            ValueError,
            "integers",
        ),
    ],
)
def test_table_bad_input(table, error, match):
    with pytest.raises(error, match=match):
        detections_to_array(table)
    with pytest.raises(error, match=match):
        write_mot("unused.txt", table)


def test_detections_to_array_bad_frames(tmp_path):
    table = read_mot(_write(tmp_path, DET_TEXT, "det.txt"))
    with pytest.raises(ValueError, match="frames must"):
        detections_to_array(table, frames=[1.5, 2])
    with pytest.raises(ValueError, match="frames must not repeat"):
        detections_to_array(table, frames=[1, 1])


def test_table_to_tracks_duplicates(tmp_path):
    table = read_mot(_write(tmp_path, GT_TEXT + "1,1,0,0,1,1,1,1,1\n"))
    with pytest.raises(ValueError, match="more than one box"):
        table_to_tracks(table)


def test_read_seqinfo(tmp_path):
    (tmp_path / "seqinfo.ini").write_text(SEQINFO)
    info = read_seqinfo(tmp_path)
    assert info == {
        "name": "TOY-01",
        "im_dir": "img1",
        "frame_rate": 14,
        "seq_length": 3,
        "im_width": 640,
        "im_height": 480,
        "im_ext": ".jpg",
    }
    assert read_seqinfo(tmp_path / "seqinfo.ini") == info


def test_read_seqinfo_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_seqinfo(tmp_path)
    (tmp_path / "seqinfo.ini").write_text("[Other]\na=1\n")
    with pytest.raises(ValueError, match=r"no \[Sequence\] section"):
        read_seqinfo(tmp_path)
    (tmp_path / "seqinfo.ini").write_text("no section header\n")
    with pytest.raises(ValueError, match="not a valid seqinfo.ini"):
        read_seqinfo(tmp_path)


@pytest.mark.realdata
def test_read_mot17_05(shared_data):
    seq = shared_data / "mot17" / "MOT17-05"
    table = read_mot(seq / "gt" / "gt.txt")
    assert len(table) == 8013
    assert (table["class"] == 1).sum() == 6917  # README's count of pedestrian rows
    assert table["id"].nunique() == 156
    info = read_seqinfo(seq)
    assert (info["im_width"], info["im_height"], info["seq_length"]) == (640, 480, 837)
    assert table["frame"].max() == info["seq_length"]
