"""MixDVAETracker: contract, conversions, errors, reproducibility, a small accuracy check."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

from mixest import MixDVAETracker
from mixest.baselines import GreedyTracker
from mixest.datasets import make_tracking_mixture, make_trajectories

CV = {"prior": "constant-velocity", "box_format": "xyxy", "image_size": (1.0, 1.0)}


@pytest.fixture(scope="module")
def tiny_dvae():
    from mixest.dvae import DVAE, Network

    # a plain second-order SRNN at a constant step size (DVAE's defaults before the recipes)
    return DVAE(recipe="plain", network=Network(rnn_dim=8, dense_dims=(16, 8), residual_order=2),
                n_epochs=3, learning_rate=1e-3, final_learning_rate=None, kl_warmup=1,
                patience=None, validation_fraction=0.0, device="cpu", random_state=0).fit(
        make_trajectories(128, 30, random_state=0))


def test_import_does_not_load_torch():
    import subprocess
    import sys

    code = ("import sys, mixest, mixest.tracking, mixest.mixture; "
            "mixest.tracking.MixDVAETracker; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=".")


def test_init_only_stores_and_clone_pickle():
    est = MixDVAETracker(n_sources=2, max_iter=5)
    assert est.get_params()["n_sources"] == 2
    assert not hasattr(est, "prior_")
    clone(est)
    X, _ = make_tracking_mixture(2, 2, 10, random_state=0, box_format="xyxy", image_size=None)
    fitted = MixDVAETracker(2, max_iter=2, **CV).fit(X)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(again.predict(X), fitted.predict(X))


def test_shapes_units_and_formats():
    X, y = make_tracking_mixture(3, 3, 20, random_state=0, box_format="xyxy", image_size=None)
    size = np.array([640.0, 480.0])
    scale = np.tile(size, 2)
    Xp, yp = X * scale, y * scale
    xywh = lambda a: np.concatenate([a[..., :2], a[..., 2:] - a[..., :2]], -1)  # noqa: E731
    a = MixDVAETracker(3, prior="constant-velocity", box_format="xyxy", image_size=(640, 480),
                       max_iter=3, random_state=0).fit(Xp)
    b = MixDVAETracker(3, prior="constant-velocity", box_format="xywh", image_size=(640, 480),
                       max_iter=3, random_state=0).fit(xywh(Xp))
    ta, tb = a.predict(Xp), b.predict(xywh(Xp))
    assert ta.shape == yp.shape
    np.testing.assert_allclose(xywh(ta), tb, atol=1e-6)
    eta = a.predict_assignments(Xp)
    assert eta.shape == X.shape[:3] + (4,)  # clutter last ("auto": never here, K <= N)
    valid = ~np.isnan(X).any(-1)
    np.testing.assert_allclose(eta.sum(-1), valid.astype(float), atol=1e-9)
    np.testing.assert_array_equal(eta[..., 3], 0.0)
    c = MixDVAETracker(3, clutter=0, max_iter=2, **CV).fit(X)
    assert c.predict_assignments(X).shape == X.shape[:3] + (3,)
    for init in ("first-frame", "chunked"):
        o = MixDVAETracker(3, init=init, update_noise=True, update_weights=True,
                           assignment_temperature=125.0, max_iter=2, **CV).fit(X)
        assert np.isfinite(o.predict(X)).all()


def test_list_of_tables_input():
    from mixest.tracking import tracks_to_table

    X, _ = make_tracking_mixture(2, 3, 12, random_state=0, box_format="xyxy", image_size=None)
    X = X * 100
    xywh = np.concatenate([X[..., :2], X[..., 2:] - X[..., :2]], -1)
    tables = [tracks_to_table(xywh[i]) for i in range(2)]
    est = MixDVAETracker(3, prior="constant-velocity", image_size=(100, 100), max_iter=2)
    out_tables = est.fit(tables).predict(tables)
    out_array = est.predict(xywh)
    assert out_tables.shape == (2, 12, 3, 4)
    np.testing.assert_allclose(out_tables, out_array, atol=1e-9)


def test_bad_input_errors(tiny_dvae):
    est = MixDVAETracker(2, **CV)
    X = np.zeros((2, 5, 2, 4))
    X[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        est.fit(X)
    with pytest.raises(ValueError, match="shape"):
        est.fit(np.zeros((5, 2, 4)))
    with pytest.raises(TypeError):
        est.fit("detections")
    with pytest.raises(ValueError):
        MixDVAETracker(0, **CV).fit(np.zeros((1, 5, 2, 4)))
    with pytest.raises(ValueError, match="prior"):
        MixDVAETracker(2, prior="nope").fit(np.zeros((1, 5, 2, 4)))
    with pytest.raises(ValueError, match="image_size"):
        MixDVAETracker(2, prior="constant-velocity", image_size=(0, 1)).fit(np.zeros((1, 5, 2, 4)))
    fitted = MixDVAETracker(2, **CV).fit(np.random.default_rng(0).random((1, 5, 2, 4)))
    with pytest.raises(ValueError, match="D"):
        fitted.predict(np.zeros((1, 5, 2, 3)))
    with pytest.raises(TypeError, match="clutter"):  # a probability, not a switch
        MixDVAETracker(2, clutter=True, **CV).fit(np.zeros((1, 5, 2, 4)))
    with pytest.raises(ValueError, match="clutter"):
        MixDVAETracker(2, clutter=1.0, **CV).fit(np.zeros((1, 5, 2, 4)))
    with pytest.raises(ValueError, match="n_z_samples"):
        MixDVAETracker(2, n_z_samples=-1, **CV).fit(np.zeros((1, 5, 2, 4)))


@pytest.mark.parametrize(("backend", "precision"),
                         [("torch", "float32"), ("numpy", "float32"), ("numpy", "float64")])
def test_dvae_dynamics_equal_teacher_forced_decoder(tiny_dvae, backend, precision):
    """With no evidence, E-S runs the decoder on its own means: same as module.decode.

    The NumPy twin (float32 or float64) must agree with the torch module (float32) too.
    """
    import torch

    from mixest.mixture import e_step_s
    from mixest.mixture._dynamics import DVAEDynamics

    module = tiny_dvae.module_
    x = make_trajectories(4, 15, random_state=1)
    dyn = DVAEDynamics(module, backend=backend, precision=precision)
    assert (dyn.twin is not None) == (backend == "numpy")
    dyn.infer_latents(x, np.random.default_rng(0))
    z = torch.as_tensor(dyn._z, dtype=torch.float32)
    with torch.no_grad():
        _, z_mean, _ = module.encode(torch.as_tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(z.numpy(), z_mean.numpy(), rtol=1e-4, atol=1e-5)
    zeros = np.zeros((4, 15, 1, 4))
    means, _, pm, pv = e_step_s(dyn, zeros, zeros, x[:, 0][:, None])
    with torch.no_grad():
        run = module.run(torch.as_tensor(means[:, :, 0], dtype=torch.float32), z=z)
        mean, var = run["x_mean"], run["x_var"]
    np.testing.assert_allclose(pm[:, :, 0], mean.numpy(), rtol=1e-4, atol=1e-6)
    # E-S adds the propagated input uncertainty, zero here (no evidence: Sigma = prior var) only
    # at t = 0; compare the raw decoder variance without propagation
    dyn.propagate_uncertainty = False
    _, _, _, pv = e_step_s(dyn, zeros, zeros, x[:, 0][:, None])
    np.testing.assert_allclose(pv[:, :, 0], var.numpy(), rtol=1e-4, atol=1e-10)


def test_dvae_prior_reproducible_and_accurate(tiny_dvae):
    X, y = make_tracking_mixture(6, 3, 30, jitter=0.04, miss_prob=0.1, random_state=3,
                                 box_format="xyxy", image_size=None)
    est = MixDVAETracker(3, prior=tiny_dvae, max_iter=5, box_format="xyxy", image_size=(1, 1),
                         random_state=0)
    a = est.fit(X).predict(X)
    b = est.predict(X)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(est.lower_bound_).all()
    assert est.score(X, y) >= 0.85
    s = MixDVAETracker(3, prior=tiny_dvae, max_iter=3, n_z_samples=2, box_format="xyxy",
                       image_size=(1, 1), random_state=1).fit(X)
    np.testing.assert_array_equal(s.predict(X), s.predict(X))


def test_mota_on_small_synthetic_batch_beats_floor():
    X, y = make_tracking_mixture(8, 3, 60, jitter=0.04, miss_prob=0.1, random_state=0,
                                 box_format="xyxy", image_size=None)
    est = MixDVAETracker(3, max_iter=10, box_format="xyxy", image_size=(1, 1), random_state=0)
    mota = est.fit(X).score(X, y)
    assert mota >= 0.9
    assert mota >= GreedyTracker(3, box_format="xyxy").fit(X).score(X, y) - 0.05


def test_smoothed_e_s_beats_the_floor_on_the_hard_protocol():
    """Jitter 0.08, 30% misses, shuffled detections: the bundled prior with the backward pass
    must be ahead of the greedy floor and of its own filter-only E-S (the paper's)."""
    X, y = make_tracking_mixture(12, 3, 60, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=5, box_format="xyxy", image_size=None)
    kw = dict(obs_noise=0.08, box_format="xyxy", image_size=(1, 1), random_state=0)
    smoothed = MixDVAETracker(3, **kw).fit(X)
    filtered = MixDVAETracker(3, smooth=False, **kw).fit(X)
    mota_s, mota_f = smoothed.score(X, y), filtered.score(X, y)
    floor = GreedyTracker(3, box_format="xyxy").fit(X).score(X, y)
    assert mota_s > floor and mota_s > mota_f, (mota_s, mota_f, floor)
    # the backward pass tightens the boxes: mean IoU of the matched boxes
    from mixest.tracking import mot_metrics

    motp_s = mot_metrics(y, smoothed.predict(X), box_format="xyxy").loc["OVERALL", "MOTP"]
    motp_f = mot_metrics(y, filtered.predict(X), box_format="xyxy").loc["OVERALL", "MOTP"]
    assert motp_s > motp_f + 0.02, (motp_s, motp_f)


def test_prior_trained_from_y():
    X, y = make_tracking_mixture(4, 2, 20, random_state=0, box_format="xyxy", image_size=None)
    from mixest.dvae import DVAE

    dvae = DVAE(n_epochs=1, patience=None, validation_fraction=0.0, device="cpu",
                random_state=0)
    est = MixDVAETracker(2, prior=dvae, max_iter=2, box_format="xyxy", image_size=(1, 1))
    est.fit(X, y)
    assert hasattr(est.prior_, "module_") and not hasattr(dvae, "module_")
    assert est.predict(X).shape == y.shape


def test_n_jobs_gives_same_result():
    X, _ = make_tracking_mixture(6, 3, 15, random_state=0, box_format="xyxy", image_size=None)
    kw = dict(max_iter=3, batch_size=2, random_state=0, **CV)
    a = MixDVAETracker(3, n_jobs=1, **kw).fit(X).predict(X)
    b = MixDVAETracker(3, n_jobs=2, **kw).fit(X).predict(X)
    np.testing.assert_allclose(a, b)
    # one batch of 6 in one process against that batch split over two workers
    kw["batch_size"] = 128
    one = MixDVAETracker(3, n_jobs=1, **kw).fit(X)
    two = MixDVAETracker(3, n_jobs=2, **kw).fit(X)
    np.testing.assert_allclose(one.predict(X), two.predict(X), rtol=0, atol=1e-12)
    assert len(set(one.n_iter_)) == 1  # one batch: one iteration count


@pytest.mark.realdata
def test_real_windows_smoke(shared_data):
    from mixest.tracking import make_windows
    from mixest.tracking._detections import simulate_detections

    y = make_windows(shared_data / "mot17" / "MOT17-02", 3, 30, max_windows=2, random_state=0)
    X = simulate_detections(y, jitter=0.04, miss_prob=0.1, box_format="xywh", random_state=0)
    est = MixDVAETracker(3, max_iter=5, random_state=0)
    assert est.fit(X).score(X, y) > 0.5


def test_finetune_keeps_prior_and_is_reproducible(tiny_dvae):
    import torch

    X, y = make_tracking_mixture(2, 3, 16, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=4, box_format="xyxy", image_size=None)
    before = {k: v.clone() for k, v in tiny_dvae.module_.state_dict().items()}
    kw = dict(prior=tiny_dvae, max_iter=3, tol=0.0, finetune_steps=2,
              box_format="xyxy", image_size=(1, 1), random_state=0)
    est = MixDVAETracker(3, **kw).fit(X)
    a = est.predict(X)
    after = tiny_dvae.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(a, est.predict(X))  # fixed seed, same result
    # per-sequence copies: sequence 0 tracked alone or batched with sequence 1
    alone = MixDVAETracker(3, **kw).fit(X[:1]).predict(X[:1])
    np.testing.assert_allclose(alone[0], a[0], rtol=0, atol=1e-9)
    # and the tuning changes the result
    off = MixDVAETracker(3, **{**kw, "finetune_steps": 0}).fit(X).predict(X)
    assert np.abs(off - a).max() > 1e-7  # small steps (1e-3), but a different result
    with pytest.raises(ValueError):
        MixDVAETracker(3, **{**kw, "finetune_steps": -1}).fit(X)


def test_finetune_raises_the_elbo(tiny_dvae):
    from mixest.mixture._finetune import EncoderFineTuner

    rng = np.random.default_rng(0)
    T = 12
    means = make_trajectories(6, T, random_state=2)  # 2 sequences of 3 sources
    means = means + 0.003 * rng.standard_normal(means.shape)  # noisy, like posterior means
    tuner = EncoderFineTuner(tiny_dvae.module_, 2, 3, steps=5, lr=1e-2,
                             rng=np.random.default_rng(1))
    z_dim = tiny_dvae.module_.z_dim
    evals = rng.standard_normal((4, 3, T, z_dim))

    def elbo():
        return np.mean([tuner.elbo(means, np.arange(2), e) for e in evals], 0)

    start = elbo()
    tuner.encode(means, np.arange(2))
    mid = elbo()
    tuner.encode(means, np.arange(2))
    end = elbo()
    assert np.all(mid > start) and np.all(end > mid)
    # a sequence not listed keeps its copy
    other = EncoderFineTuner(tiny_dvae.module_, 2, 3, steps=2, lr=1e-2,
                             rng=np.random.default_rng(1))
    other.encode(means[:3], np.array([1]))
    np.testing.assert_allclose(other.elbo(means[:3], np.array([0]), evals[0]),
                               EncoderFineTuner(tiny_dvae.module_, 2, 3, 1, 1e-2,
                                                np.random.default_rng(0)).elbo(
                                   means[:3], np.array([0]), evals[0]))


def test_finetune_elbo_equals_module_elbo(tiny_dvae):
    """Before any step, the batched per-sequence ELBO is the module's (noise-free draw)."""
    import copy

    import torch

    from mixest.mixture._finetune import EncoderFineTuner

    means = make_trajectories(6, 10, random_state=3)
    tuner = EncoderFineTuner(tiny_dvae.module_, 2, 3, 1, 1e-2, np.random.default_rng(0))
    got = tuner.elbo(means, np.arange(2), np.zeros((3, 10, tiny_dvae.module_.z_dim)))
    module = copy.deepcopy(tiny_dvae.module_).double()
    with torch.no_grad():
        ref = module.elbo(torch.as_tensor(means), sample=False).numpy().reshape(2, 3).sum(1)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_public_surface_is_small():
    """The tracker's settings fit on one screen: the prior's own travel with the prior."""
    assert len(MixDVAETracker().get_params()) <= 20


def test_long_gaps_keep_the_bound_finite():
    """5,000 frames, every detection hidden for 3,000 of them and one object for 800 more: the
    prior's propagated variance grows through the gap (the delta method treats consecutive means
    as independent) and used to overflow (FloatingPointError); it is capped at one image, and no
    information flows back through a capped prediction."""
    rng = np.random.default_rng(0)
    T = 5000
    t = np.arange(T)[:, None]
    start = np.array([[0.2, 0.3], [0.6, 0.4]])
    centre = start[None] + 2e-5 * t[..., None] * np.array([1.0, -0.5])  # (T, 2 objects, 2)
    size = np.array([0.03, 0.12])
    y = np.concatenate([centre - size / 2, centre + size / 2], -1)[None]  # (1, T, 2, 4)
    X = y + rng.normal(0, 0.001, y.shape)
    X[:, 1000:4000] = np.nan
    X[:, 4000:4800, 0] = np.nan
    est = MixDVAETracker(2, box_format="xyxy", image_size=(1, 1), max_iter=3, tol=0.0,
                         random_state=0).fit(X)
    tracks = est.predict(X)
    assert np.isfinite(tracks).all() and np.isfinite(est.lower_bound_).all()
    # the objects are followed again after the gap (identities may swap in a total blackout)
    err = [np.abs(tracks[0, 4900:][:, perm] - y[0, 4900:]).max() for perm in ([0, 1], [1, 0])]
    assert min(err) < 0.01


@pytest.mark.parametrize("make", [
    lambda: MixDVAETracker(2, box_format="xyxy", image_size=(1, 1), max_iter=3),
    lambda: MixDVAETracker(2, prior="constant-velocity", box_format="xyxy", image_size=(1, 1)),
    lambda: __import__("mixest.baselines", fromlist=["VKFTracker"]).VKFTracker(
        2, box_format="xyxy", image_size=(1, 1)),
    lambda: __import__("mixest.baselines", fromlist=["DeepARTracker"]).DeepARTracker(
        2, prior="pretrained:mot-ar", box_format="xyxy", image_size=(1, 1)),
    lambda: __import__("mixest.baselines", fromlist=["GreedyTracker"]).GreedyTracker(
        2, box_format="xyxy"),
], ids=["mixdvae", "vem+cv", "vkf", "deep-ar", "greedy"])
def test_a_sequence_without_detections_gets_nan_tracks(make):
    """Nothing to track: NaN tracks and one warning naming the sequence, not invented boxes;
    the other sequences of the batch are tracked."""
    import warnings

    X, _ = make_tracking_mixture(3, 2, 12, random_state=0, box_format="xyxy", image_size=None)
    X[1] = np.nan
    est = make().fit(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracks = est.predict(X)
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    assert len(messages) == 1 and "index 1" in messages[0]
    assert np.isnan(tracks[1]).all() and np.isfinite(tracks[[0, 2]]).all()
    assert not [w for w in caught if "Mean of empty slice" in str(w.message)]


def test_verbose_shows_a_bar_over_batches_and_bounds_only_at_2(capsys):
    X, _ = make_tracking_mixture(4, 2, 12, random_state=0)
    common = {"n_sources": 2, "prior": "constant-velocity", "max_iter": 3, "tol": 0,
              "batch_size": 1, "random_state": 0}
    quiet = MixDVAETracker(**common).fit(X).predict(X)
    assert capsys.readouterr().err == ""
    bar = MixDVAETracker(**common, verbose=True).fit(X).predict(X)
    err = capsys.readouterr()
    assert "tracking" in err.err and "4/4" in err.err and "VEM" not in err.out
    np.testing.assert_array_equal(bar, quiet)  # the bar changes nothing
    MixDVAETracker(**common, verbose=2).fit(X).predict(X)
    assert "VEM" in capsys.readouterr().out  # the bound at every iteration
