"""DVAE.from_checkpoint: the MixDVAE authors' spectral SRNN checkpoints in mixest's SRNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixest.dvae import DVAE, Network
from mixest.dvae._modules import build_module

CONFIG = {"x_dim": 12, "z_dim": 3, "activation": "tanh", "dense_x_h": "10", "dim_RNN_h": 6,
          "num_RNN_h": 1, "dense_hx_g": "10", "dim_RNN_g": 6, "num_RNN_g": 1,
          "dense_gz_z": "8, 5", "dense_hz_x": "10", "dense_hz_z": "8, 5", "dropout_p": 0}


def _their_names(module) -> dict:
    """Write a mixest module's weights under the authors' tensor names (the inverse of the
    loader, written independently of it from the layout table in docs/separation.md)."""
    sd = module.state_dict()
    out = {"mlp_x_h.linear_0.weight": sd["feature_x.0.weight"],
           "mlp_x_h.linear_0.bias": sd["feature_x.0.bias"],
           "mlp_hx_g.linear_0.weight": sd["feature_enc.0.weight"],
           "mlp_hx_g.linear_0.bias": sd["feature_enc.0.bias"],
           "mlp_hz_x.linear_0.weight": sd["decoder_net.0.weight"],
           "mlp_hz_x.linear_0.bias": sd["decoder_net.0.bias"],
           "gen_x.weight": sd["decoder_net.2.weight"], "gen_x.bias": sd["decoder_net.2.bias"]}
    for ours, theirs in (("rnn", "rnn_h"), ("rnn_enc", "rnn_g")):
        for p in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            out[f"{theirs}.{p}"] = sd[f"{ours}.{p}"]
    for ours, mlp, head in (("encoder_net", "mlp_gz_z", "inf_z"),
                            ("prior_net", "mlp_hz_z", "prior_z")):
        for i in range(2):
            out[f"{mlp}.linear_{i}.weight"] = sd[f"{ours}.{2 * i}.weight"]
            out[f"{mlp}.linear_{i}.bias"] = sd[f"{ours}.{2 * i}.bias"]
        w, b = sd[f"{ours}.4.weight"], sd[f"{ours}.4.bias"]
        out[f"{head}_mean.weight"], out[f"{head}_logvar.weight"] = w.chunk(2)
        out[f"{head}_mean.bias"], out[f"{head}_logvar.bias"] = b.chunk(2)
    return {k: v.clone() for k, v in out.items()}


@pytest.fixture
def reference():
    torch.manual_seed(0)
    return build_module({"x_dim": 12, "architecture": "srnn", "z_dim": 3, "rnn_dim": 6,
                         "dense_dims": (10,), "latent_dims": (8, 5), "likelihood": "itakura_saito",
                         "encoder_rnn": True, "residual_order": 0, "velocity_input": False,
                         "encoder_input": "hx", "log_input": False}).eval()


def test_checkpoint_loads_into_the_same_network(tmp_path, reference):
    path = tmp_path / "model.pt"
    torch.save(_their_names(reference), path)
    est = DVAE.from_checkpoint(path, CONFIG)
    assert est.network_.encoder_input == "hx" and est.network_.log_input is False
    assert est.network_.latent_dims == (8, 5)
    x = torch.rand(4, 9, 12, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        a = reference.run(x, sample=False)
        b = est.module_.run(x, sample=False)
    for key in ("z", "x_var", "prior_mean"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    # a fitted, usable estimator that saves and loads exactly
    X = x.double().numpy()
    assert np.isfinite(est.score(X))
    est.save(tmp_path / "mixest.pt")
    again = DVAE.load(tmp_path / "mixest.pt")
    assert again.score(X) == est.score(X)


def test_checkpoint_errors(tmp_path, reference):
    state = _their_names(reference)
    path = tmp_path / "model.pt"
    torch.save({k: v for k, v in state.items() if k != "gen_x.bias"}, path)
    with pytest.raises(ValueError, match="lacks tensor 'gen_x.bias'"):
        DVAE.from_checkpoint(path, CONFIG)
    torch.save({**state, "extra.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="does not use"):
        DVAE.from_checkpoint(path, CONFIG)
    torch.save(state, path)
    with pytest.raises(ValueError, match="shape"):
        DVAE.from_checkpoint(path, {**CONFIG, "x_dim": 13})
    with pytest.raises(ValueError, match="activation"):
        DVAE.from_checkpoint(path, {**CONFIG, "activation": "relu"})
    with pytest.raises(ValueError, match="lacks z_dim"):
        DVAE.from_checkpoint(path, {k: v for k, v in CONFIG.items() if k != "z_dim"})
    (tmp_path / "bad.ini").write_text("[User]\nx = 1\n")
    with pytest.raises(ValueError, match=r"no \[Network\] section"):
        DVAE.from_checkpoint(path, tmp_path / "bad.ini")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable PyTorch file"):
        DVAE.from_checkpoint(tmp_path / "junk.pt", CONFIG)


def test_network_fields_are_checked():
    with pytest.raises(ValueError, match="encoder_input"):
        Network(encoder_input="h").resolve("gaussian")
    with pytest.raises(ValueError, match="architecture='srnn'"):
        Network(architecture="vrnn", encoder_input="hx").resolve("gaussian")
    with pytest.raises(ValueError, match="log_input"):
        Network(log_input=False).resolve("gaussian")
    with pytest.raises(ValueError, match="latent_dims"):
        Network(latent_dims=(0,)).resolve("gaussian")


def _segments(paths, sample_rate=16000, n_frames=50):
    from mixest.separation import read_audio, stft

    out = []
    for p in paths:
        x, _ = read_audio(p, sample_rate=sample_rate)
        P = (np.abs(stft(x / np.abs(x).max())) ** 2).T
        n = len(P) // n_frames
        out.append(P[: n * n_frames].reshape(n, n_frames, -1))
    return np.concatenate(out)


def test_published_speech_prior_knows_speech(shared_data):
    """The mapping is right if the loaded speech prior explains held-out speech far better
    than flute and far better than the same network untrained."""
    root = shared_data / "pretrained" / "mixdvae_authors"
    if not (root / "model_scass_wsj.pt").is_file():
        pytest.skip(f"the authors' checkpoints are not in {root}")
    speech = _segments(sorted((shared_data / "audio/speech/sisec2011_dev1").glob("*.wav"))[:2])
    flute = _segments(sorted(p for p in (shared_data / "audio/flute").glob("*.flac")
                             if "training" not in p.name))
    est = DVAE.from_checkpoint(root / "model_scass_wsj.pt", root / "cfg_dvae_single_scass_wsj.ini")
    untrained = DVAE.from_checkpoint(root / "model_scass_wsj.pt",
                                     root / "cfg_dvae_single_scass_wsj.ini")
    with torch.no_grad():
        for p in untrained.module_.parameters():
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    # per-frame ELBO (nats); the IS likelihood is per frame of 513 bins
    assert est.score(speech) > est.score(flute) + 300
    assert est.score(speech) > untrained.score(speech) + 1000
