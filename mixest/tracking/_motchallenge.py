"""MOTChallenge text files: ground truth, detections, results and ``seqinfo.ini``.

MOTChallenge files are comma-separated, without header, one box per line:

* ground truth ``gt/gt.txt`` (MOT16/17/20), 9 columns:
  ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, class, visibility``;
  ``conf`` is the "consider" flag (1 evaluated, 0 ignored), ``class`` 1 is pedestrian;
* detections ``det/det.txt`` and tracker results, 10 columns:
  ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z``; detections have
  ``id = -1``, and ``x, y, z`` (world coordinates) are -1 in 2-D challenges.

Frames are 1-based, boxes are ``"xywh"`` pixels (see :mod:`mixest.tracking._boxes`).
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mixest.base import check_sequences

__all__ = [
    "BOX_COLUMNS",
    "GT_COLUMNS",
    "RESULT_COLUMNS",
    "detections_to_array",
    "read_mot",
    "read_seqinfo",
    "table_to_tracks",
    "tracks_to_table",
    "write_mot",
]

BOX_COLUMNS: tuple[str, ...] = ("bb_left", "bb_top", "bb_width", "bb_height")
GT_COLUMNS: tuple[str, ...] = ("frame", "id", *BOX_COLUMNS, "conf", "class", "visibility")
RESULT_COLUMNS: tuple[str, ...] = ("frame", "id", *BOX_COLUMNS, "conf", "x", "y", "z")
_INT_COLUMNS = ("frame", "id", "class")


def read_mot(path: str | os.PathLike) -> pd.DataFrame:
    """Read a MOTChallenge ground-truth, detection or result file.

    Parameters
    ----------
    path : str or path-like
        A ``gt.txt`` (9 columns) or ``det.txt`` / result file (10 columns).

    Returns
    -------
    table : pandas.DataFrame
        One row per box, in file order, with columns :data:`GT_COLUMNS`
        (``frame, id, bb_left, bb_top, bb_width, bb_height, conf, class, visibility``) for 9
        columns or :data:`RESULT_COLUMNS` (``frame, id, bb_left, bb_top, bb_width, bb_height,
        conf, x, y, z``) for 10. ``frame``, ``id`` and ``class`` are int64, the rest float64.
        ``table.attrs["path"]`` holds the file's path.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is binary or empty, has a number of columns other than 9 or 10, rows of
        different lengths, non-numeric fields (the message names the line and the column),
        non-integer frames/ids, frames below 1, or negative box sizes.

    Examples
    --------
    >>> table = read_mot("MOT17-05/gt/gt.txt")  # doctest: +SKIP
    >>> table.columns.tolist()  # doctest: +SKIP
    ['frame', 'id', 'bb_left', 'bb_top', 'bb_width', 'bb_height', 'conf', 'class', 'visibility']
    """
    if isinstance(path, (bytes, int)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOTChallenge file not found: {path}")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        text = "\0"  # reported just below, with the other binary files
    if "\0" in text:
        raise ValueError(
            f"path {str(path)!r} is a binary file, not a MOTChallenge text file (comma-separated "
            "numbers, one box per line)."
        )
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not lines:
        raise ValueError(f"path {str(path)!r} is an empty MOTChallenge file (no rows).")
    # Split by hand (fast enough: MOT17-02, 30k rows, parses in ~0.1 s) so that ragged rows and
    # non-numeric fields get an error naming the line, which pandas' parser does not give.
    n_cols = len(lines[0][1].split(","))
    if n_cols not in (9, 10):
        raise ValueError(
            f"path {str(path)!r}: expected 9 columns (gt.txt: frame, id, bb_left, bb_top, "
            "bb_width, bb_height, conf, class, visibility) or 10 columns (det.txt / results: "
            f"frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z), got {n_cols} "
            f"on line {lines[0][0]}."
        )
    rows = []
    for lineno, line in lines:
        fields = line.split(",")
        if len(fields) != n_cols:
            raise ValueError(
                f"path {str(path)!r}: line {lineno} has {len(fields)} columns, the first row "
                f"has {n_cols}."
            )
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            names = GT_COLUMNS if n_cols == 9 else RESULT_COLUMNS
            col = next(j for j, f in enumerate(fields) if not _is_number(f))
            raise ValueError(
                f"path {str(path)!r}: line {lineno}, column {col + 1} ({names[col]}) is not a "
                f"number: {fields[col].strip()[:40]!r}."
            ) from None
    values = np.array(rows, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise ValueError(f"path {str(path)!r}: line {lines[bad][0]} has NaN or infinite values.")
    columns = GT_COLUMNS if n_cols == 9 else RESULT_COLUMNS
    table = pd.DataFrame(values, columns=list(columns))
    for col in _INT_COLUMNS:
        if col in table:
            if not np.all(table[col] == np.round(table[col])):
                raise ValueError(f"path {str(path)!r}: column {col!r} has non-integer values.")
            table[col] = table[col].astype(np.int64)
    _check_table_values(table, f"path {str(path)!r}")
    table.attrs["path"] = str(path)
    return table


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _check_table_values(table: pd.DataFrame, what: str) -> None:
    if (table["frame"] < 1).any():
        raise ValueError(f"{what}: frames are 1-based, got frame {int(table['frame'].min())}.")
    sizes = table[["bb_width", "bb_height"]].to_numpy()
    if (sizes < 0).any():
        raise ValueError(f"{what}: boxes with negative bb_width or bb_height.")


def _check_table(table: object, name: str = "table") -> pd.DataFrame:
    """Check that ``table`` is a DataFrame with finite numeric frame, id and box columns."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas DataFrame with columns frame, id, bb_left, bb_top, "
            f"bb_width, bb_height (e.g. from read_mot), got {type(table).__name__}."
        )
    missing = [c for c in ("frame", "id", *BOX_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(
            f"{name} lacks the column(s) {missing}; it has {list(table.columns)}. "
            "MOTChallenge tables need frame, id, bb_left, bb_top, bb_width, bb_height."
        )
    for col in ("frame", "id", *BOX_COLUMNS):
        values = table[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise TypeError(f"{name}[{col!r}] must be numeric, got dtype {values.dtype}.")
        if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
            raise ValueError(f"{name}[{col!r}] contains NaN or infinite values.")
    for col in ("frame", "id"):
        v = table[col].to_numpy(dtype=np.float64)
        if not np.all(v == np.round(v)):
            raise ValueError(f"{name}[{col!r}] must hold integers.")
    _check_table_values(table, name)
    return table


def _format_column(values: pd.Series) -> pd.Series:
    """Integral columns are written without a decimal point, others with full precision."""
    v = values.to_numpy(dtype=np.float64)
    if np.all(v == np.round(v)) and np.all(np.abs(v) < 2**53):
        return pd.Series(v.astype(np.int64), index=values.index)
    return pd.Series([repr(float(x)) for x in v], index=values.index)


def write_mot(path: str | os.PathLike, table: pd.DataFrame, *, kind: str = "result") -> None:
    """Write a table as a MOTChallenge text file.

    Parameters
    ----------
    path : str or path-like
        Output file (parent folders are created). MOTChallenge expects one file per sequence,
        named after it (``MOT17-05-SDP.txt``).
    table : pandas.DataFrame
        Columns ``frame, id, bb_left, bb_top, bb_width, bb_height`` (as from
        :func:`read_mot` or :func:`tracks_to_table`); the optional ``conf`` (default 1),
        ``x, y, z`` (default -1), ``class`` and ``visibility`` (default 1) are used when present.
    kind : {"result", "gt"}, default="result"
        ``"result"`` writes the 10-column tracker result format
        ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z``; ``"gt"`` writes the
        9-column ground-truth format ``frame, id, bb_left, bb_top, bb_width, bb_height, conf,
        class, visibility`` (handy to build test sequences).

    Notes
    -----
    Rows are written sorted by frame then id, as the MOTChallenge devkit expects. Values that
    are integers are written without a decimal point; others with full float precision, so
    ``read_mot(write_mot(table))`` reproduces the table exactly.
    """
    if kind not in ("result", "gt"):
        raise ValueError(f"kind must be 'result' or 'gt', got {kind!r}.")
    table = _check_table(table)
    defaults = {"conf": 1.0, "x": -1.0, "y": -1.0, "z": -1.0, "class": 1, "visibility": 1.0}
    columns = RESULT_COLUMNS if kind == "result" else GT_COLUMNS
    out = pd.DataFrame(index=table.index)
    for col in columns:
        if col in table.columns:
            out[col] = _format_column(table[col])
        else:
            out[col] = _format_column(pd.Series(defaults[col], index=table.index, dtype=float))
    order = np.lexsort((table["id"].to_numpy(), table["frame"].to_numpy()))
    out = out.iloc[order]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, header=False, index=False, lineterminator="\n")


def read_seqinfo(path: str | os.PathLike) -> dict[str, object]:
    """Parse a MOTChallenge ``seqinfo.ini``.

    Parameters
    ----------
    path : str or path-like
        The ``seqinfo.ini`` file, or the sequence folder that contains it.

    Returns
    -------
    info : dict
        The ``[Sequence]`` keys in snake case, numbers converted to int/float:
        ``name``, ``im_dir``, ``frame_rate``, ``seq_length``, ``im_width``, ``im_height``,
        ``im_ext`` (and any other key present).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is a binary file, has no ``[Sequence]`` section or cannot be parsed.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "seqinfo.ini"
    if not path.is_file():
        raise FileNotFoundError(f"seqinfo.ini not found: {path}")
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep camelCase keys to convert them ourselves
    try:
        parser.read_string(path.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"path {str(path)!r} is a binary file, not a seqinfo.ini.") from None
    except configparser.Error as exc:
        raise ValueError(f"path {str(path)!r} is not a valid seqinfo.ini: {exc}") from None
    if not parser.has_section("Sequence"):
        raise ValueError(f"path {str(path)!r} has no [Sequence] section.")
    info: dict[str, object] = {}
    for key, value in parser.items("Sequence"):
        snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
        info[snake] = _parse_value(value)
    return info


def _parse_value(value: str) -> object:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _frames_arg(frames: object, table: pd.DataFrame) -> np.ndarray:
    if frames is None:
        if len(table) == 0:
            raise ValueError("table is empty and frames is None: cannot infer the frames.")
        return np.arange(int(table["frame"].min()), int(table["frame"].max()) + 1)
    frames = np.asarray(frames)
    if frames.ndim != 1 or frames.size == 0 or not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(
            f"frames must be a non-empty 1-D array of integer frame numbers, got {frames!r}."
        )
    if len(np.unique(frames)) != len(frames):
        raise ValueError("frames must not repeat a frame number.")
    return frames


def detections_to_array(table: pd.DataFrame, frames: object = None) -> np.ndarray:
    """Turn one sequence's detection table into a NaN-padded observation array.

    Parameters
    ----------
    table : pandas.DataFrame
        Detections of one sequence with columns ``frame, bb_left, bb_top, bb_width,
        bb_height`` (e.g. ``read_mot("det/det.txt")``); identities are ignored.
    frames : array-like of int, optional
        Frame numbers to keep, in output order. Default: every frame from the table's first to
        its last (frames without detections give all-NaN rows).

    Returns
    -------
    observations : ndarray of shape (T, K, 4)
        ``"xywh"`` pixel boxes; ``K`` is the largest number of detections in one frame, and
        frames with fewer are padded with NaN rows. Within a frame, detections keep the
        table's order.
    """
    table = _check_table(table)
    frames = _frames_arg(frames, table)
    position = pd.Series(np.arange(len(frames)), index=frames)
    t = position.reindex(table["frame"].to_numpy()).to_numpy()
    keep = ~np.isnan(t)
    t = t[keep].astype(np.int64)
    boxes = table.loc[keep, list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    # Slot of every detection within its frame, in table order (stable sort by frame).
    order = np.argsort(t, kind="stable")
    t_sorted = t[order]
    first = np.searchsorted(t_sorted, t_sorted, side="left")
    slot = np.empty_like(t)
    slot[order] = np.arange(len(t)) - first
    K = int(slot.max()) + 1 if len(t) else 1
    out = np.full((len(frames), K, 4), np.nan)
    out[t, slot] = boxes
    return out


def table_to_tracks(table: pd.DataFrame, frames: object = None, ids: object = None) -> np.ndarray:
    """Turn one sequence's ground-truth or result table into a track array.

    The inverse of :func:`tracks_to_table`.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``frame, id, bb_left, bb_top, bb_width, bb_height``; one box per (frame, id).
    frames : array-like of int, optional
        Frame numbers, in output order; default every frame from the first to the last.
    ids : array-like of int, optional
        Track identities, in output order (the ``N`` axis); default the sorted unique ids.

    Returns
    -------
    tracks : ndarray of shape (T, N, 4)
        ``"xywh"`` pixel boxes, NaN where a track is absent.

    Raises
    ------
    ValueError
        If an id appears twice in the same frame.
    """
    table = _check_table(table)
    frames = _frames_arg(frames, table)
    if ids is None:
        ids = np.unique(table["id"].to_numpy(dtype=np.int64))
    else:
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D array of integer track ids, got {ids!r}.")
    if table.duplicated(["frame", "id"]).any():
        raise ValueError("table has more than one box for the same (frame, id).")
    t = pd.Series(np.arange(len(frames)), index=frames).reindex(table["frame"].to_numpy())
    n = pd.Series(np.arange(len(ids)), index=ids).reindex(table["id"].to_numpy())
    t, n = t.to_numpy(), n.to_numpy()
    keep = ~(np.isnan(t) | np.isnan(n))
    out = np.full((len(frames), len(ids), 4), np.nan)
    out[t[keep].astype(np.int64), n[keep].astype(np.int64)] = table.loc[
        keep, list(BOX_COLUMNS)
    ].to_numpy(dtype=np.float64)
    return out


def tracks_to_table(
    tracks: object, frame_offset: int = 1, *, id_offset: int = 1, conf: float = 1.0
) -> pd.DataFrame:
    """Turn a track array into a MOTChallenge result table.

    Parameters
    ----------
    tracks : array-like of shape (T, N, 4)
        ``"xywh"`` pixel boxes of one sequence, NaN rows where a track is absent (as returned
        by a tracker's ``predict`` for one sequence).
    frame_offset : int, default=1
        Frame number of ``tracks[0]`` (MOTChallenge frames are 1-based).
    id_offset : int, default=1
        Identity of track ``tracks[:, 0]``; track ``n`` gets id ``n + id_offset``.
    conf : float, default=1.0
        Value of the ``conf`` column.

    Returns
    -------
    table : pandas.DataFrame
        Columns :data:`RESULT_COLUMNS`, one row per present box, sorted by frame then id;
        ``x, y, z`` are -1. Write it with :func:`write_mot`.

    Raises
    ------
    ValueError
        Wrong shape, infinite values, boxes with only some coordinates missing, or negative
        widths/heights.
    """
    tracks = check_sequences(
        tracks,
        name="tracks",
        ndim=3,
        allow_nan=True,
        axis_names="(T, N, 4)",
        last_dim=4,
        min_length=0,
    )
    nan = np.isnan(tracks)
    if np.any(nan.any(axis=-1) & ~nan.all(axis=-1)):
        raise ValueError("tracks has boxes with only some coordinates NaN; a missing box is NaN.")
    if (tracks[..., 2:] < 0).any():
        raise ValueError("tracks has boxes with negative width or height ('xywh' boxes).")
    t, n = np.nonzero(~nan.all(axis=-1))  # row-major: sorted by frame, then id
    boxes = tracks[t, n]
    table = pd.DataFrame(
        {
            "frame": (t + int(frame_offset)).astype(np.int64),
            "id": (n + int(id_offset)).astype(np.int64),
            "bb_left": boxes[:, 0],
            "bb_top": boxes[:, 1],
            "bb_width": boxes[:, 2],
            "bb_height": boxes[:, 3],
            "conf": np.full(len(t), float(conf)),
            "x": -1.0,
            "y": -1.0,
            "z": -1.0,
        }
    )
    return table
