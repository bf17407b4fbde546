"""The bundled spectral priors ("speech", "flute") load by name and behave."""

from __future__ import annotations

import numpy as np
import pytest

from mixest.dvae import DVAE


@pytest.fixture(scope="module", params=["speech", "flute"])
def prior(request):
    return request.param, DVAE.from_pretrained(request.param)


def test_bundled_spectral_prior(prior, tmp_path):
    name, est = prior
    assert est.likelihood == "itakura_saito" and est.n_features_in_ == 513
    samples = est.sample(3, 50, random_state=0)
    assert samples.shape == (3, 50, 513)
    assert np.isfinite(samples).all() and (samples >= 0).all()
    assert np.isfinite(est.score(samples))
    path = tmp_path / f"{name}.pt"
    est.save(path)
    again = DVAE.load(path)
    for a, b in zip(est.module_.state_dict().values(), again.module_.state_dict().values(),
                    strict=True):
        assert (a == b).all()
    assert again.score(samples) == est.score(samples)
    # a corrupted copy is refused by name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=str(path.name)):
        DVAE.load(path)


def test_each_prior_prefers_its_own_samples():
    """A sample of one prior is better explained by it than by the other prior."""
    speech, flute = DVAE.from_pretrained("speech"), DVAE.from_pretrained("flute")
    for own, other in ((speech, flute), (flute, speech)):
        x = own.sample(8, 50, random_state=1)
        assert (own.score_samples(x) > other.score_samples(x)).mean() >= 0.75
