"""DVAE modules: shapes, the step-by-step interface, and ELBO terms against NumPy closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixest.dvae import SRNN, VRNN, build_module, gaussian_kl

ARCHS = [SRNN, VRNN]


def _module(cls, likelihood="gaussian", x_dim=3, **kw):
    torch.manual_seed(0)
    m = cls(x_dim, z_dim=2, rnn_dim=5, dense_dims=(6, 4), likelihood=likelihood, **kw)
    x = _data(likelihood, x_dim)
    m.set_normalization(x, 1e-3)
    return m.eval(), x

def _decoded(m, x, z):
    """Teacher-forced decoding at latents ``z``: the decoder's mean and variance for every t."""
    r = m.run(x, z=z)
    return r["x_mean"], r["x_var"]


def _data(likelihood, x_dim, B=4, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    if likelihood == "itakura_saito":
        return torch.rand(B, T, x_dim, generator=g) * 3.0 + 0.01
    return torch.cumsum(0.1 * torch.randn(B, T, x_dim, generator=g), 1) + 0.5


@pytest.mark.parametrize("cls", ARCHS)
@pytest.mark.parametrize("likelihood", ["gaussian", "itakura_saito"])
def test_shapes_and_interface(cls, likelihood):
    m, x = _module(cls, likelihood)
    B, T, D = x.shape
    z, zm, zlv = m.encode(x)
    assert z.shape == zm.shape == zlv.shape == (B, T, 2)
    mean, var = _decoded(m, x, z)
    assert mean.shape == var.shape == (B, T, D)
    assert torch.all(var > 0)
    e, recon, kl = m.elbo(x, return_terms=True)
    assert e.shape == recon.shape == kl.shape == (B,)
    assert torch.all(kl >= -1e-6)
    assert m.sample(3, 5).shape == (3, 5, D)
    pm, pv = m.predict_next(x)
    assert pm.shape == pv.shape == (B, T, D)
    if likelihood == "itakura_saito":
        assert torch.all(mean == 0) and torch.all(m.sample(2, 4) >= 0)


@pytest.mark.parametrize("cls", ARCHS)
@pytest.mark.parametrize("likelihood", ["gaussian", "itakura_saito"])
def test_decode_step_matches_teacher_forced_decoding(cls, likelihood):
    m, x = _module(cls, likelihood)
    z, _, _ = m.encode(x, sample=False)
    mean, var = _decoded(m, x, z)
    state = m.initial_state(x.shape[0])
    x_prev = None
    with torch.no_grad():
        for t in range(x.shape[1]):
            mt, vt, state = m.decode_step(x_prev, z[:, t], state)
            torch.testing.assert_close(mt, mean[:, t])
            torch.testing.assert_close(vt, var[:, t])
            x_prev = x[:, t]


@pytest.mark.parametrize("cls", ARCHS)
def test_fast_path_matches_stepwise_path(cls):
    # The teacher-forced pass batches the prior and decoder; the scheduled-sampling pass steps
    # everything. With a vanishing feed probability they must agree.
    m, x = _module(cls)
    fast = m.run(x, sample=False)
    slow = m._run_fed(x, m.encoder_summary(x), False, None, None, 1e-30)
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k])


@pytest.mark.parametrize("cls", ARCHS)
def test_encode_deterministic_and_sampling_reproducible(cls):
    m, x = _module(cls)
    a = m.encode(x)[0]
    b = m.encode(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    s1 = m.encode(x, sample=True, generator=torch.Generator().manual_seed(3))[0]
    s2 = m.encode(x, sample=True, generator=torch.Generator().manual_seed(3))[0]
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    assert not torch.equal(s1, a)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(m.sample(2, 6, g1), m.sample(2, 6, g2), rtol=0, atol=0)


def test_gaussian_kl_closed_form():
    rng = np.random.default_rng(0)
    mq, lq, mp, lp = rng.normal(size=(4, 5, 3))
    expected = 0.5 * np.sum(
        np.log(np.exp(lp) / np.exp(lq)) + (np.exp(lq) + (mq - mp) ** 2) / np.exp(lp) - 1, -1
    )
    got = gaussian_kl(*(torch.as_tensor(a) for a in (mq, lq, mp, lp)))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert torch.allclose(gaussian_kl(*(torch.as_tensor(a) for a in (mq, lq, mq, lq))),
                          torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize("cls", ARCHS)
@pytest.mark.parametrize("likelihood", ["gaussian", "itakura_saito"])
def test_elbo_terms_match_numpy_from_intermediates(cls, likelihood):
    m, x = _module(cls, likelihood)
    r = m.run(x, sample=False)
    e, recon, kl = m.elbo(x, beta=0.3, sample=False, return_terms=True)
    xn = x.numpy().astype(np.float64)
    mu, v = (r[k].detach().numpy().astype(np.float64) for k in ("x_mean", "x_var"))
    if likelihood == "gaussian":
        ll = -0.5 * (np.log(2 * np.pi * v) + (xn - mu) ** 2 / v).sum(-1)
    else:
        ll = -(np.log(np.pi * v) + xn / v).sum(-1)
    qm, qlv, pm, plv = (
        r[k].detach().numpy().astype(np.float64)
        for k in ("z_mean", "z_logvar", "prior_mean", "prior_logvar")
    )
    kl_np = 0.5 * (plv - qlv + (np.exp(qlv) + (qm - pm) ** 2) / np.exp(plv) - 1).sum(-1)
    np.testing.assert_allclose(recon.detach().numpy(), ll.mean(-1), rtol=1e-4)
    np.testing.assert_allclose(kl.detach().numpy(), kl_np.mean(-1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(e.detach().numpy(), ll.mean(-1) - 0.3 * kl_np.mean(-1),
                               rtol=1e-4)


def _zero_weights(m):
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()


@pytest.mark.parametrize("cls", ARCHS)
@pytest.mark.parametrize("order", [0, 1, 2])
def test_gaussian_elbo_hand_computed(cls, order):
    # All weights zero: q = p = N(0, 1) so KL = 0, and the decoder mean is the residual base
    # with variance scale^2 + min_std^2; the log-likelihood is then a closed form of x alone.
    m, x = _module(cls, residual_order=order)
    _zero_weights(m)
    e, recon, kl = m.elbo(x, sample=False, return_terms=True)
    np.testing.assert_allclose(kl.detach().numpy(), 0.0, atol=1e-7)
    xn = x.numpy().astype(np.float64)
    flat = xn.reshape(-1, 3)
    loc, sc = flat.mean(0), flat.std(0, ddof=1)
    dsc = np.sqrt(((xn[:, 1:] - xn[:, :-1]) ** 2).reshape(-1, 3).mean(0))
    ddsc = np.sqrt(((xn[:, 2:] - 2 * xn[:, 1:-1] + xn[:, :-2]) ** 2).reshape(-1, 3).mean(0))
    T = xn.shape[1]
    mu = np.empty_like(xn)
    s = np.empty_like(xn)
    for t in range(T):
        o = min(order, t)
        if o == 0:
            mu[:, t], s[:, t] = loc, sc
        elif o == 1:
            mu[:, t], s[:, t] = xn[:, t - 1], dsc
        else:
            mu[:, t], s[:, t] = 2 * xn[:, t - 1] - xn[:, t - 2], ddsc
    v = s**2 + 1e-6
    ll = -0.5 * (np.log(2 * np.pi * v) + (xn - mu) ** 2 / v).sum(-1).mean(-1)
    np.testing.assert_allclose(recon.detach().numpy(), ll, rtol=1e-4)
    np.testing.assert_allclose(e.detach().numpy(), ll, rtol=1e-4)


@pytest.mark.parametrize("cls", ARCHS)
def test_itakura_saito_elbo_hand_computed(cls):
    # Zero weights: v = exp(mean log power) + floor for every bin; -log p is the IS divergence
    # d_IS(x | v) = x/v - log(x/v) - 1 plus terms free of v.
    m, x = _module(cls, "itakura_saito")
    _zero_weights(m)
    _, recon, kl = m.elbo(x, sample=False, return_terms=True)
    xn = x.numpy().astype(np.float64)
    v = np.exp(np.log(xn + 1e-10).reshape(-1, 3).mean(0)) + 1e-6
    nll = (np.log(np.pi * v) + xn / v).sum(-1).mean(-1)
    np.testing.assert_allclose(-recon.detach().numpy(), nll, rtol=1e-4)
    d_is = (xn / v - np.log(xn / v) - 1).sum(-1).mean(-1)
    const = (np.log(np.pi * xn) + 1).sum(-1).mean(-1)
    np.testing.assert_allclose(-recon.detach().numpy(), d_is + const, rtol=1e-4)
    np.testing.assert_allclose(kl.detach().numpy(), 0.0, atol=1e-7)


def test_data_units_in_and_out():
    # The normalisation lives in buffers: predictions come back in the data's units.
    m, _ = _module(SRNN, residual_order=0)
    _zero_weights(m)
    x = 1000.0 + _data("gaussian", 3)
    m.set_normalization(x, 0.0)
    mean, _ = m.predict_next(x)
    torch.testing.assert_close(mean[:, 0], m.x_loc.expand(x.shape[0], 3))
    assert abs(float(m.x_loc.mean()) - 1000.5) < 1.0


def test_build_module_round_trip_and_errors():
    m, _ = _module(VRNN)
    m2 = build_module(m.config())
    assert type(m2) is VRNN and m2.config() == m.config()
    with pytest.raises(ValueError, match="architecture"):
        build_module({**m.config(), "architecture": "nope"})
    with pytest.raises(ValueError, match="likelihood"):
        SRNN(3, likelihood="poisson")


@pytest.mark.parametrize("cls", ARCHS)
def test_scheduled_sampling_keeps_first_two_frames(cls):
    # Feeding predictions starts at the third frame: the first two predictions cannot know the
    # position and velocity. With feed_prob=1 the first three frames' outputs are unchanged.
    m, x = _module(cls)
    with torch.no_grad():
        tf = m.run(x, sample=False)
        fed = m.run(x, sample=False, feed_prob=1.0)
    torch.testing.assert_close(fed["x_mean"][:, :3], tf["x_mean"][:, :3])
    assert not torch.allclose(fed["x_mean"][:, 3:], tf["x_mean"][:, 3:])


@pytest.mark.parametrize("cls", ARCHS)
@pytest.mark.parametrize("likelihood", ["gaussian", "itakura_saito"])
def test_scheduled_sampling_feeds_the_expected_frame(cls, likelihood):
    """With feed_prob=1 the recurrence reads the model's own expected frame from the third frame
    on: the decoder mean (Gaussian) or the expected power, the variance (Itakura-Saito, whose
    mean is zeros). Oracle: decode_step fed that frame by hand, at the same latents."""
    m, x = _module(cls, likelihood)
    with torch.no_grad():
        z = m.run(x, sample=False)["z"]
        fed = m.run(x, sample=False, z=z, feed_prob=1.0)
        state, prev, var = m.initial_state(x.shape[0]), None, []
        for t in range(x.shape[1]):
            mean_t, var_t, state = m.decode_step(prev, z[:, t], state)
            var.append(var_t)
            own = var_t if likelihood == "itakura_saito" else mean_t
            prev = x[:, t] if t < 2 else own
    torch.testing.assert_close(fed["x_var"], torch.stack(var, 1))
    if likelihood == "itakura_saito":  # the expected power, never the zero mean, is fed
        zero_fed = _decoded(m, torch.zeros_like(x), z)[1]
        assert not torch.allclose(fed["x_var"][:, 3:], zero_fed[:, 3:])


@pytest.mark.parametrize("cls", ARCHS)
@pytest.mark.parametrize("gate", [-60.0, 0.0, 60.0])
def test_gated_extrapolation_is_exact_kinematics(cls, gate):
    """Zero weights but the gates' biases: the decoder mean is x_{t-1} + s (x_{t-1} - x_{t-2})
    + s (x_{t-1} - 2 x_{t-2} + x_{t-3}) with s = sigmoid(bias); saturated gates give the random
    walk (-60) or the constant-acceleration extrapolation 3 x_{t-1} - 3 x_{t-2} + x_{t-3} (60).
    Teacher-forced decoding, decode_step, predict_next and the NumPy twin all agree."""
    m, x = _module(cls, residual_order=1, gated_extrapolation=True)
    _zero_weights(m)
    D = x.shape[-1]
    with torch.no_grad():
        m.decoder_net[-1].bias[2 * D:] = gate
    xn = x.numpy().astype(np.float64)
    s = 1.0 / (1.0 + np.exp(-gate))
    mu = np.empty_like(xn)
    mu[:, 0] = m.x_loc.numpy()
    mu[:, 1] = xn[:, 0]
    mu[:, 2] = xn[:, 1] + s * (xn[:, 1] - xn[:, 0])
    v = xn[:, 2:-1] - xn[:, 1:-2]
    mu[:, 3:] = xn[:, 2:-1] + s * v + s * (v - xn[:, 1:-2] + xn[:, :-3])
    z = torch.zeros(x.shape[:2] + (2,))
    mean, _ = _decoded(m, x, z)
    np.testing.assert_allclose(mean.detach().numpy(), mu, rtol=0, atol=1e-6)
    np.testing.assert_allclose(m.predict_next(x)[0].numpy(), mu, rtol=0, atol=1e-6)
    state, x_prev = m.initial_state(x.shape[0]), None
    with torch.no_grad():
        for t in range(x.shape[1]):
            mt, _, state = m.decode_step(x_prev, z[:, t], state)
            np.testing.assert_allclose(mt.numpy(), mu[:, t], rtol=0, atol=1e-6)
            x_prev = x[:, t]
        gates = m.emission_gates(state.h, z[:, -1])
    for g in gates:
        np.testing.assert_allclose(g.numpy(), s, rtol=1e-6)
    if cls is SRNN:
        from mixest.mixture._numpy_srnn import NumpySRNN

        twin, zn = NumpySRNN(m), np.zeros((x.shape[0], 2))
        state, x_prev = twin.initial_state(x.shape[0]), None
        for t in range(x.shape[1]):
            mt, _, state = twin.decode_step(x_prev, zn, state)
            np.testing.assert_allclose(mt, mu[:, t], rtol=0, atol=1e-6)
            x_prev = xn[:, t]


def test_gated_extrapolation_needs_a_first_order_gaussian_residual():
    for kw in ({"residual_order": 2}, {"residual_order": 0},
               {"residual_order": 1, "likelihood": "itakura_saito"}):
        with pytest.raises(ValueError, match="gated_extrapolation"):
            SRNN(3, gated_extrapolation=True, **kw)
    m, _ = _module(SRNN, residual_order=1, gated_extrapolation=True)
    m2 = build_module(m.config())
    assert m2.gated_extrapolation and m2.config() == m.config()
    assert build_module({k: v for k, v in m.config().items()
                         if k != "gated_extrapolation"}).gated_extrapolation is False


@pytest.mark.parametrize("cls", ARCHS)
def test_predictive_term_is_the_causal_one_step_prediction(cls):
    """``run(predictive=True)`` returns :meth:`predict_next`'s prediction (latents chained
    through the prior's means; the SRNN's batched version against the stepped loop), in the
    teacher-forced and the scheduled-sampling pass, and ``elbo`` returns its absolute error
    (units of the first differences' scale, frames 3 on) as a fourth term."""
    m, x = _module(cls)
    with torch.no_grad():
        mean, var = m.predict_next(x)
        state, x_prev = m.initial_state(x.shape[0]), None
        for t in range(x.shape[1]):  # the loop written out
            h, state = m.advance(x_prev, state)
            pm, _ = m.prior_step(h, state.z)
            state = state._replace(z=pm)
            if t == 3:
                mt, _ = m.emission(h, pm, x[:, 2], x[:, 1], x[:, 0])
                torch.testing.assert_close(mean[:, 3], mt)
            x_prev = x[:, t]
        r = m.run(x, sample=False, predictive=True)
        fed = m.run(x, sample=False, predictive=True, feed_prob=1e-30)
        for got in (r, fed):
            torch.testing.assert_close(got["pred_mean"], mean)
            torch.testing.assert_close(got["pred_var"], var)
        terms = m.elbo(x, sample=False, return_terms=True, predictive=True)
        ae = ((x - mean) / m.dx_scale)[:, 2:].abs().mean((1, 2))
        torch.testing.assert_close(terms[3], ae)
        assert len(m.elbo(x, sample=False, return_terms=True)) == 3
        assert "pred_mean" not in m.run(x, sample=False)
    m_is, p = _module(cls, "itakura_saito")
    with pytest.raises(ValueError, match="Gaussian"):
        m_is.elbo(p, return_terms=True, predictive=True)
