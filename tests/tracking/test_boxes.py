"""Box conventions: known conversions, round trips, normalisation, input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mixest.tracking import convert_boxes, denormalize_boxes, normalize_boxes

FORMATS = ("xywh", "xyxy", "cxcywh")

# One box, written by hand in the three formats: left 10, top 20, width 30, height 40.
BOX = {
    "xywh": [10.0, 20.0, 30.0, 40.0],
    "xyxy": [10.0, 20.0, 40.0, 60.0],
    "cxcywh": [25.0, 40.0, 30.0, 40.0],
}


@pytest.mark.parametrize("src", FORMATS)
@pytest.mark.parametrize("dst", FORMATS)
def test_known_box(src, dst):
    np.testing.assert_allclose(convert_boxes(BOX[src], src, dst), BOX[dst])


def test_nan_passes_through_and_shape_is_kept():
    boxes = np.array([[BOX["xywh"], [np.nan] * 4]] * 3)  # (3, 2, 4)
    out = convert_boxes(boxes, "xywh", "cxcywh")
    assert out.shape == (3, 2, 4)
    assert np.isnan(out[:, 1]).all()
    np.testing.assert_allclose(out[:, 0], np.tile(BOX["cxcywh"], (3, 1)))


def test_returns_new_array_and_keeps_float32():
    boxes = np.array(BOX["xywh"], dtype=np.float32)
    out = convert_boxes(boxes, "xywh", "xywh")
    assert out is not boxes and out.dtype == np.float32
    assert convert_boxes([1, 2, 3, 4], "xywh", "xyxy").dtype == np.float64
    assert convert_boxes(np.empty((0, 4)), "xywh", "xyxy").shape == (0, 4)


boxes_xywh = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=4).map(lambda s: (*s, 4)),
    elements=st.floats(0, 1e3, allow_nan=False),
).map(lambda a: np.concatenate([a[..., :2] - 500, a[..., 2:]], axis=-1))


@settings(max_examples=50, deadline=None)
@given(boxes=boxes_xywh, src=st.sampled_from(FORMATS), dst=st.sampled_from(FORMATS))
def test_round_trip(boxes, src, dst):
    start = convert_boxes(boxes, "xywh", src)
    back = convert_boxes(convert_boxes(start, src, dst), dst, src)
    np.testing.assert_allclose(back, start, rtol=1e-12, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(
    boxes=boxes_xywh,
    fmt=st.sampled_from(FORMATS),
    size=st.tuples(st.floats(1, 4000), st.floats(1, 4000)),
)
def test_normalize_round_trip(boxes, fmt, size):
    start = convert_boxes(boxes, "xywh", fmt)
    back = denormalize_boxes(normalize_boxes(start, size, box_format=fmt), size, box_format=fmt)
    np.testing.assert_allclose(back, start, rtol=1e-12, atol=1e-9)


def test_normalize_known_values():
    # 640 x 480 image: x divided by 640, y by 480; result is xyxy.
    out = normalize_boxes([64, 48, 32, 96], image_size=(640, 480))
    np.testing.assert_allclose(out, [0.1, 0.1, 96 / 640, 144 / 480])
    np.testing.assert_allclose(denormalize_boxes(out, (640, 480)), [64, 48, 32, 96])
    np.testing.assert_allclose(
        denormalize_boxes(out, (640, 480), box_format="xyxy"), [64, 48, 96, 144]
    )


def test_normalize_broadcasts_per_sequence_sizes():
    boxes = np.tile(np.array(BOX["xywh"]), (2, 3, 1))  # (2 sequences, 3 frames, 4)
    sizes = np.array([[100.0, 200.0], [50.0, 20.0]])[:, None, :]
    out = normalize_boxes(boxes, sizes)
    np.testing.assert_allclose(out[0, 0], [0.1, 0.1, 0.4, 0.3])
    np.testing.assert_allclose(out[1, 0], [0.2, 1.0, 0.8, 3.0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: convert_boxes([1, 2, 3, 4], "xywh", "ltrb"), ValueError, "dst must be one of"),
        (lambda: convert_boxes([1, 2, 3, 4], "XYWH", "xyxy"), ValueError, "src must be one of"),
        (lambda: convert_boxes([1, 2, 3], "xywh", "xyxy"), ValueError, r"boxes must have shape"),
        (lambda: convert_boxes(5.0, "xywh", "xyxy"), ValueError, r"boxes must have shape"),
        (lambda: convert_boxes([1, 2, -3, 4], "xywh", "xyxy"), ValueError, "negative width"),
        (lambda: convert_boxes([1, 2, 3, -4], "cxcywh", "xyxy"), ValueError, "negative width"),
        (lambda: convert_boxes([5, 2, 3, 4], "xyxy", "xywh"), ValueError, "x2 < x1"),
        (lambda: convert_boxes([1, 2, np.inf, 4], "xywh", "xyxy"), ValueError, "infinite"),
        (lambda: convert_boxes(["a", "b", "c", "d"], "xywh", "xyxy"), TypeError, "numeric"),
        (lambda: convert_boxes("1234", "xywh", "xyxy"), TypeError, "boxes must be an array"),
        (lambda: normalize_boxes([1, 2, 3, 4], (0, 480)), ValueError, "image_size"),
        (lambda: normalize_boxes([1, 2, 3, 4], (-640, 480)), ValueError, "image_size"),
        (lambda: normalize_boxes([1, 2, 3, 4], (640, np.nan)), ValueError, "image_size"),
        (lambda: normalize_boxes([1, 2, 3, 4], 640), ValueError, "image_size"),
        (lambda: normalize_boxes([1, 2, 3, 4], None), TypeError, "image_size"),
        (lambda: normalize_boxes([1, 2, 3, 4], (640, 480), "abc"), ValueError, "box_format"),
        (lambda: denormalize_boxes([0.5, 0.5, 0.1, 0.1], (640, 480)), ValueError, "x2 < x1"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_nan_boxes_are_not_negative_sizes():
    out = convert_boxes([[np.nan, np.nan, np.nan, np.nan], [0, 0, 1, 1]], "xyxy", "xywh")
    assert np.isnan(out[0]).all()
