"""Real pedestrian motion as box trajectories: the ETH/UCY ground-plane tracks seen by a camera.

The ETH/UCY files (``../shared/data/trajectories/eth_ucy``, research use only, read where they
are) give pedestrians' ground-plane positions in metres at 2.5 Hz. A window of ``n_frames``
becomes a box trajectory in image-normalised ``(x1, y1, x2, y2)`` units, the units of
:func:`mixest.datasets.make_trajectories`, like this:

1. **Frame rate.** Each pedestrian's run of consecutive annotations is interpolated with a
   cubic spline at a video frame rate drawn from {14, 30} fps (MOTChallenge's rates: MOT17-05
   is filmed at 14 fps, most other sequences at 25-30).
2. **Camera.** The ground plane is turned by a random angle; its first axis maps to image x,
   its second to image y foreshortened by a factor drawn in [0.2, 0.6] (a camera looking down
   at a street, as in MOTChallenge), without perspective (the box size is fixed).
3. **Scale.** The box's width is log-normal(-3.8, 0.7) and its height the width times
   N(5.26, 0.77^2), as in the synthetic generator; a pedestrian is taken to be 1.75 m tall, so
   one metre is ``height / 1.75`` normalised y units, and ``height / 1.75 * 9 / 16`` normalised
   x units (a 16:9 image).
4. **Placement.** The window is shifted to a uniformly drawn position at which it stays inside
   the image; a window that cannot fit is dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "trajectories" / "eth_ucy"
PERSON_HEIGHT_M = 1.75
FRAME_RATES = (14.0, 30.0)
ANNOTATION_STEP_S = 0.4


def _runs(folder: Path) -> list[np.ndarray]:
    """Each pedestrian's runs of consecutive annotations, ``(n, 2)`` metres at 2.5 Hz."""
    runs = []
    for path in sorted(folder.glob("*.txt")):
        table = np.loadtxt(path)
        for pid in np.unique(table[:, 1]):
            rows = table[table[:, 1] == pid]
            rows = rows[np.argsort(rows[:, 0])]
            breaks = np.flatnonzero(np.diff(rows[:, 0]) != 10) + 1
            runs.extend(r[:, 2:4] for r in np.split(rows, breaks) if len(r) >= 4)
    return runs


def eth_ucy_boxes(n_frames: int = 60, stride: int = 30, *, folder: Path = DATA,
                  random_state: int = 0) -> np.ndarray:
    """Every ``n_frames`` window (every ``stride`` frames) of every ETH/UCY run, as boxes.

    Returns
    -------
    boxes : ndarray of shape (n_windows, n_frames, 4)
    """
    from scipy.interpolate import CubicSpline

    if not folder.is_dir():
        raise FileNotFoundError(f"ETH/UCY trajectories not found at {folder}")
    rng = np.random.default_rng(random_state)
    out = []
    for run in _runs(folder):
        fps = rng.choice(FRAME_RATES)
        t = np.arange(len(run)) * ANNOTATION_STEP_S
        frames = np.arange(0.0, t[-1], 1.0 / fps)
        if len(frames) < n_frames:
            continue
        path = CubicSpline(t, run)(frames)  # (T, 2) metres
        for start in range(0, len(frames) - n_frames + 1, stride):
            xy = path[start:start + n_frames]
            angle = rng.uniform(0, 2 * np.pi)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            xy = (xy - xy[0]) @ rot.T
            width = np.exp(rng.normal(-3.8, 0.7))
            height = width * rng.normal(5.26, 0.77)
            if not 0 < height < 1:
                continue
            per_m = height / PERSON_HEIGHT_M
            x = xy[:, 0] * per_m * 9.0 / 16.0
            y = xy[:, 1] * per_m * rng.uniform(0.2, 0.6)
            room_x = 1.0 - width - (x.max() - x.min())
            room_y = 1.0 - height - (y.max() - y.min())
            if room_x <= 0 or room_y <= 0:
                continue
            x1 = x - x.min() + rng.uniform(0, room_x)
            y1 = y - y.min() + rng.uniform(0, room_y)
            out.append(np.stack([x1, y1, x1 + width, y1 + height], -1))
    return np.asarray(out)


if __name__ == "__main__":
    boxes = eth_ucy_boxes()
    speed = np.abs(np.diff(boxes[..., 0], axis=1)).mean()
    print(boxes.shape, f"mean |dx1| per frame {speed:.5f}")
