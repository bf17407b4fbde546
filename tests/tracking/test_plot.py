"""plot_tracks: tracks against the frame number, detections coloured by the track they overlap."""

import numpy as np
import pytest

from mixest.tracking import plot_tracks


def _scene(T=40):
    t = np.arange(T)[:, None]
    tracks = np.stack([np.hstack([10 + 2.0 * t, 50 + 0 * t, 20 + 0 * t, 40 + 0 * t]),
                       np.hstack([300 - 1.0 * t, 80 + t, 20 + 0 * t, 40 + 0 * t])], 1)  # xywh
    det = np.concatenate([tracks, np.full((T, 1, 4), np.nan)], 1)
    det[5:10, 0] = np.nan  # track 0 coasts for 5 frames
    det[::4, 2] = [900.0, 500.0, 20.0, 40.0]  # clutter far from both
    return det, tracks


def test_detections_are_coloured_by_the_track_they_overlap():
    import matplotlib

    matplotlib.use("Agg")
    det, tracks = _scene()
    fig = plot_tracks(det, tracks, first_frame=1)
    ax_x = fig.axes[0]
    counts = [len(c.get_offsets()) for c in ax_x.collections]  # grey, track 1, track 2
    assert counts == [10, 35, 40]  # 10 clutter rows, track 0 missing 5 frames
    solid = ax_x.lines[0].get_ydata()  # track 1, solid where supported
    assert np.isnan(solid[5:10]).all() and np.isfinite(solid[:5]).all()
    assert fig.axes[1].yaxis_inverted()  # image y grows downwards


def test_bad_shapes_are_refused():
    det, tracks = _scene()
    with pytest.raises(ValueError, match="detections"):
        plot_tracks(det[0], tracks)
    with pytest.raises(ValueError, match="tracks"):
        plot_tracks(det, tracks[:-1])
