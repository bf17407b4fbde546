"""HOTA (TrackEval's implementation) on cases computed by hand."""

import numpy as np
import pytest

pytest.importorskip("trackeval", reason="HOTA needs TrackEval (pip install trackeval)")

from mixest.tracking import hota_metrics, hota_score  # noqa: E402

BOX = np.array([0.0, 0.0, 10.0, 10.0])
ALPHAS = np.arange(0.05, 0.96, 0.05)


def _id_switch(T=4):
    """One true object over T frames, tracked perfectly by id 0 and then by id 1."""
    y = np.tile(BOX, (1, T, 1, 1))
    pred = np.full((1, T, 2, 4), np.nan)
    pred[0, : T // 2, 0] = BOX
    pred[0, T // 2:, 1] = BOX
    return y, pred


def test_perfect_tracks_score_one():
    y = np.tile(BOX, (2, 5, 1, 1)) + np.arange(5)[None, :, None, None]
    np.testing.assert_allclose(hota_metrics(y, y, box_format="xyxy").to_numpy(), 1.0)


def test_an_identity_switch_halves_association():
    # every box is a true positive at every threshold (DetA = 1); each of the two predicted
    # ids covers half of the true track: A = TPA / (TPA + FNA + FPA) = 2 / 4, HOTA = sqrt(1/2)
    y, pred = _id_switch()
    row = hota_metrics(y, pred, box_format="xyxy").loc["OVERALL"]
    assert row["DetA"] == pytest.approx(1.0)
    assert row["AssA"] == pytest.approx(0.5)
    assert row["HOTA"] == pytest.approx(np.sqrt(0.5))


def test_localisation_counts_the_thresholds_it_passes():
    # IoU 0.625 everywhere: matched at alpha <= 0.6 (12 of the 19 thresholds), HOTA 1 there
    y = np.tile(BOX, (1, 3, 1, 1))
    pred = y.copy()
    pred[..., 3] = 6.25
    expected = np.mean(ALPHAS <= 0.625 + 1e-12)
    assert hota_score(y, pred, box_format="xyxy") == pytest.approx(expected)


def test_sequences_are_combined_by_true_positive_weight():
    # a perfect 2-frame window and the 4-frame identity switch: DetA 1, AssA weighted by the
    # true positives (2 x 1 + 4 x 0.5) / 6
    y_switch, p_switch = _id_switch()
    y = np.full((2, 4, 1, 4), np.nan)
    p = np.full((2, 4, 2, 4), np.nan)
    y[0, :2], p[0, :2, :1] = BOX, BOX
    y[1], p[1] = y_switch[0], p_switch[0]
    table = hota_metrics(y, p, box_format="xyxy")
    assert table.loc[0, "HOTA"] == pytest.approx(1.0)
    assert table.loc[1, "HOTA"] == pytest.approx(np.sqrt(0.5))
    assert table.loc["OVERALL", "AssA"] == pytest.approx(4 / 6)
    assert table.loc["OVERALL", "HOTA"] == pytest.approx(np.sqrt(4 / 6))


def test_missed_and_false_boxes_lower_detection():
    # 4 true boxes, 2 found and 2 invented elsewhere: DetA = 2 / (2 + 2 + 2) at every alpha
    y = np.tile(BOX, (1, 4, 1, 1))
    pred = np.full((1, 4, 1, 4), np.nan)
    pred[0, :2, 0] = BOX
    pred[0, 2:, 0] = BOX + 100.0
    assert hota_metrics(y, pred, box_format="xyxy").loc["OVERALL", "DetA"] == pytest.approx(1 / 3)


def test_refuses_truth_without_objects_and_mismatched_shapes():
    y = np.full((1, 3, 1, 4), np.nan)
    with pytest.raises(ValueError, match="y_true"):
        hota_metrics(y, np.tile(BOX, (1, 3, 1, 1)))
    with pytest.raises(ValueError, match="same number"):
        hota_metrics(np.tile(BOX, (1, 3, 1, 1)), np.tile(BOX, (1, 4, 1, 1)))
