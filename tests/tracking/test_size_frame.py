"""The per-source size frame (:class:`SizeFrame` around a DVAE prior), used by the tracker."""

import numpy as np
import pytest

pytest.importorskip("torch")

from mixest import DVAE, MixDVAETracker  # noqa: E402
from mixest.datasets import make_tracking_mixture, make_trajectories  # noqa: E402
from mixest.mixture import DVAEDynamics, e_step_s  # noqa: E402
from mixest.tracking import SizeFrame  # noqa: E402

HARD = dict(jitter=0.08, miss_prob=0.3, shuffle=True)
REF = np.array([0.475, 0.4, 0.525, 0.6])  # a 0.05 x 0.2 box


@pytest.fixture(scope="module")
def mot_module():
    return DVAE.from_pretrained("mot").module_


def _evidence(rng, x):
    """Diagonal evidence (B, T, N=1, D) of noisy copies of ``x``, some frames missing."""
    ip = rng.uniform(1e4, 1e6, x.shape) * (rng.random(x.shape[:2] + (1,)) > 0.3)
    iv = ip * (x + 1e-3 * rng.standard_normal(x.shape))
    return iv[:, :, None], ip[:, :, None]


@pytest.mark.parametrize("smooth", [False, True])
def test_fused_pass_in_the_size_frame_equals_the_step_by_step_pass(mot_module, smooth):
    """The frame around both passes of the prior: the fused one (evidence mapped in, moments
    mapped out once) and the step-by-step one (every prediction and update mapped)."""
    rng = np.random.default_rng(0)
    x = make_trajectories(5, 20, random_state=1)
    x[:2] = 0.5 + 6.0 * (x[:2] - 0.5)  # two sources far larger than the prior's boxes
    iv, ip = _evidence(rng, x)
    out = []
    for fused in (True, False):
        dyn = SizeFrame(DVAEDynamics(mot_module, precision="float64", smooth=smooth), REF)
        if not fused:  # e_step_s falls back to begin/predict/update
            dyn.dynamics.forward_pass = lambda *args: None
        dyn.infer_latents(x, rng)
        out.append(e_step_s(dyn, iv, ip, x[:, 0][:, None]))
        a = dyn._frame[0][:, 0]
    sizes = np.median(np.sqrt((x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])), axis=1)
    # sources larger than the reference are zoomed out to its size, smaller ones only shifted
    np.testing.assert_allclose(a, np.minimum(1.0, np.sqrt(0.05 * 0.2) / sizes), rtol=1e-12)
    assert a.min() < 0.5 and a.max() == 1.0
    # the smoother recovers each frame's evidence as 1/Sigma - 1/v, which loses a few digits
    # where the evidence is far stronger than the prediction
    rtol = 1e-7 if smooth else 1e-9
    for got, ref in zip(*out, strict=True):
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-13)


@pytest.mark.parametrize("ratio", [1.0, 3.0])
def test_size_frame_is_the_identity_map_at_the_reference_box(mot_module, ratio):
    """A source with the reference box's centre is left where it is if its size is that
    box's, or smaller (no zoom in)."""
    rng = np.random.default_rng(2)
    x = make_trajectories(1, 15, random_state=3)
    iv, ip = _evidence(rng, x)
    size = np.median(np.sqrt((x[0, :, 2] - x[0, :, 0]) * (x[0, :, 3] - x[0, :, 1])))
    centre = 0.5 * (x[0, :, :2] + x[0, :, 2:]).mean(0)
    half = ratio * np.array([0.5 * size / 1.5, 0.5 * size * 1.5])  # another shape
    res = []
    for box in (None, np.concatenate([centre - half, centre + half])):
        dyn = DVAEDynamics(mot_module, precision="float64")
        if box is not None:
            dyn = SizeFrame(dyn, box)
        dyn.infer_latents(x, rng)
        res.append(e_step_s(dyn, iv, ip, x[:, 0][:, None]))
    for got, ref in zip(*res, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)


def _zoom(boxes, k, centre):
    """Scale ``xyxy`` boxes by ``k`` about ``centre`` (a camera zoom); NaN rows stay NaN."""
    c = np.tile(centre, 2)
    return c + k * (boxes - c)


def test_tracker_with_size_frame_is_equivariant_to_a_zoom(monkeypatch):
    """With every object larger than the prior's mean box, zooming every detection by 3 zooms
    the tracks by 3: the prior sees the same boxes in its frame. Without the frame it reads
    boxes larger than those it was trained on, and the tracks change. (Observation noise is
    relative to the box size, and the first-frame initialisation is equivariant too.)"""
    X, y = make_tracking_mixture(4, 3, 30, random_state=0, **HARD,
                                 box_format="xyxy", image_size=None)
    ref = DVAE.from_pretrained("mot").module_.x_loc.numpy()
    ref_size = np.sqrt((ref[2] - ref[0]) * (ref[3] - ref[1]))
    sizes = np.median(np.sqrt((y[..., 2] - y[..., 0]) * (y[..., 3] - y[..., 1])), axis=1)
    X = _zoom(X, 1.2 * ref_size / sizes.min(), np.array([0.5, 0.5]))  # all above the reference
    centre, k = np.array([0.45, 0.55]), 3.0
    # clutter=0: zoomed boxes that leave the image would be clutter by the "auto" rule
    kw = dict(max_iter=4, tol=0.0, init="first-frame", obs_noise=0.08, box_format="xyxy",
              image_size=(1, 1), clutter=0, random_state=0)
    gaps = {}
    for normalize in (True, False):
        if not normalize:  # the prior as the paper runs it, on the boxes as they are
            monkeypatch.setattr("mixest.tracking._tracker._mean_box", lambda module: None)
        est = MixDVAETracker(3, **kw).fit(X)
        tracks = est.predict(X)
        zoomed = est.predict(_zoom(X, k, centre))
        scale = np.abs(tracks).max()
        gaps[normalize] = np.abs(zoomed - _zoom(tracks, k, centre)).max() / (k * scale)
    # the network runs in float32: the two frames differ by rounding of the map only
    assert gaps[True] < 1e-5, gaps
    assert gaps[False] > 1e-3, gaps


def test_frame_of_a_sequence_does_not_depend_on_its_batch(monkeypatch):
    """Sequences converge at different iterations, after which the E-Z and E-S steps see a
    subset of the batch: each must keep its own frame (one batch equals one sequence each)."""
    X, _ = make_tracking_mixture(5, 3, 30, random_state=4, **HARD,
                                 box_format="xyxy", image_size=None)
    X[:2] = 0.5 + 5.0 * (X[:2] - 0.5)  # large boxes: frames far from the identity
    kw = dict(obs_noise=0.08, box_format="xyxy", image_size=(1, 1), random_state=0)
    seen = []
    select = DVAEDynamics.select_sequences

    def spy(self, sequences):
        seen.append(len(sequences))
        select(self, sequences)

    monkeypatch.setattr(DVAEDynamics, "select_sequences", spy)
    tracks = MixDVAETracker(3, batch_size=5, n_jobs=1, **kw).fit(X).predict(X)
    assert seen[0] == 5 and 0 < min(seen) < 5, seen  # some sequences stopped before others
    alone = np.concatenate([MixDVAETracker(3, batch_size=1, n_jobs=1, **kw).fit(X[i:i + 1])
                            .predict(X[i:i + 1]) for i in range(len(X))])
    np.testing.assert_allclose(tracks, alone, rtol=0, atol=1e-9)


def test_reference_box_is_validated(mot_module):
    for bad in ([0.5, 0.5, 0.4, 0.6], [0.1, 0.2, np.nan, 0.3], [0.1, 0.2, 0.3]):
        with pytest.raises(ValueError, match="reference_box"):
            SizeFrame(DVAEDynamics(mot_module), bad)


def test_compiled_maps_of_whole_passes_equal_the_broadcast_maps(mot_module):
    """The maps in and out of the prior's frame on (M, T, D) arrays, one compiled loop each,
    against the broadcasting expressions they replace, to the last bit and in the layout of
    their input (the forward pass's moments are time-major views)."""
    rng = np.random.default_rng(3)
    frame = SizeFrame(DVAEDynamics(mot_module), REF)
    x = rng.random((6, 9, 4))
    frame._frame = frame._fit_frame(0.5 + 4.0 * (x - 0.5))
    a, b = frame._frame[0][:, None], frame._frame[1][:, None]
    np.testing.assert_array_equal(frame._in(x), a * x + b)
    iv, ip = rng.standard_normal(x.shape), rng.uniform(0, 1e4, x.shape)
    got = frame._evidence_in(iv, ip)
    np.testing.assert_array_equal(got[0], iv / a + ip * b / a**2)
    np.testing.assert_array_equal(got[1], ip / a**2)
    mean = rng.random((9, 6, 4)).transpose(1, 0, 2)  # time-major storage
    var = rng.random((9, 6, 4)).transpose(1, 0, 2)
    m_out, v_out = frame._out(mean, var)
    np.testing.assert_array_equal(m_out, (mean - b) / a)
    np.testing.assert_array_equal(v_out, var / a**2)
    assert m_out.strides == mean.strides and v_out.strides == var.strides
