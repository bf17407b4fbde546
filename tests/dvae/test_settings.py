"""The DVAE's grouped settings and recipes, the bundled prior's recipe, and older weight files.

``data/dvae_v1_tiny.pt`` was written, and ``data/dvae_v1_reference.npz`` computed, by mixest
before the grouped settings (weight format version 1, flat parameters): a tiny model trained
with every option the bundled recipe uses (gated first-order residual started at ``gate_init=4``,
relative jitter at random levels with a clean share, the noise-level input, the absolute
predictive term, the cosine step decay) plus scheduled sampling; the reference also holds the
bundled prior's outputs on a fixed batch, and ``data/dvae_v1_tiny.pkl`` is that estimator
pickled by the same mixest.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

from mixest.datasets import make_trajectories
from mixest.dvae import DVAE, RECIPES, Network, ScheduledSampling, TrainingNoise, build_module
from mixest.dvae._estimator import FORMAT_VERSION, _unpack

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference():
    return np.load(DATA / "dvae_v1_reference.npz")


def test_at_most_twenty_parameters():
    assert len(DVAE().get_params()) <= 20


def test_settings_objects_clone_compare_and_pickle():
    est = DVAE(network=Network(rnn_dim=32), noise=TrainingNoise(0.05, relative=True),
               scheduled_sampling=ScheduledSampling(0.5, start=1, end=3))
    params = est.get_params()
    assert params["network"] == Network(rnn_dim=32) and params["noise"].std == 0.05
    twin = clone(est)
    assert twin.get_params() == params
    assert pickle.loads(pickle.dumps(est)).get_params() == params
    est.set_params(network=Network(z_dim=2))
    assert est.network.z_dim == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        params["network"].z_dim = 3


def test_network_defaults_follow_the_likelihood():
    assert Network().resolve("gaussian") == Network(
        residual_order=1, velocity_input=True, gated_extrapolation=True, gate_init=4.0)
    assert Network().resolve("itakura_saito") == Network(
        residual_order=0, velocity_input=False, gated_extrapolation=False, gate_init=0.0)
    # the gates apply to a first-order residual only
    assert Network(residual_order=2).resolve("gaussian").gated_extrapolation is False
    assert Network(dense_dims=[8]).resolve("gaussian").dense_dims == (8,)


def test_default_recipe_is_the_bundled_prior():
    """``DVAE()`` trains the bundled prior's recipe on Gaussian data: its loaded parameters are
    ``recipe="mot"`` with the default schedule (and the seed, device and progress bar of its
    training run); the benchmark script trains exactly that."""
    prior = DVAE.from_pretrained("mot")
    assert prior.get_params() == DVAE(recipe="mot", device="cpu", random_state=0,
                                      verbose=True).get_params()
    mot = RECIPES["mot"]
    assert prior.network_ == mot["network"]
    assert prior.noise_ == mot["noise"] and prior.predictive_weight_ == mot["predictive_weight"]
    assert DVAE()._settings(4) == (mot["network"], mot["noise"], mot["predictive_weight"])
    spec = importlib.util.spec_from_file_location("train_priors",
                                                  REPO / "benchmarks" / "train_priors.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    recipe = DVAE(**script.PRIORS["mot"]["params"])
    assert recipe.get_params() == DVAE(recipe="mot", device="cpu", random_state=0).get_params()


def test_bundled_prior_scores_as_before(reference):
    """The bundled file (format version 1) loads to the module it stores: outputs equal the
    module rebuilt straight from the raw file, and the values computed before the grouped
    settings existed (relative 1e-6, 1e-5 for the predictive variances and the latents: the
    same float32 computation, but another CPU rounds differently; MKL on an AMD EPYC moved
    variances of 1e-10 to 1e-7 by 1.5e-6 of their size)."""
    prior = DVAE.from_pretrained("mot")
    from mixest.pretrained._registry import weight_path

    payload = torch.load(weight_path("mot"), map_location="cpu", weights_only=True)
    assert payload["format_version"] == 1  # kept as it was written, translated on load
    module = build_module(payload["module_config"])
    module.load_state_dict(_unpack(payload["weights"], payload["layout"]))
    for k, v in module.state_dict().items():
        assert torch.equal(v, prior.module_.state_dict()[k]), k
    X = make_trajectories(64, 60, random_state=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        raw = module.eval().elbo(torch.as_tensor(X, dtype=torch.float32), 1.0, generator=gen)
    np.testing.assert_array_equal(prior.score_samples(X), raw.numpy().astype(np.float64))
    assert prior.score(X) == pytest.approx(float(reference["mot_score"]), rel=1e-6, abs=0)
    np.testing.assert_allclose(prior.score_samples(X), reference["mot_score_samples"],
                               rtol=1e-6, atol=0)
    mean, var = prior.predict_next(X[:2], level=0.0)
    np.testing.assert_allclose(mean, reference["mot_pred_mean_l0"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(var, reference["mot_pred_var_l0"], rtol=1e-5, atol=0)
    np.testing.assert_allclose(prior.transform(X[:2]), reference["mot_transform"],
                               rtol=1e-5, atol=1e-7)


def test_version_1_file_loads_with_translated_settings(reference, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every option of this file still exists
        old = DVAE.load(DATA / "dvae_v1_tiny.pt")
    X = make_trajectories(4, 10, random_state=6)
    np.testing.assert_allclose(old.score_samples(X, level=0.0), reference["tiny_score_samples"],
                               rtol=1e-6)
    mean, var = old.predict_next(X, level=0.5)
    np.testing.assert_allclose(mean, reference["tiny_pred_mean"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(var, reference["tiny_pred_var"], rtol=1e-6)
    expected = Network(z_dim=2, rnn_dim=3, dense_dims=(4,), residual_order=1,
                       velocity_input=True, gated_extrapolation=True, gate_init=4.0,
                       min_std=1e-5)
    assert old.network == expected and old.network_ == expected
    assert old.noise == TrainingNoise(0.1, relative=True, random_level=True,
                                      clean_fraction=0.3, level_input=True)
    assert old.predictive_weight == 100.0
    assert old.scheduled_sampling == ScheduledSampling(0.25, start=0, end=1)
    # The translated parameters train exactly the recipe the file was trained with: the same
    # data and seed give its weights again.
    again = clone(old).fit(make_trajectories(40, 12, random_state=5))
    for k, v in old.module_.state_dict().items():
        torch.testing.assert_close(again.module_.state_dict()[k], v, msg=k)
    # saved again, it is a file of today's version that loads to the same estimator
    path = tmp_path / "v3.pt"
    old.save(path)
    assert torch.load(path, weights_only=True)["format_version"] == FORMAT_VERSION == 3
    new = DVAE.load(path)
    assert new.get_params() == old.get_params() and new.network_ == old.network_
    np.testing.assert_array_equal(new.predict_next(X, level=0.5)[0], mean)


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"noise_targets": True}, "noise_targets=True"),
        ({"jittered_scales": True}, "jittered_scales=True"),
        ({"input_noise_min": 0.25}, "input_noise_min=0.25"),
        ({"predictive_loss": "squared"}, "predictive_loss='squared'"),
    ],
)
def test_version_1_options_that_no_longer_exist_warn(changes, named, tmp_path):
    payload = torch.load(DATA / "dvae_v1_tiny.pt", weights_only=True)
    payload["params"].update(changes)
    torch.save(payload, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match=named):
        old = DVAE.load(tmp_path / "old.pt")
    assert np.isfinite(old.score(make_trajectories(4, 10, random_state=6)))


def test_version_1_files_missing_parameters_load_with_the_old_defaults(tmp_path):
    """A version-1 file written before a parameter existed reads it at its default then."""
    payload = torch.load(DATA / "dvae_v1_tiny.pt", weights_only=True)
    for key in ("gate_init", "ss_max", "noise_targets"):
        del payload["params"][key]
    torch.save(payload, tmp_path / "older.pt")
    with pytest.warns(UserWarning, match="noise_targets=True"):  # then the default
        old = DVAE.load(tmp_path / "older.pt")
    assert old.network.gate_init == 0.0 and old.scheduled_sampling is None


def test_pickled_estimator_of_version_1_loads():
    """An estimator pickled before the grouped settings (flat parameters in its ``__dict__``,
    written by that mixest) unpickles to today's parameters and the same predictions."""
    with (DATA / "dvae_v1_tiny.pkl").open("rb") as f:
        old = pickle.load(f)  # (a fixture of this repository)
    est = DVAE.load(DATA / "dvae_v1_tiny.pt")
    assert old.get_params() == est.get_params()
    assert old.network_ == est.network_ and old.noise_ == est.noise_
    X = make_trajectories(4, 10, random_state=6)
    np.testing.assert_array_equal(old.predict_next(X)[0], est.predict_next(X)[0])
