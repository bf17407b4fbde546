"""Fixed-length multi-source windows cut out of MOTChallenge ground truth.

The paper's tracking benchmark (Lin et al., TMLR 2023, Table 2) evaluates on short windows of
``T`` frames in which ``N`` pedestrians are visible throughout, with detections simulated from
their ground-truth boxes. :func:`make_windows` cuts such windows; :func:`make_detection_windows`
adds the simulated detections.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from mixest.base import check_int
from mixest.tracking._motchallenge import read_mot, read_seqinfo, table_to_tracks

__all__ = ["make_detection_windows", "make_windows"]


class _NoWindowError(ValueError):
    """No window fits (a ValueError; benchmarks that scan many sequences skip on it)."""


def _load_one(
    item: object, index: int
) -> tuple[str, pd.DataFrame, tuple[int, int] | None, Path | None]:
    """Resolve a table, a ``gt.txt`` path or a sequence folder to (name, table, image size,
    sequence folder)."""
    if isinstance(item, pd.DataFrame):
        source = item.attrs.get("path")
        table = item
    elif isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if path.is_dir():
            path = path / "gt" / "gt.txt"
        source = str(path)
        table = read_mot(path)
    else:
        raise TypeError(
            "gt must be a ground-truth DataFrame (from read_mot), a path to a gt.txt file or "
            f"to a sequence folder, or a list of those; got {type(item).__name__}."
        )
    name, image_size, seq_dir = f"sequence_{index}", None, None
    if source is not None:
        path = Path(source)
        # MOTChallenge layout: <sequence>/gt/gt.txt next to <sequence>/seqinfo.ini.
        seq_dir = path.parent.parent if path.parent.name == "gt" else path.parent
        name = seq_dir.name if path.parent.name == "gt" else path.stem
        if (seq_dir / "seqinfo.ini").is_file():
            info = read_seqinfo(seq_dir)
            name = str(info.get("name", name))
            if "im_width" in info and "im_height" in info:
                image_size = (info["im_width"], info["im_height"])
    return name, table, image_size, seq_dir


def _load_sequences(gt: object) -> list[tuple[str, pd.DataFrame, tuple[int, int] | None, Path]]:
    items = list(gt) if isinstance(gt, (list, tuple)) else [gt]
    if not items:
        raise ValueError("gt is an empty list; give at least one ground-truth table or path.")
    return [_load_one(item, i) for i, item in enumerate(items)]


def _filter(
    table: pd.DataFrame, classes: object, min_visibility: float, consider_only: bool, name: str
) -> pd.DataFrame:
    for col in ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height"):
        if col not in table.columns:
            raise ValueError(f"gt ({name}) lacks the column {col!r}; it has {list(table.columns)}.")
    keep = np.ones(len(table), dtype=bool)
    if classes is not None:
        if "class" not in table.columns:
            raise ValueError(
                f"gt ({name}) has no 'class' column (not a 9-column gt.txt?); pass classes=None "
                "to keep every box."
            )
        keep &= table["class"].isin(list(classes)).to_numpy()
    if consider_only:
        if "conf" not in table.columns:
            raise ValueError(f"gt ({name}) has no 'conf' column; pass consider_only=False.")
        keep &= (table["conf"] == 1).to_numpy()
    if min_visibility > 0:
        if "visibility" not in table.columns:
            raise ValueError(f"gt ({name}) has no 'visibility' column; pass min_visibility=0.")
        keep &= (table["visibility"] >= min_visibility).to_numpy()
    return table.loc[keep]


def _check_classes(classes: object) -> tuple[int, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, numbers.Integral) and not isinstance(classes, bool):
        return (int(classes),)
    try:
        out = tuple(classes)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"classes must be None, an int or a sequence of ints, got {classes!r}."
        ) from None
    if not out or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in out):
        raise TypeError(f"classes must be None, an int or a sequence of ints, got {classes!r}.")
    return tuple(int(c) for c in out)


def make_windows(
    gt: object,
    n_sources: int = 3,
    n_frames: int = 60,
    *,
    stride: int | None = None,
    classes: object = (1,),
    min_visibility: float = 0.0,
    consider_only: bool = True,
    groups_per_window: int = 1,
    grouping: str = "any",
    max_windows: int | None = None,
    frame_range: tuple[int, int] | None = None,
    random_state: int | np.random.RandomState | None = None,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, pd.DataFrame]:
    """Cut windows of ``n_frames`` frames with ``n_sources`` fully present tracks.

    A track is eligible for a window when, after filtering, it has a box in every one of the
    window's frames. Windows are scanned from the first frame of each sequence: a window that
    has at least ``n_sources`` eligible tracks is kept and the scan jumps ``stride`` frames
    ahead; otherwise it moves one frame on. With the default ``stride = n_frames`` the windows
    do not overlap (and this greedy scan finds as many as possible).

    Parameters
    ----------
    gt : DataFrame, path, or list of them
        Ground truth of one or more sequences: a table from :func:`read_mot` (9-column
        ``gt.txt``), the path of a ``gt.txt`` file, or a MOTChallenge sequence folder
        (containing ``gt/gt.txt`` and, optionally, ``seqinfo.ini``).
    n_sources : int, default=3
        Number of tracks ``N`` per window.
    n_frames : int, default=60
        Window length ``T`` in frames.
    stride : int, optional
        Frames between the starts of two kept windows of a sequence; default ``n_frames``
        (non-overlapping windows).
    classes : int, sequence of int or None, default=(1,)
        Object classes to keep (MOT17: 1 pedestrian, 7 static person, ...); None keeps all.
    min_visibility : float, default=0.0
        Boxes with a smaller ``visibility`` are dropped (so a mostly occluded person breaks
        the track's presence).
    consider_only : bool, default=True
        Keep only boxes whose ``conf`` ("consider") flag is 1.
    groups_per_window : int, default=1
        Draw up to this many disjoint groups of ``n_sources`` tracks from each window, each
        giving one output window (more windows from busy sequences).
    grouping : {"any", "close"}, default="any"
        How a group of tracks is chosen among the eligible ones. "any": the smallest ids, or
        a random draw with ``random_state``. "close": the tracks that come closest to one
        another (hard windows, where objects pass or occlude each other): the closest pair,
        then the track closest to the group, and so on, where the distance of two tracks is
        the smallest, over the window's frames, distance between their box centres divided by
        the mean of their box sizes ``sqrt(w h)``. Deterministic: ``random_state`` only picks
        among the windows then.
    max_windows : int, optional
        Keep at most this many windows: the first ones, or a random subset (in order) when
        ``random_state`` is given.
    frame_range : (first, last), optional
        Cut windows only from frames ``first`` to ``last`` (inclusive, 1-based), e.g. the
        second half of each sequence, which a detector trained on the first half never saw.
    random_state : int, RandomState instance or None, default=None
        None chooses tracks deterministically (the smallest ids among the eligible ones);
        otherwise tracks are drawn at random among the eligible ones.
    return_info : bool, default=False
        Also return a table describing every window.

    Returns
    -------
    ground_truth : ndarray of shape (n_windows, n_frames, n_sources, 4)
        ``"xywh"`` pixel boxes, without NaN; tracks in increasing id order within a window.
    info : pandas.DataFrame
        Only with ``return_info``: one row per window with ``sequence``, ``first_frame``,
        ``last_frame`` (inclusive, 1-based), ``track_ids`` (tuple, in the order of the ``N``
        axis), ``im_width`` and ``im_height`` (from ``seqinfo.ini``, NaN when unknown).

    Raises
    ------
    ValueError
        If no window qualifies (the message says how many tracks could be found), or on
        invalid arguments.

    Examples
    --------
    >>> gt = make_windows("MOT17-05", n_sources=3, n_frames=60)  # doctest: +SKIP
    >>> gt.shape  # doctest: +SKIP
    (13, 60, 3, 4)
    """
    n_sources = check_int(n_sources, "n_sources", 1)
    n_frames = check_int(n_frames, "n_frames", 1)
    stride = n_frames if stride is None else check_int(stride, "stride", 1)
    groups_per_window = check_int(groups_per_window, "groups_per_window", 1)
    if grouping not in ("any", "close"):
        raise ValueError(f"grouping must be 'any' or 'close', got {grouping!r}.")
    if max_windows is not None:
        max_windows = check_int(max_windows, "max_windows", 1)
    if not isinstance(min_visibility, numbers.Real) or not 0 <= min_visibility <= 1:
        raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility!r}.")
    if frame_range is not None:
        frame_range = _check_frame_range(frame_range)
    classes = _check_classes(classes)
    rng = None if random_state is None else check_random_state(random_state)

    windows, rows = [], []
    best = (0, "")  # most tracks fully present in any window, for the error message
    for name, table, image_size, _ in _load_sequences(gt):
        table = _filter(table, classes, float(min_visibility), bool(consider_only), name)
        if frame_range is not None:
            table = table.loc[table["frame"].between(*frame_range)]
        if len(table) == 0:
            continue
        frames = np.arange(1, int(table["frame"].max()) + 1)
        ids = np.unique(table["id"].to_numpy(dtype=np.int64))
        tracks = table_to_tracks(table, frames=frames, ids=ids)  # (T, n_ids, 4)
        if len(frames) < n_frames:
            continue
        present = ~np.isnan(tracks).any(axis=-1)
        # full[s, i]: track i present in every frame of the window starting at index s.
        cum = np.concatenate([np.zeros((1, len(ids)), np.int64), np.cumsum(present, axis=0)])
        full = (cum[n_frames:] - cum[:-n_frames]) == n_frames
        counts = full.sum(axis=1)
        if counts.max() > best[0]:
            best = (int(counts.max()), name)
        s = 0
        while s < len(full):
            eligible = np.flatnonzero(full[s])
            if len(eligible) < n_sources:
                s += 1
                continue
            n_groups = min(groups_per_window, len(eligible) // n_sources)
            if grouping == "close":
                groups = _close_groups(tracks[s : s + n_frames, eligible], n_sources, n_groups)
                groups = [eligible[g] for g in groups]
            else:
                if rng is not None:
                    eligible = rng.permutation(eligible)
                groups = [eligible[g * n_sources : (g + 1) * n_sources] for g in range(n_groups)]
            for group in groups:
                chosen = np.sort(group)
                windows.append(tracks[s : s + n_frames, chosen])
                rows.append(
                    {
                        "sequence": name,
                        "first_frame": int(frames[s]),
                        "last_frame": int(frames[s + n_frames - 1]),
                        "track_ids": tuple(int(i) for i in ids[chosen]),
                        "im_width": np.nan if image_size is None else image_size[0],
                        "im_height": np.nan if image_size is None else image_size[1],
                    }
                )
            s += stride
    if not windows:
        where = f" (in {best[1]})" if best[1] else ""
        raise _NoWindowError(
            f"no window of n_frames={n_frames} frames has n_sources={n_sources} tracks present "
            f"in every frame (classes={classes}, consider_only={consider_only}, "
            f"min_visibility={min_visibility}); the best window has {best[0]} such track(s)"
            f"{where}. Use shorter "
            "windows, fewer sources, looser filters or more sequences."
        )
    keep = np.arange(len(windows))
    if max_windows is not None and len(windows) > max_windows:
        keep = (
            keep[:max_windows]
            if rng is None
            else np.sort(rng.choice(len(windows), size=max_windows, replace=False))
        )
    ground_truth = np.stack([windows[i] for i in keep])
    if not return_info:
        return ground_truth
    info = pd.DataFrame([rows[i] for i in keep])
    return ground_truth, info


def _check_frame_range(frame_range: object) -> tuple[int, int]:
    try:
        first, last = frame_range  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(f"frame_range must be a pair (first, last), got {frame_range!r}.") from None
    first = check_int(first, "frame_range[0]", 1)
    last = check_int(last, "frame_range[1]", first)
    return first, last


def _close_groups(boxes: np.ndarray, n_sources: int, n_groups: int) -> list[np.ndarray]:
    """Disjoint groups of ``n_sources`` tracks that come closest to one another.

    Parameters
    ----------
    boxes : ndarray of shape (T, m, 4)
        ``xywh`` boxes of the ``m >= n_sources * n_groups`` eligible tracks, no NaN.

    Returns
    -------
    list of ndarray of int
        ``n_groups`` index arrays into the ``m`` tracks, the closest group first.
    """
    centre = boxes[..., :2] + boxes[..., 2:] / 2
    size = np.sqrt(np.abs(boxes[..., 2] * boxes[..., 3]))
    gap = np.linalg.norm(centre[:, :, None] - centre[:, None, :], axis=-1)
    scale = np.maximum((size[:, :, None] + size[:, None, :]) / 2, np.finfo(float).tiny)
    distance = (gap / scale).min(axis=0)  # (m, m): closest approach over the window
    np.fill_diagonal(distance, np.inf)
    free = np.ones(len(distance), dtype=bool)
    groups = []
    for _ in range(n_groups):
        if n_sources == 1:
            group = [int(np.flatnonzero(free)[0])]
        else:
            pair = np.where(free[:, None] & free[None, :], distance, np.inf)
            group = list(np.unravel_index(np.argmin(pair), pair.shape))
        while len(group) < n_sources:
            to_group = np.where(free, distance[:, group].min(axis=1), np.inf)
            to_group[group] = np.inf
            group.append(int(np.argmin(to_group)))
        free[group] = False
        groups.append(np.asarray(group, dtype=np.int64))
    return groups


_SIMULATION_DEFAULTS = {"jitter": 0.04, "miss_prob": 0.1, "clutter_rate": 0.0, "shuffle": False,
                        "image_size": None}
_REAL_DEFAULTS = {"min_score": 0.5, "clutter": False, "first_frame": "detections"}
# A real detection matches a target when their IoU reaches this (the MOTChallenge threshold).
_MATCH_IOU = 0.5


def make_detection_windows(
    gt: object,
    n_sources: int = 3,
    n_frames: int = 60,
    *,
    stride: int | None = None,
    classes: object = (1,),
    min_visibility: float = 0.0,
    consider_only: bool = True,
    groups_per_window: int = 1,
    grouping: str = "any",
    max_windows: int | None = None,
    frame_range: tuple[int, int] | None = None,
    detections: object = "simulated",
    jitter: float | None = None,
    miss_prob: float | None = None,
    clutter_rate: float | None = None,
    shuffle: bool | None = None,
    image_size: tuple[float, float] | None = None,
    min_score: float | None = None,
    clutter: bool | None = None,
    first_frame: str | None = None,
    occlusion: int = 0,
    random_state: int | np.random.RandomState | None = None,
    return_info: bool = False,
) -> tuple[np.ndarray, ...]:
    """Cut ground-truth windows and give each its detections, simulated or real.

    The windows are those of :func:`make_windows`. Their detections are either simulated
    (:func:`~mixest.tracking.simulate_detections`: Gaussian jitter proportional to the box size,
    random misses, optional uniform clutter, optional shuffling within each frame) or a real
    detector's, from a MOTChallenge ``det.txt``. Real detections follow the paper's MOT17-3T
    construction: in every frame the detections (with a score of at least ``min_score``) are
    matched one-to-one to the window's targets by largest IoU, a pair with IoU >= 0.5 is that
    target's detection and an unmatched target is a miss. Targets only (``clutter=False``, the
    paper's protocol) keeps the matched detections; ``clutter=True`` also keeps the frame's
    other detections whose centre lies within one box size of a target's box (its box grown
    by its width on each side and by its height above and below): other people and false
    positives near the targets, what a real tracker must ignore. Rows keep the file's order, so
    their position says nothing of their target.

    Parameters
    ----------
    gt, n_sources, n_frames, stride, classes, min_visibility, consider_only, \
groups_per_window, grouping, max_windows, frame_range
        As in :func:`make_windows`.
    detections : "simulated", "real", DataFrame, path or list of them, default="simulated"
        ``"simulated"``: from the ground truth. ``"real"``: each sequence's ``det/det.txt``
        (MOTChallenge layout, next to its ``gt/``). A detection table (:func:`read_mot`) or
        the path of a ``det.txt``, or a list of those in the order of ``gt``: those detections.
    jitter : float, default=0.04
        Simulated only: noise standard deviation, as a fraction of the box width/height.
    miss_prob : float, default=0.1
        Simulated only: probability that a detection is missed.
    clutter_rate : float, default=0.0
        Simulated only: mean number of false detections per frame (uniform over the image).
    shuffle : bool, default=False
        Simulated only: put the detections of each frame in random order (otherwise row
        ``k < N`` is source ``k``'s detection: an easy, unrealistic protocol).
    image_size : (width, height), optional
        Simulated only: image extent for clutter; default the sequence's ``seqinfo.ini`` size.
    min_score : float, default=0.5
        Real only: detections with a lower score are dropped first.
    clutter : bool, default=False
        Real only: keep the detections near the targets that match none of them.
    first_frame : {"detections", "truth"}, default="detections"
        Real only: ``"truth"`` replaces the first frame's detections by the targets' true
        boxes, the user saying whom to track (with clutter, the first frame's detections
        alone do not say which three people are the targets).
    occlusion : int, default=0
        Hide each target's detections for a run of this many consecutive frames, starting at
        a random frame after the first (an occlusion protocol; simulated or real).
    random_state : int, RandomState instance or None, default=None
        Seeds the track choice (see :func:`make_windows`), the simulated detections and the
        occlusions. With None, tracks are chosen deterministically and the draws use NumPy's
        global random state (scikit-learn's convention), so results are not reproducible.
    return_info : bool, default=False
        Also return the window table of :func:`make_windows`.

    Returns
    -------
    observations : ndarray of shape (n_windows, n_frames, K, 4)
        ``"xywh"`` pixel detections, NaN rows for missing ones; ``K`` is the same for all
        windows (shorter frames padded with NaN rows).
    ground_truth : ndarray of shape (n_windows, n_frames, n_sources, 4)
        The true tracks.
    info : pandas.DataFrame
        Only with ``return_info``.

    Raises
    ------
    ValueError
        If a simulation option is given with real detections or the other way round, or a
        sequence has no ``det/det.txt`` with ``detections="real"``.

    Examples
    --------
    >>> X, y = make_detection_windows("MOT17-05", n_frames=60, random_state=0)  # doctest: +SKIP
    >>> X, y = make_detection_windows("MOT17-05", detections="real", clutter=True,
    ...                               first_frame="truth")  # doctest: +SKIP
    """
    from mixest.tracking._detections import check_occlusion, occlude, simulate_detections

    simulated = isinstance(detections, str) and detections == "simulated"
    given = {"jitter": jitter, "miss_prob": miss_prob, "clutter_rate": clutter_rate,
             "shuffle": shuffle, "image_size": image_size, "min_score": min_score,
             "clutter": clutter, "first_frame": first_frame}
    own, other = ((_SIMULATION_DEFAULTS, _REAL_DEFAULTS) if simulated
                  else (_REAL_DEFAULTS, _SIMULATION_DEFAULTS))
    refused = [name for name in other if given[name] is not None]
    if refused:
        kind = "simulated" if simulated else "real"
        raise ValueError(f"{', '.join(refused)} do(es) not apply to {kind} detections "
                         f"(detections={detections!r}); leave it out.")
    options = {name: own[name] if given[name] is None else given[name] for name in own}
    rng = check_random_state(random_state)
    occlusion = check_occlusion(occlusion, check_int(n_frames, "n_frames", 1))
    if not simulated:  # checked before any file is read or window cut
        _check_real_options(**options)
    det_tables = None if simulated else _detection_tables(gt, detections)
    ground_truth, info = make_windows(
        gt,
        n_sources,
        n_frames,
        stride=stride,
        classes=classes,
        min_visibility=min_visibility,
        consider_only=consider_only,
        groups_per_window=groups_per_window,
        grouping=grouping,
        max_windows=max_windows,
        frame_range=frame_range,
        random_state=None if random_state is None else rng,
        return_info=True,
    )
    if not simulated:
        observations, labels = _real_detections(det_tables, ground_truth, info, **options)
        if occlusion:
            occlude(observations, labels, ground_truth.shape[2], occlusion, rng)
    else:
        # One simulation per sequence, so that clutter uses that sequence's image size.
        parts = []
        for _, idx in info.groupby("sequence", sort=False).indices.items():
            size = options["image_size"]
            if size is None and not np.isnan(info["im_width"].iloc[idx[0]]):
                size = (float(info["im_width"].iloc[idx[0]]),
                        float(info["im_height"].iloc[idx[0]]))
            obs = simulate_detections(
                ground_truth[idx], jitter=options["jitter"], miss_prob=options["miss_prob"],
                clutter_rate=options["clutter_rate"], shuffle=options["shuffle"],
                occlusion=occlusion, box_format="xywh", image_size=size, random_state=rng,
            )
            parts.append((idx, obs))
        K = max(obs.shape[2] for _, obs in parts)
        observations = np.full((*ground_truth.shape[:2], K, 4), np.nan)
        for idx, obs in parts:
            observations[idx, :, : obs.shape[2]] = obs
    if return_info:
        return observations, ground_truth, info
    return observations, ground_truth


def _check_real_options(min_score: object, clutter: object, first_frame: object) -> None:
    if not isinstance(min_score, numbers.Real) or isinstance(min_score, bool):
        raise TypeError(f"min_score must be a number, got {min_score!r}.")
    if not isinstance(clutter, (bool, np.bool_)):
        raise TypeError(f"clutter must be True or False, got {clutter!r}.")
    if first_frame not in ("detections", "truth"):
        raise ValueError(f"first_frame must be 'detections' or 'truth', got {first_frame!r}.")


def _detection_tables(gt: object, detections: object) -> dict[str, pd.DataFrame]:
    """Sequence name -> its detection table, for ``detections`` other than "simulated"."""
    sequences = _load_sequences(gt)
    if isinstance(detections, str) and detections == "real":
        items = []
        for name, _, _, seq_dir in sequences:
            path = None if seq_dir is None else seq_dir / "det" / "det.txt"
            if path is None or not path.is_file():
                where = "it was given as a table" if seq_dir is None else f"no {path}"
                raise ValueError(f"detections='real' needs each sequence's det/det.txt; "
                                 f"{name}: {where}. Pass the detections themselves instead.")
            items.append(path)
    else:
        items = list(detections) if isinstance(detections, (list, tuple)) else [detections]
        if len(items) != len(sequences):
            raise ValueError(f"detections has {len(items)} item(s) for {len(sequences)} "
                             "ground-truth sequence(s); give one per sequence, in order.")
    tables = {}
    for (name, _, _, _), item in zip(sequences, items, strict=True):
        if isinstance(item, (str, os.PathLike)):
            item = read_mot(item)
        if not isinstance(item, pd.DataFrame):
            raise TypeError("detections must be 'simulated', 'real', a detection table, the path "
                            f"of a det.txt file or a list of those; got {type(item).__name__}.")
        if "conf" not in item.columns:
            raise ValueError(f"the detections of {name} have no score column 'conf'; "
                             f"they have {list(item.columns)}.")
        if name in tables:
            raise ValueError(f"two ground-truth sequences are both named {name!r}; their "
                             "detections could be confused.")
        tables[name] = item
    return tables


def _real_detections(
    tables: dict[str, pd.DataFrame], ground_truth: np.ndarray, info: pd.DataFrame, *,
    min_score: float, clutter: bool, first_frame: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Each window's real detections: its targets' matches (and, with ``clutter``, the
    unmatched detections near them), in file order.

    Returns ``(observations (n, T, K, 4) xywh, labels (n, T, K))`` with label ``n`` for target
    ``n``'s detection, -1 for clutter and -2 for a missing row.
    """
    from scipy.optimize import linear_sum_assignment

    from mixest.tracking._boxes import box_iou, convert_boxes
    from mixest.tracking._motchallenge import detections_to_array

    n, T, N, _ = ground_truth.shape
    windows = []
    for w, row in enumerate(info.itertuples()):
        table = tables[row.sequence]
        table = table.loc[table["conf"].to_numpy() >= min_score]
        frames = np.arange(row.first_frame, row.last_frame + 1)
        boxes = detections_to_array(table, frames) if len(table) else np.full((T, 1, 4), np.nan)
        det = convert_boxes(boxes, "xywh", "xyxy")
        truth = convert_boxes(ground_truth[w], "xywh", "xyxy")
        iou = np.nan_to_num(box_iou(truth, det))  # (T, N, K)
        labels = np.where(np.isnan(det).any(-1), -2, -1)
        for t in range(T):
            rows, cols = linear_sum_assignment(-iou[t])
            good = iou[t, rows, cols] >= _MATCH_IOU
            labels[t, cols[good]] = rows[good]
        if clutter:
            size = truth[..., 2:] - truth[..., :2]  # (T, N, 2)
            lo, hi = truth[..., :2] - size, truth[..., 2:] + size
            centre = (det[..., :2] + det[..., 2:]) / 2  # (T, K, 2)
            near = ((centre[:, :, None] >= lo[:, None]) & (centre[:, :, None] <= hi[:, None]))
            near = near.all(-1).any(-1)  # (T, K)
            labels = np.where((labels == -1) & ~near, -2, labels)
        else:
            labels = np.where(labels == -1, -2, labels)
        if first_frame == "truth":
            labels[0] = -2
        windows.append((boxes, labels, truth))
    K = max(max(int((lab > -2).sum(-1).max()) for _, lab, _ in windows), N)
    observations = np.full((n, T, K, 4), np.nan)
    out_labels = np.full((n, T, K), -2)
    for w, (boxes, labels, _) in enumerate(windows):
        keep = labels > -2
        # kept rows first, in file order (a stable sort of "not kept")
        order = np.argsort(~keep, axis=1, kind="stable")[:, :K]
        kept = np.take_along_axis(keep, order, 1)
        k = order.shape[1]
        observations[w, :, :k] = np.where(kept[..., None],
                                          np.take_along_axis(boxes, order[..., None], 1), np.nan)
        out_labels[w, :, :k] = np.where(kept, np.take_along_axis(labels, order, 1), -2)
        if first_frame == "truth":
            observations[w, 0, :N] = ground_truth[w, 0]
            out_labels[w, 0, :N] = np.arange(N)
    return observations, out_labels
