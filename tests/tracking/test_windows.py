"""Window builder: exact windows on a hand-made sequence, filters, randomness, real MOT17."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixest.tracking import make_detection_windows, make_windows, read_mot, write_mot

N_FRAMES = 100


def _box(track_id, frame):
    # Distinct, easy to recompute boxes: x moves with the frame, y and size depend on the id.
    return [20.0 * track_id + frame, 10.0 * track_id, 10.0 + track_id, 20.0]


def _toy_gt() -> pd.DataFrame:
    """Six tracks over frames 1..100, each with one reason to be in or out of a window.

    id 1, 2: pedestrians present throughout.
    id 3: pedestrian, frames 1..50 only.
    id 4: class 2 (person on vehicle), present throughout: excluded by default.
    id 5: pedestrian, "consider" flag 0 on frames 30..40.
    id 6: pedestrian, visibility 0.1 on frame 70, 1 elsewhere.
    """
    rows = []
    for track_id in range(1, 7):
        last = 50 if track_id == 3 else N_FRAMES
        for frame in range(1, last + 1):
            conf = 0 if track_id == 5 and 30 <= frame <= 40 else 1
            cls = 2 if track_id == 4 else 1
            vis = 0.1 if track_id == 6 and frame == 70 else 1.0
            rows.append([frame, track_id, *_box(track_id, frame), conf, cls, vis])
    columns = [
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
    return pd.DataFrame(rows, columns=columns)


@pytest.fixture
def toy_seq(tmp_path):
    """A MOTChallenge sequence folder: TOY-01/gt/gt.txt and seqinfo.ini."""
    seq = tmp_path / "TOY-01"
    write_mot(seq / "gt" / "gt.txt", _toy_gt(), kind="gt")
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=TOY-01\nframeRate=10\nseqLength=100\nimWidth=640\nimHeight=480\n"
    )
    return seq


def _expected(track_ids, first_frame, n_frames):
    return np.array(
        [[_box(i, f) for i in track_ids] for f in range(first_frame, first_frame + n_frames)]
    )


def test_windows_are_the_ground_truth_boxes(toy_seq):
    gt, info = make_windows(toy_seq, n_sources=4, n_frames=20, return_info=True)
    # Frames 1-20: {1,2,3,5,6} eligible -> smallest ids {1,2,3,5}; 21-40: id 5 not considered
    # -> {1,2,3,6}; 41-60, 61-80, 81-100: id 3 gone -> {1,2,5,6}.
    assert info["first_frame"].tolist() == [1, 21, 41, 61, 81]
    assert info["last_frame"].tolist() == [20, 40, 60, 80, 100]
    expected_ids = [(1, 2, 3, 5), (1, 2, 3, 6), (1, 2, 5, 6), (1, 2, 5, 6), (1, 2, 5, 6)]
    assert info["track_ids"].tolist() == expected_ids
    assert info["sequence"].unique().tolist() == ["TOY-01"]
    assert (info["im_width"] == 640).all() and (info["im_height"] == 480).all()
    assert gt.shape == (5, 20, 4, 4)
    for w, (ids, first) in enumerate(zip(expected_ids, info["first_frame"], strict=True)):
        np.testing.assert_array_equal(gt[w], _expected(ids, first, 20))


def test_input_kinds_agree(toy_seq):
    from_dir = make_windows(toy_seq, n_frames=20)
    from_file = make_windows(toy_seq / "gt" / "gt.txt", n_frames=20)
    from_table = make_windows(read_mot(toy_seq / "gt" / "gt.txt"), n_frames=20)
    np.testing.assert_array_equal(from_dir, from_file)
    np.testing.assert_array_equal(from_dir, from_table)
    both = make_windows([toy_seq, _toy_gt()], n_frames=20)
    assert both.shape[0] == 2 * from_dir.shape[0]


def test_filters(toy_seq):
    # With min_visibility, id 6 is missing on frame 70: windows 61-80 fail for 4 sources, and
    # the scan moves one frame at a time to 71-90.
    _, info = make_windows(toy_seq, n_sources=4, n_frames=20, min_visibility=0.5, return_info=True)
    assert info["first_frame"].tolist() == [1, 21, 41, 71]
    # 5 sources: only frames 1-20 have five eligible pedestrians ...
    _, info = make_windows(toy_seq, n_sources=5, n_frames=20, return_info=True)
    assert info["track_ids"].tolist() == [(1, 2, 3, 5, 6)]
    # ... but the class-2 track 4 joins when every class is kept, and id 5 without the flag.
    _, info = make_windows(
        toy_seq, n_sources=5, n_frames=20, classes=None, consider_only=False, return_info=True
    )
    assert info["first_frame"].tolist() == [1, 21, 41, 61, 81]
    assert info["track_ids"].iloc[0] == (1, 2, 3, 4, 5)
    _, info = make_windows(toy_seq, n_sources=5, n_frames=20, classes=[1, 2], return_info=True)
    assert info["track_ids"].iloc[0] == (1, 2, 3, 4, 5)


def test_stride_groups_and_max_windows(toy_seq):
    _, info = make_windows(toy_seq, n_sources=2, n_frames=30, stride=10, return_info=True)
    assert info["first_frame"].tolist() == [1, 11, 21, 31, 41, 51, 61, 71]
    _, info = make_windows(toy_seq, n_sources=2, n_frames=20, groups_per_window=3, return_info=True)
    # Frames 1-20 have 5 eligible pedestrians: two disjoint pairs.
    assert info["track_ids"].tolist()[:2] == [(1, 2), (3, 5)]
    assert len(make_windows(toy_seq, n_sources=2, n_frames=20, max_windows=2)) == 2


def test_random_state(toy_seq):
    kwargs = {"n_sources": 3, "n_frames": 10, "return_info": True}
    _, a = make_windows(toy_seq, random_state=0, **kwargs)
    _, b = make_windows(toy_seq, random_state=0, **kwargs)
    _, c = make_windows(toy_seq, random_state=1, **kwargs)
    _, det = make_windows(toy_seq, **kwargs)
    assert a["track_ids"].tolist() == b["track_ids"].tolist()
    assert a["track_ids"].tolist() != c["track_ids"].tolist()
    assert set(det["track_ids"]) <= {(1, 2, 3), (1, 2, 5), (1, 2, 6)}  # smallest eligible ids
    assert all(ids == tuple(sorted(ids)) for ids in a["track_ids"])
    _, sub = make_windows(toy_seq, max_windows=3, random_state=0, **kwargs)
    assert sub["first_frame"].is_monotonic_increasing and len(sub) == 3


def _crossing_gt() -> pd.DataFrame:
    """Tracks 1-3 stand far apart; tracks 4-6 walk through one point at frame 50."""
    rows = []
    for frame in range(1, 101):
        for track_id, x in ((1, 50.0), (2, 250.0), (3, 450.0)):
            rows.append([frame, track_id, x, 300.0, 20.0, 50.0, 1, 1, 1.0])
        for track_id, speed in ((4, 2.0), (5, -2.0), (6, 1.0)):
            rows.append([frame, track_id, 300.0 + speed * (frame - 50), 100.0, 20.0, 50.0, 1, 1,
                         1.0])
    columns = ["frame", "id", "bb_left", "bb_top", "bb_width", "bb_height", "conf", "class",
               "visibility"]
    return pd.DataFrame(rows, columns=columns)


def test_close_grouping_picks_the_tracks_that_meet():
    gt = _crossing_gt()
    _, info = make_windows(gt, n_sources=3, n_frames=100, return_info=True)
    assert info["track_ids"].tolist() == [(1, 2, 3)]
    _, info = make_windows(gt, n_sources=3, n_frames=100, grouping="close", return_info=True)
    assert info["track_ids"].tolist() == [(4, 5, 6)]
    _, info = make_windows(gt, n_sources=3, n_frames=100, grouping="close", groups_per_window=2,
                           return_info=True)
    assert info["track_ids"].tolist() == [(4, 5, 6), (1, 2, 3)]


def _closest_groups_by_loops(boxes, n_sources, n_groups):
    """The definition of grouping="close", written with plain loops (test oracle)."""
    T, m, _ = boxes.shape

    def distance(i, j):
        best = np.inf
        for t in range(T):
            xi, yi, wi, hi = boxes[t, i]
            xj, yj, wj, hj = boxes[t, j]
            gap = np.hypot(xi + wi / 2 - xj - wj / 2, yi + hi / 2 - yj - hj / 2)
            best = min(best, gap / ((np.sqrt(wi * hi) + np.sqrt(wj * hj)) / 2))
        return best

    free, groups = set(range(m)), []
    for _ in range(n_groups):
        pairs = [(distance(i, j), i, j) for i in sorted(free) for j in sorted(free) if i < j]
        _, i, j = min(pairs)
        group = [i, j]
        while len(group) < n_sources:
            rest = [(min(distance(k, g) for g in group), k) for k in sorted(free - set(group))]
            group.append(min(rest)[1])
        free -= set(group)
        groups.append(sorted(group))
    return groups


def test_close_grouping_matches_its_definition():
    from mixest.tracking._windows import _close_groups

    rng = np.random.default_rng(0)
    for _ in range(20):
        T, m = 15, 9
        xy = np.cumsum(rng.normal(0, 10, (T, m, 2)), axis=0) + rng.uniform(0, 500, (1, m, 2))
        wh = rng.uniform(10, 60, (1, m, 2)) * rng.uniform(0.8, 1.2, (T, m, 2))
        boxes = np.concatenate([xy, wh], -1)
        got = [sorted(g.tolist()) for g in _close_groups(boxes, 3, 3)]
        assert got == _closest_groups_by_loops(boxes, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_frames": 101}, ValueError, "no window of n_frames=101"),
        ({"n_sources": 7, "n_frames": 20}, ValueError, r"best window has 5 such track"),
        ({"n_sources": 0}, ValueError, "n_sources must be at least 1"),
        ({"n_frames": 2.5}, TypeError, "n_frames must be an int"),
        ({"stride": 0}, ValueError, "stride must be at least 1"),
        ({"min_visibility": 2}, ValueError, "min_visibility"),
        ({"classes": "1"}, TypeError, "classes must be"),
        ({"max_windows": 0}, ValueError, "max_windows"),
        ({"grouping": "near"}, ValueError, "grouping must be 'any' or 'close'"),
    ],
)
def test_bad_arguments(toy_seq, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_windows(toy_seq, **kwargs)


def test_bad_gt(tmp_path):
    with pytest.raises(TypeError, match="gt must be"):
        make_windows(np.zeros((10, 9)))
    with pytest.raises(ValueError, match="gt is an empty list"):
        make_windows([])
    with pytest.raises(FileNotFoundError):
        make_windows(tmp_path / "nothing")
    results = _toy_gt().drop(columns=["class", "visibility"])
    with pytest.raises(ValueError, match="no 'class' column"):
        make_windows(results)


def test_detection_windows(toy_seq):
    obs, gt = make_detection_windows(
        toy_seq, n_frames=20, jitter=0.0, miss_prob=0.0, random_state=0
    )
    np.testing.assert_array_equal(gt, make_windows(toy_seq, n_frames=20, random_state=0))
    np.testing.assert_allclose(obs, gt)  # no noise, no miss, no shuffle: row k is source k

    obs, gt, info = make_detection_windows(
        [toy_seq, _toy_gt()],
        n_frames=20,
        jitter=0.05,
        miss_prob=0.3,
        clutter_rate=1.0,
        shuffle=True,
        random_state=0,
        return_info=True,
    )
    assert obs.shape[:2] == gt.shape[:2] and obs.shape[2] >= 3 and len(info) == len(gt)
    assert 0.5 < np.isnan(obs[..., 0]).mean() < 1
    again = make_detection_windows(
        [toy_seq, _toy_gt()],
        n_frames=20,
        jitter=0.05,
        miss_prob=0.3,
        clutter_rate=1.0,
        shuffle=True,
        random_state=0,
    )[0]
    np.testing.assert_array_equal(obs, again)


@pytest.mark.realdata
@pytest.mark.parametrize(("n_frames", "n_windows"), [(60, 12), (120, 4)])
def test_mot17_05_windows(shared_data, n_frames, n_windows):
    seq = shared_data / "mot17" / "MOT17-05"
    gt, info = make_windows(seq, n_sources=3, n_frames=n_frames, return_info=True)
    assert gt.shape == (n_windows, n_frames, 3, 4)
    assert np.isfinite(gt).all() and (gt[..., 2:] > 0).all()
    # Spot check against the file: the first window's first track.
    table = read_mot(seq / "gt" / "gt.txt").set_index(["id", "frame"])
    first = info.iloc[0]
    rows = table.loc[
        [(first["track_ids"][0], f) for f in range(first["first_frame"], first["last_frame"] + 1)]
    ]
    np.testing.assert_array_equal(
        gt[0, :, 0], rows[["bb_left", "bb_top", "bb_width", "bb_height"]].to_numpy()
    )
    assert (rows["class"] == 1).all() and (rows["conf"] == 1).all()


@pytest.mark.realdata
def test_mot17_300_frame_windows(shared_data):
    mot17 = shared_data / "mot17"
    # MOT17-05 never has 3 pedestrians together for 300 frames (its three longest tracks,
    # 336-394 frames, do not overlap that long), whatever the filters: say so clearly ...
    with pytest.raises(ValueError, match=r"best window has 2 such track"):
        make_windows(
            mot17 / "MOT17-05", n_sources=3, n_frames=300, classes=None, consider_only=False
        )
    # ... while the 30 fps sequences do.
    obs, gt = make_detection_windows(
        [mot17 / "MOT17-05", mot17 / "MOT17-02", mot17 / "MOT17-09"],
        n_sources=3,
        n_frames=300,
        random_state=0,
    )
    assert gt.shape == (3, 300, 3, 4) and np.isfinite(gt).all()
    assert obs.shape[:3] == (3, 300, 3)


def _toy_det(seq) -> pd.DataFrame:
    """Real-style detections of the toy sequence, frames 1..40: tracks 1 and 2 detected exactly
    (track 2 missed on frame 5); a neighbour box beside track 1 (centre within one box size of
    it); a far box (no target near); a low-score copy of track 2 on frame 5."""
    rows = []
    for frame in range(1, 41):
        b1, b2 = _box(1, frame), _box(2, frame)
        rows.append([frame, -1, *b1, 0.9])
        if frame != 5:
            rows.append([frame, -1, *b2, 0.8])
        else:
            rows.append([frame, -1, *b2, 0.2])
        rows.append([frame, -1, b1[0] - 12.0, b1[1], b1[2], b1[3], 0.7])  # neighbour
        rows.append([frame, -1, 600.0, 400.0, 10.0, 20.0, 0.95])  # far from both
    table = pd.DataFrame(rows, columns=["frame", "id", "bb_left", "bb_top", "bb_width",
                                        "bb_height", "conf"])
    for col in ("x", "y", "z"):
        table[col] = -1.0
    write_mot(seq / "det" / "det.txt", table, kind="result")
    return table


def test_real_detection_windows(toy_seq):
    _toy_det(toy_seq)
    kw = dict(n_sources=2, n_frames=20, classes=None, consider_only=False,
              frame_range=(1, 40), detections="real")
    obs, gt = make_detection_windows(toy_seq, **kw)
    np.testing.assert_array_equal(gt, make_windows(toy_seq, 2, 20, classes=None,
                                                   consider_only=False, frame_range=(1, 40)))
    assert gt.shape == (2, 20, 2, 4)  # tracks 1 and 2, frames 1-20 and 21-40
    # targets only: exactly the two matched detections, in file order; track 2 missed on
    # frame 5 (its detection scores 0.2 < min_score)
    assert obs.shape == (2, 20, 2, 4)
    expected = gt.copy()
    expected[0, 4, 1] = np.nan
    np.testing.assert_array_equal(obs, expected)
    # min_score=0.1 keeps the low-score detection
    low, _ = make_detection_windows(toy_seq, **kw, min_score=0.1)
    np.testing.assert_array_equal(low, gt)
    # clutter: the neighbour is kept (third row), the far box is not
    cl, _ = make_detection_windows(toy_seq, **kw, clutter=True)
    assert cl.shape == (2, 20, 3, 4)
    assert (cl[..., 0] == gt[:, :, :1, 0] - 12.0).sum(-1).min() == 1  # in every frame
    assert not (cl[..., 0] == 600.0).any()
    np.testing.assert_array_equal(cl[0, 4, :2], [gt[0, 4, 0], gt[0, 4, 0] - [12, 0, 0, 0]])
    # first_frame="truth": the targets' own boxes, and nothing else, in the first frame
    tr, _ = make_detection_windows(toy_seq, **kw, clutter=True, first_frame="truth")
    np.testing.assert_array_equal(tr[:, 0, :2], gt[:, 0])
    assert np.isnan(tr[:, 0, 2:]).all()
    np.testing.assert_array_equal(tr[:, 1:], cl[:, 1:])
    # the same detections given as a table or a path
    table = read_mot(toy_seq / "det" / "det.txt")
    for det in (table, toy_seq / "det" / "det.txt", [table]):
        np.testing.assert_array_equal(
            make_detection_windows(toy_seq, **{**kw, "detections": det}, clutter=True)[0], cl)


def test_real_detection_windows_refuse_what_does_not_apply(toy_seq):
    kw = dict(n_sources=2, n_frames=20, classes=None, consider_only=False)
    with pytest.raises(ValueError, match="no .*det.txt"):
        make_detection_windows(toy_seq, **kw, detections="real")
    _toy_det(toy_seq)
    with pytest.raises(ValueError, match="jitter do\\(es\\) not apply to real"):
        make_detection_windows(toy_seq, **kw, detections="real", jitter=0.1)
    with pytest.raises(ValueError, match="clutter, first_frame do\\(es\\) not apply to sim"):
        make_detection_windows(toy_seq, **kw, clutter=True, first_frame="truth")
    with pytest.raises(ValueError, match="2 item\\(s\\) for 1"):
        make_detection_windows(toy_seq, **kw, detections=[_toy_gt(), _toy_gt()])
    with pytest.raises(ValueError, match="first_frame must be"):
        make_detection_windows(toy_seq, **kw, detections="real", first_frame="gt")
    with pytest.raises(TypeError, match="frame_range must be a pair"):
        make_windows(toy_seq, **kw, frame_range=5)
    with pytest.raises(ValueError, match="occlusion must be shorter"):
        make_detection_windows(toy_seq, **kw, occlusion=20)


def test_occlusion_hides_each_target_for_one_run(toy_seq):
    det_table = _toy_det(toy_seq)
    gt_table = _toy_gt()
    gt_table = gt_table.loc[gt_table["id"] <= 2]  # the two detected tracks
    kw = dict(n_sources=2, n_frames=20, classes=None, consider_only=False,
              frame_range=(1, 40))
    for det in ({"jitter": 0.0, "miss_prob": 0.0}, {"detections": det_table, "min_score": 0.1}):
        obs, gt = make_detection_windows(gt_table, **kw, **det, occlusion=6, random_state=3)
        for w in range(len(gt)):
            for n in range(2):
                seen = (np.abs(obs[w] - gt[w, :, None, n]).max(-1) < 1e-9).any(-1)
                hidden = np.flatnonzero(~seen)
                assert len(hidden) == 6 and hidden[0] >= 1, hidden
                assert np.all(np.diff(hidden) == 1)
    # occlusion=0 leaves every other draw as it was
    a = make_detection_windows(toy_seq, **kw, jitter=0.05, miss_prob=0.2, shuffle=True,
                               random_state=1)[0]
    b = make_detection_windows(toy_seq, **kw, jitter=0.05, miss_prob=0.2, shuffle=True,
                               occlusion=0, random_state=1)[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.realdata
def test_mot17_real_detection_windows(shared_data):
    """On MOT17's YOLOX detections: targets-only rows are detections that match their target
    at IoU >= 0.5; clutter rows add other detections, near the targets."""
    from mixest.tracking import iou_matrix

    seq = shared_data / "mot17" / "MOT17-09"
    kw = dict(n_frames=60, frame_range=(263, 525), detections="real", random_state=0)
    obs, gt = make_detection_windows(seq, **kw)
    cl, gt2 = make_detection_windows(seq, **kw, clutter=True, first_frame="truth")
    np.testing.assert_array_equal(gt, gt2)
    iou = np.nan_to_num(iou_matrix(gt, obs))  # (n, T, N, K)
    valid = ~np.isnan(obs[..., 0])
    assert (iou.max(2)[valid] >= 0.5).all()
    assert 0.5 < valid.sum(-1).mean() / 3 < 1  # real misses
    assert (~np.isnan(cl[..., 0])).sum(-1).mean() > 1.5 * valid.sum(-1).mean()
