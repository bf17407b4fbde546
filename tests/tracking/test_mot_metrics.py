"""MOT metrics: IoU against brute force, a hand-computed case, scorers, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold

import mixest.metrics
from mixest.tracking import (
    convert_boxes,
    idf1_score,
    idf1_scorer,
    iou_matrix,
    mot_metrics,
    mota_score,
    mota_scorer,
    motp_score,
    motp_scorer,
)

# ---------------------------------------------------------------------------------------------
# IoU


def _iou_by_pixels(a, b):
    """IoU of integer xyxy boxes by counting unit cells on a grid (independent of the formula)."""
    grid = np.zeros((2, 32, 32), dtype=bool)
    for layer, (x1, y1, x2, y2) in enumerate((a, b)):
        grid[layer, y1:y2, x1:x2] = True
    union = np.count_nonzero(grid[0] | grid[1])
    return np.count_nonzero(grid[0] & grid[1]) / union if union else 0.0


int_box = st.tuples(
    st.integers(0, 31), st.integers(0, 31), st.integers(0, 31), st.integers(0, 31)
).map(lambda c: (min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]), max(c[1], c[3])))


@settings(max_examples=60, deadline=None)
@given(a=st.lists(int_box, min_size=1, max_size=3), b=st.lists(int_box, min_size=1, max_size=3))
def test_iou_matches_pixel_count(a, b):
    iou = iou_matrix(np.array(a), np.array(b), box_format="xyxy")
    expected = [[_iou_by_pixels(p, q) for q in b] for p in a]
    np.testing.assert_allclose(iou, expected, atol=1e-12)
    # The same boxes in the other formats give the same IoU.
    for fmt in ("xywh", "cxcywh"):
        other = iou_matrix(convert_boxes(a, "xyxy", fmt), convert_boxes(b, "xyxy", fmt), fmt)
        np.testing.assert_allclose(other, iou, atol=1e-12)


def test_iou_known_values_nan_and_batch():
    a = np.array([[0, 0, 10, 10], [np.nan] * 4])  # xywh
    b = np.array([[2, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]])
    iou = iou_matrix(a, b)
    # Shifted by 2: intersection 8 * 10 = 80, union 100 + 100 - 80 = 120.
    np.testing.assert_allclose(iou[0], [80 / 120, 0.0, 0.0])
    assert np.isnan(iou[1]).all()
    batch = iou_matrix(np.stack([a, a]), b)  # leading axes broadcast
    assert batch.shape == (2, 2, 3)
    np.testing.assert_array_equal(batch[1], iou)
    assert iou_matrix(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0  # two empty boxes


@pytest.mark.parametrize(
    ("a", "b", "error", "match"),
    [
        (np.zeros(4), np.zeros((1, 4)), ValueError, r"\(\.\.\., M, 4\)"),
        (np.zeros((1, 3)), np.zeros((1, 4)), ValueError, "a must have shape"),
        (np.zeros((1, 4)), [[0, 0, -1, 1]], ValueError, "b contains boxes with negative"),
        (np.full((1, 4), np.inf), np.zeros((1, 4)), ValueError, "a contains infinite"),
    ],
)
def test_iou_bad_input(a, b, error, match):
    with pytest.raises(error, match=match):
        iou_matrix(a, b)


# ---------------------------------------------------------------------------------------------
# Hand-computed case

A = [0.0, 0.0, 10.0, 10.0]  # xywh
B = [100.0, 0.0, 10.0, 10.0]
B_SHIFTED = [102.0, 0.0, 10.0, 10.0]  # IoU with B: 80 / 120 = 2/3, still a match (>= 0.5)
FAR = [300.0, 300.0, 10.0, 10.0]


def _hand_case():
    """Two objects (A, B) over 4 frames and four predicted tracks.

    frame   A        B                 extra
    t0      p0       p1 (IoU 2/3)
    t1      p0       p1
    t2      p0       missed            p3 far from everything (false positive)
    t3      p2       p1
    """
    true = np.empty((1, 4, 2, 4))
    true[0, :, 0] = A
    true[0, :, 1] = B
    pred = np.full((1, 4, 4, 4), np.nan)
    pred[0, 0:3, 0] = A
    pred[0, 0, 1] = B_SHIFTED
    pred[0, [1, 3], 1] = B
    pred[0, 3, 2] = A
    pred[0, 2, 3] = FAR
    return pred, true


def test_hand_computed_metrics():
    pred, true = _hand_case()
    m = mot_metrics(true, pred).loc[0]
    # num_objects = 2 objects x 4 frames = 8.
    # FN = 1 (B at t2); FP = 1 (p3 at t2); IDs = 1 (A: p0 -> p2 at t3; B keeps p1 across its
    # gap, so no switch). MOTA = 1 - (1 + 1 + 1) / 8 = 5/8.
    assert (m["num_objects"], m["FN"], m["FP"], m["IDs"]) == (8, 1, 1, 1)
    assert m["MOTA"] == pytest.approx(5 / 8)
    # IDF1: best one-to-one identity matching A<->p0 (3 frames), B<->p1 (3 frames): IDTP = 6.
    # True boxes 8, predicted boxes 3 + 3 + 1 + 1 = 8: IDFN = IDFP = 2.
    # IDF1 = 2 * 6 / (8 + 8) = 0.75; IDP = IDR = 6/8.
    assert m["IDF1"] == pytest.approx(0.75)
    assert m["IDP"] == pytest.approx(0.75) and m["IDR"] == pytest.approx(0.75)
    # MOTP: 7 matches, six with IoU 1 and one with 2/3 -> (6 + 2/3) / 7 = 20/21.
    assert m["MOTP"] == pytest.approx(20 / 21)
    # A matched 4/4 frames (mostly tracked); B 3/4 = 75% < 80% (partially tracked).
    assert (m["MT"], m["PT"], m["ML"]) == (1, 1, 0)
    # B's track is interrupted once at t2 and resumed: one fragmentation.
    assert m["FM"] == 1
    # precision = matches / predictions = 7/8; recall = matches / objects = 7/8.
    assert m["precision"] == pytest.approx(7 / 8) and m["recall"] == pytest.approx(7 / 8)


def test_overall_row_pools_windows():
    pred, true = _hand_case()
    perfect = np.concatenate([true, np.full((1, 4, 2, 4), np.nan)], axis=2)  # extra empty tracks
    table = mot_metrics(np.concatenate([true, true]), np.concatenate([pred, perfect]))
    assert table.index.tolist() == [0, 1, "OVERALL"]
    assert table.loc[1, "MOTA"] == 1.0 and table.loc[1, "IDF1"] == 1.0
    overall = table.loc["OVERALL"]
    # 16 objects, 1 FN + 1 FP + 1 IDs: MOTA = 13/16.
    assert overall["num_objects"] == 16 and overall["MOTA"] == pytest.approx(13 / 16)
    # IDTP = 6 + 8 = 14 over 16 true and 16 predicted boxes: IDF1 = 28 / 32.
    assert overall["IDF1"] == pytest.approx(28 / 32)
    # Matched IoUs sum to 20/3 + 8 over 15 matches.
    assert overall["MOTP"] == pytest.approx((20 / 3 + 8) / 15)
    assert overall["MT"] == 3 and overall["FP"] == 1
    # The scalar helpers return the OVERALL row.
    y_pred, y_true = np.concatenate([pred, perfect]), np.concatenate([true, true])
    assert mota_score(y_true, y_pred) == pytest.approx(13 / 16)
    assert idf1_score(y_true, y_pred) == pytest.approx(28 / 32)
    assert motp_score(y_true, y_pred) == pytest.approx((20 / 3 + 8) / 15)


def test_box_format_and_single_window_input():
    pred, true = _hand_case()
    ref = mot_metrics(true, pred)
    xyxy = mot_metrics(
        convert_boxes(true, "xywh", "xyxy"), convert_boxes(pred, "xywh", "xyxy"), box_format="xyxy"
    )
    np.testing.assert_allclose(xyxy.to_numpy(float), ref.to_numpy(float))
    single = mot_metrics(true[0], pred[0])  # (T, N, 4): one window
    np.testing.assert_allclose(single.to_numpy(float), ref.to_numpy(float))


def test_iou_threshold():
    pred, true = _hand_case()
    # At 0.7 the shifted box (IoU 2/3) no longer matches: one more FN and one more FP.
    m = mot_metrics(true, pred, iou_threshold=0.7).loc[0]
    assert (m["FN"], m["FP"]) == (2, 2)
    assert m["MOTP"] == 1.0


def test_identity_order_does_not_matter_and_no_match():
    pred, true = _hand_case()
    permuted = pred[:, :, [3, 1, 0, 2]]
    np.testing.assert_allclose(
        mot_metrics(true, permuted).to_numpy(float), mot_metrics(true, pred).to_numpy(float)
    )
    empty = mot_metrics(true, np.full((1, 4, 1, 4), np.nan)).loc[0]
    assert empty["FN"] == 8 and empty["MOTA"] == 0.0 and np.isnan(empty["MOTP"])


@pytest.mark.parametrize(
    ("pred", "true", "kwargs", "error", "match"),
    [
        (np.zeros((1, 4, 2, 4)), np.zeros((1, 5, 2, 4)), {}, ValueError, "same number of"),
        (np.zeros((2, 4, 2, 4)), np.zeros((1, 4, 2, 4)), {}, ValueError, "same number of"),
        (np.zeros((4, 2, 4, 1)), np.zeros((4, 2, 4, 1)), {}, ValueError, "y_pred must have 4"),
        (np.zeros((4, 2)), np.zeros((4, 2, 4)), {}, ValueError, "y_pred must have shape"),
        (
            np.full((1, 4, 2, 4), np.inf),
            np.zeros((1, 4, 2, 4)),
            {},
            ValueError,
            "y_pred contains infinite",
        ),
        (
            np.ones((1, 4, 2, 4)),
            -np.ones((1, 4, 2, 4)),
            {},
            ValueError,
            "y_true contains boxes with negative",
        ),
        (
            np.array([[[[1, 2, np.nan, 4]]]]),
            np.ones((1, 1, 1, 4)),
            {},
            ValueError,
            "y_pred has boxes with only some",
        ),
        (
            np.ones((1, 4, 2, 4)),
            np.ones((1, 4, 2, 4)),
            {"iou_threshold": 0},
            ValueError,
            "iou_threshold",
        ),
        (
            np.ones((1, 4, 2, 4)),
            np.ones((1, 4, 2, 4)),
            {"box_format": "ltrb"},
            ValueError,
            "box_format",
        ),
        ("tracks", np.ones((1, 4, 2, 4)), {}, TypeError, "y_pred must be"),
    ],
)
def test_bad_input(pred, true, kwargs, error, match):
    with pytest.raises(error, match=match):
        mot_metrics(true, pred, **kwargs)


# ---------------------------------------------------------------------------------------------
# Scorers


class ShiftTracker(BaseEstimator):
    """Returns the first N observations shifted right by ``shift`` box widths."""

    def __init__(self, shift=0.0, n_sources=2):
        self.shift = shift
        self.n_sources = n_sources

    def fit(self, X, y=None):
        self.is_fitted_ = True
        return self

    def predict(self, X):
        out = np.array(X[:, :, : self.n_sources], dtype=float)
        out[..., 0] += self.shift * out[..., 2]
        return out


def _scorer_data():
    rng = np.random.default_rng(0)
    y = np.empty((6, 5, 2, 4))
    y[..., :2] = rng.uniform(0, 500, size=(6, 1, 2, 2)) + np.arange(5)[None, :, None, None]
    y[..., 2:] = 20.0
    return y.copy(), y  # observations = truth


def test_scorers_call_predict_and_compare_to_y():
    X, y = _scorer_data()
    est = ShiftTracker(shift=0.25).fit(X)
    # Shift by a quarter width: IoU = 15 * 20 / (2 * 400 - 300) = 0.6, every box matched.
    assert mota_scorer(est, X, y) == pytest.approx(1.0)
    assert idf1_scorer(est, X, y) == pytest.approx(1.0)
    assert motp_scorer(est, X, y) == pytest.approx(0.6)
    # Half a width: IoU = 1/3 < 0.5, nothing matches: every true box is missed and every
    # prediction is a false positive, MOTA = 1 - (60 + 60) / 60 = -1.
    assert mota_scorer(ShiftTracker(shift=0.5), X, y) == pytest.approx(-1.0)


@pytest.mark.filterwarnings("ignore:One or more of the test scores are non-finite")
def test_grid_search_with_scorers():
    X, y = _scorer_data()
    search = GridSearchCV(
        ShiftTracker(),
        {"shift": [0.5, 0.0, 0.25]},
        scoring={"mota": mota_scorer, "idf1": idf1_scorer, "motp": motp_scorer},
        refit="motp",
        cv=KFold(2),
    )
    search.fit(X, y)
    assert search.best_params_ == {"shift": 0.0}
    np.testing.assert_allclose(search.cv_results_["mean_test_mota"], [-1.0, 1.0, 1.0])
    np.testing.assert_allclose(search.cv_results_["mean_test_motp"][1:], [1.0, 0.6])


def test_exported_in_mixest_metrics():
    for name in (
        "iou_matrix",
        "mot_metrics",
        "mota_score",
        "idf1_score",
        "motp_score",
        "mota_scorer",
        "idf1_scorer",
        "motp_scorer",
    ):
        assert getattr(mixest.metrics, name) is getattr(mixest.tracking, name)


def test_pairs_of_formats_give_same_metrics():
    pred, true = _hand_case()
    for fmt in ("xyxy", "cxcywh"):
        a = mot_metrics(
            convert_boxes(true, "xywh", fmt), convert_boxes(pred, "xywh", fmt), box_format=fmt
        )
        b = mot_metrics(true, pred)
        pairs = itertools.product(a.columns, a.index)
        assert all(np.isclose(a.loc[i, c], b.loc[i, c], equal_nan=True) for c, i in pairs)


# ---------------------------------------------------------------------------------------------
# Finite answers (issue 21)


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e300])
@pytest.mark.parametrize("fmt", ["xywh", "xyxy", "cxcywh"])
def test_iou_of_huge_and_tiny_boxes_is_finite_and_scale_invariant(scale, fmt):
    a = convert_boxes([[0.0, 0.0, 10.0, 10.0]], "xywh", fmt)
    b = convert_boxes([[2.0, 0.0, 10.0, 10.0], [np.nan] * 4], "xywh", fmt)
    with np.errstate(all="raise"):  # no overflow, underflow to zero or invalid operation
        iou = iou_matrix(a * scale, b * scale, box_format=fmt)
    np.testing.assert_allclose(iou[0, 0], 80 / 120, rtol=1e-12)
    assert np.isnan(iou[0, 1])  # NaN only where a box is NaN


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1.0])
def test_box_iou_of_float32_boxes_stays_float32_and_finite(scale):
    from mixest.tracking._boxes import box_iou

    a = np.array([[0.0, 0.0, 10.0, 10.0]], dtype=np.float32) * np.float32(scale)
    b = np.array([[2.0, 0.0, 12.0, 10.0]], dtype=np.float32) * np.float32(scale)
    with np.errstate(all="raise"):
        iou = box_iou(a, b)
    assert iou.dtype == np.float32
    np.testing.assert_allclose(iou, [[80 / 120]], rtol=1e-6)


def test_box_iou_of_boxes_of_very_different_scales_stays_finite():
    from mixest.tracking._boxes import box_iou

    big = np.array([[0.0, 0.0, 1e200, 1e200]])
    small = np.array([[0.0, 0.0, 1e-200, 1e-200], [0.0, 0.0, 1e200, 1e200]])
    iou = box_iou(big, small)
    assert np.isfinite(iou).all()
    np.testing.assert_allclose(iou, [[0.0, 1.0]], atol=1e-300)


@pytest.mark.parametrize(
    "true",
    [np.full((1, 4, 2, 4), np.nan), np.zeros((1, 4, 0, 4))],
    ids=["all-nan", "no-objects"],
)
@pytest.mark.parametrize("pred_present", [True, False])
def test_mota_without_objects_is_refused(true, pred_present):
    pred = np.full((1, 4, 1, 4), np.nan)
    if pred_present:
        pred[:] = [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="y_true holds no object"):
        mota_score(true, pred)
    with pytest.raises(ValueError, match="y_true holds no object"):
        mot_metrics(true, pred)


def test_mota_row_of_a_sequence_without_objects_is_nan():
    pred = np.tile([0.0, 0.0, 1.0, 1.0], (2, 4, 1, 1))
    true = pred.copy()
    true[0] = np.nan  # sequence 0 has no object, one false positive per frame
    table = mot_metrics(true, pred)
    assert np.isnan(table.loc[0, "MOTA"])
    assert table.loc[1, "MOTA"] == 1.0
    # OVERALL: 4 objects, 4 false positives.
    assert table.loc["OVERALL", "MOTA"] == pytest.approx(0.0)
    assert mota_score(true, pred) == pytest.approx(0.0)
