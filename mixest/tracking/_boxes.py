"""Bounding-box conventions: conversion between formats and image normalisation.

Three formats are supported, all on the last axis of an array of shape ``(..., 4)``; the image
``y`` axis points down (row index), as in MOTChallenge and every image library:

``"xywh"``
    ``(left, top, width, height)``: the MOTChallenge convention, in pixels.
``"xyxy"``
    ``(x1, y1, x2, y2)``: top-left and bottom-right corners (``x2 = x1 + w``, ``y2 = y1 + h``).
    The DVAE priors are trained on this format in image-normalised units.
``"cxcywh"``
    ``(centre_x, centre_y, width, height)``.

NaN marks a missing box and passes through every function unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "box_iou",
    "BOX_FORMATS",
    "convert_boxes",
    "denormalize_boxes",
    "normalize_boxes",
]

BOX_FORMATS: tuple[str, ...] = ("xywh", "xyxy", "cxcywh")


def _check_format(box_format: object, name: str) -> str:
    if not isinstance(box_format, str) or box_format not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {box_format!r}.")
    return box_format


def _check_boxes(boxes: object, name: str, box_format: str) -> np.ndarray:
    """Return ``boxes`` as a float array of shape ``(..., 4)`` with valid sizes.

    Floating inputs keep their precision (float32 stays float32); other numeric inputs become
    float64. NaN is allowed (missing boxes), infinity and negative sizes are not.
    """
    if isinstance(boxes, (str, bytes)) or boxes is None:
        raise TypeError(f"{name} must be an array of shape (..., 4), got {type(boxes).__name__}.")
    arr = np.asarray(boxes)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be a numeric array of shape (..., 4), got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real-valued, got a complex array.")
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(
            f"{name} must have shape (..., 4) (4 box coordinates on the last axis), "
            f"got shape {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values.")
    if box_format == "xyxy":
        sizes = arr[..., 2:] - arr[..., :2]
    else:
        sizes = arr[..., 2:]
    # NaN compares False, so missing boxes pass this check.
    if (sizes < 0).any():
        what = "x2 < x1 or y2 < y1" if box_format == "xyxy" else "negative width or height"
        raise ValueError(f"{name} contains boxes with {what} (box_format={box_format!r}).")
    return arr


def _to_xyxy(arr: np.ndarray, src: str) -> np.ndarray:
    if src == "xyxy":
        return arr.copy()
    out = np.empty_like(arr)
    if src == "xywh":
        out[..., :2] = arr[..., :2]
        out[..., 2:] = arr[..., :2] + arr[..., 2:]
    else:  # cxcywh
        half = arr[..., 2:] / 2
        out[..., :2] = arr[..., :2] - half
        out[..., 2:] = arr[..., :2] + half
    return out


def _from_xyxy(arr: np.ndarray, dst: str) -> np.ndarray:
    if dst == "xyxy":
        return arr
    out = np.empty_like(arr)
    size = arr[..., 2:] - arr[..., :2]
    if dst == "xywh":
        out[..., :2] = arr[..., :2]
    else:  # cxcywh
        out[..., :2] = arr[..., :2] + size / 2
    out[..., 2:] = size
    return out


def convert_boxes(boxes: object, src: str, dst: str) -> np.ndarray:
    """Convert boxes between the ``"xywh"``, ``"xyxy"`` and ``"cxcywh"`` formats.

    Parameters
    ----------
    boxes : array-like of shape (..., 4)
        Boxes in format ``src``; any leading shape (a single box, ``(T, K, 4)`` detections,
        ``(n_sequences, T, N, 4)`` tracks). NaN entries (missing boxes) pass through.
    src : {"xywh", "xyxy", "cxcywh"}
        Format of ``boxes``.
    dst : {"xywh", "xyxy", "cxcywh"}
        Format of the result.

    Returns
    -------
    converted : ndarray of shape (..., 4)
        A new array (never a view of ``boxes``), float64 unless ``boxes`` was already floating.

    Raises
    ------
    ValueError
        Unknown format, last axis not of size 4, infinite values, or negative widths/heights.
    TypeError
        Non-numeric ``boxes``.

    Examples
    --------
    >>> convert_boxes([10, 20, 30, 40], "xywh", "xyxy")
    array([10., 20., 40., 60.])
    """
    src = _check_format(src, "src")
    dst = _check_format(dst, "dst")
    arr = _check_boxes(boxes, "boxes", src)
    if src == dst:
        return arr.copy()
    return _from_xyxy(_to_xyxy(arr, src), dst)


def _check_image_size(image_size: object, dtype: np.dtype) -> np.ndarray:
    """Return ``[w, h, w, h]`` scales of shape ``(..., 4)`` from ``image_size = (w, h)``."""
    if isinstance(image_size, (str, bytes)) or image_size is None:
        raise TypeError(
            f"image_size must be (width, height) in pixels, got {type(image_size).__name__}."
        )
    size = np.asarray(image_size)
    if size.dtype == object or not np.issubdtype(size.dtype, np.number):
        raise TypeError(f"image_size must be numeric (width, height), got dtype {size.dtype}.")
    if size.ndim == 0 or size.shape[-1] != 2:
        raise ValueError(
            f"image_size must be (width, height) (last axis of size 2), got shape {size.shape}."
        )
    size = size.astype(dtype if np.issubdtype(dtype, np.floating) else np.float64)
    if not (np.all(np.isfinite(size)) and np.all(size > 0)):
        raise ValueError(f"image_size must be finite and positive, got {image_size!r}.")
    return np.concatenate([size, size], axis=-1)


def normalize_boxes(boxes: object, image_size: object, box_format: str = "xywh") -> np.ndarray:
    """Convert pixel boxes to image-normalised ``xyxy`` boxes.

    x coordinates are divided by the image width and y coordinates by its height, so a box
    inside the image has coordinates in ``[0, 1]``. Boxes that extend beyond the image (common
    in MOTChallenge ground truth) give values outside ``[0, 1]``; they are not clipped.

    Parameters
    ----------
    boxes : array-like of shape (..., 4)
        Pixel boxes in format ``box_format``; NaN passes through.
    image_size : (width, height) or array-like of shape (..., 2)
        Image size in pixels (MOTChallenge ``imWidth``, ``imHeight``), positive. An array of
        sizes broadcasts against ``boxes.shape[:-1]`` (e.g. one size per sequence with shape
        ``(n_sequences, 1, 1, 2)``).
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Format of ``boxes``.

    Returns
    -------
    normalized : ndarray of shape (..., 4)
        ``(x1 / width, y1 / height, x2 / width, y2 / height)``.

    See Also
    --------
    denormalize_boxes : The inverse.

    Examples
    --------
    >>> normalize_boxes([64, 48, 32, 96], image_size=(640, 480))
    array([0.1 , 0.1 , 0.15, 0.3 ])
    """
    box_format = _check_format(box_format, "box_format")
    arr = _check_boxes(boxes, "boxes", box_format)
    scale = _check_image_size(image_size, arr.dtype)
    return _to_xyxy(arr, box_format) / scale


def denormalize_boxes(boxes: object, image_size: object, box_format: str = "xywh") -> np.ndarray:
    """Convert image-normalised ``xyxy`` boxes back to pixel boxes in ``box_format``.

    Parameters
    ----------
    boxes : array-like of shape (..., 4)
        Normalised ``(x1, y1, x2, y2)`` boxes, as returned by :func:`normalize_boxes`; NaN
        passes through.
    image_size : (width, height) or array-like of shape (..., 2)
        Image size in pixels, positive; broadcasts as in :func:`normalize_boxes`.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Format of the result.

    Returns
    -------
    boxes_px : ndarray of shape (..., 4)
        Pixel boxes in format ``box_format``.

    See Also
    --------
    normalize_boxes : The inverse.
    """
    box_format = _check_format(box_format, "box_format")
    arr = _check_boxes(boxes, "boxes", "xyxy")
    scale = _check_image_size(image_size, arr.dtype)
    return _from_xyxy(arr * scale, box_format)


def _outside_safe_range(boxes: np.ndarray) -> bool:
    """Whether areas of these boxes could overflow or underflow (the rare case of box_iou).

    In float64, coordinates up to 2**508 keep products below 2**1018 and sides of at least
    2**-507 keep areas above 2**-1014; float32 has its own bounds (2**60 and 2**-59).
    """
    info = np.finfo(boxes.dtype if np.issubdtype(boxes.dtype, np.floating) else np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        if np.fmax.reduce(np.abs(boxes), axis=None, initial=0.0) > 2.0 ** (info.maxexp // 2 - 4):
            return True
        sides = boxes[..., 2:] - boxes[..., :2]
        small = sides < 2.0 ** (info.minexp // 2 + 4)
        # Zero sides (empty boxes, fillers) are common and harmless: look closer only then.
        return bool(small.any() and (small & (sides > 0)).any())


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of ``xyxy`` boxes, without input checks.

    The one IoU of the package (:func:`~mixest.tracking.iou_matrix` validates and converts
    before calling it; the trackers call it on their own arrays).

    Parameters
    ----------
    a : ndarray of shape (..., M, 4)
    b : ndarray of shape (..., P, 4)
        Leading axes broadcast with those of ``a``.

    Returns
    -------
    iou : ndarray of shape (..., M, P)
        NaN where either box is NaN, 0 where the union is empty. A box with crossed corners
        (an estimate can have them) has zero area. Finite for any finite boxes: when areas could
        overflow (coordinates of 1e200) or underflow (sides of 1e-200), each pair is first
        rescaled by a power of two (exact), IoU being scale-invariant.
    """
    rescale = _outside_safe_range(a) or _outside_safe_range(b)
    a, b = a[..., :, None, :], b[..., None, :, :]
    if rescale:
        # IoU is scale-invariant: bring the largest coordinate of each pair into [0.5, 1).
        # fmax skips NaN, so a missing box does not leave its partner unscaled.
        largest = np.fmax(np.fmax.reduce(np.abs(a), axis=-1), np.fmax.reduce(np.abs(b), axis=-1))
        _, exponent = np.frexp(np.nan_to_num(largest))
        exponent = -exponent[..., None]
        a, b = np.ldexp(a, exponent), np.ldexp(b, exponent)
    inter = (np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
             * np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0,
                       None))
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    iou[np.isnan(union)] = np.nan  # np.where turned NaN unions (missing boxes) into 0
    return iou
