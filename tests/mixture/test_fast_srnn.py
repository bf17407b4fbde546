"""Fast SRNN paths of the VEM against the torch module in float64, and the fused bound."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mixest.dvae._modules import SRNN  # noqa: E402
from mixest.mixture._dynamics import gaussian_product  # noqa: E402
from mixest.mixture._numpy_srnn import NumpySRNN  # noqa: E402

CONFIGS = [
    {},
    {"residual_order": 1},
    {"residual_order": 0, "encoder_rnn": False, "velocity_input": False},
    {"dense_dims": (), "residual_order": 2},
    {"z_dim": 3, "rnn_dim": 5, "dense_dims": (7,), "residual_order": 1},
    {"residual_order": 1, "gated_extrapolation": True},
    {"residual_order": 1, "gated_extrapolation": True, "velocity_input": False, "dense_dims": ()},
    {"noise_level_input": True},
    {"residual_order": 1, "gated_extrapolation": True, "noise_level_input": True},
]


def _module(config, seed=0):
    torch.manual_seed(seed)
    m = SRNN(4, **config).double().eval()
    rng = np.random.default_rng(seed)
    X = torch.as_tensor(0.5 + 0.02 * rng.standard_normal((20, 12, 4)).cumsum(1))
    m.set_normalization(X, min_std=0.002)
    with torch.no_grad():  # larger weights than the default init: exercise the nonlinearities
        for p in m.parameters():
            p.mul_(2.0)
        if m.noise_level_input:  # a level that is neither 0 nor the default 1
            m.noise_level.fill_(0.3)
    return m


def _trajectories(rng, M=6, T=9):
    return 0.5 + 0.02 * rng.standard_normal((M, T, 4)).cumsum(1)


@pytest.mark.parametrize("config", CONFIGS)
def test_encode_fast_equals_torch(config):
    module = _module(config)
    twin = NumpySRNN(module)
    rng = np.random.default_rng(1)
    x = _trajectories(rng)
    with torch.no_grad():
        _, zm_t, zlv_t = module.encode(torch.as_tensor(x))
    z, zm, zlv = twin.encode_fast(x)
    np.testing.assert_allclose(zm, zm_t.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(zlv, zlv_t.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(z, zm)
    # sampled, R = 2 latent rows per trajectory: z = mean + std * eps fed forward as z_{t-1}
    eps = rng.standard_normal((2 * len(x), x.shape[1], module.z_dim))
    z2, zm2, _ = twin.encode_fast(x, 2, eps)
    ref = twin.encode(np.repeat(x, 2, axis=0), rng=_Fixed(eps))
    np.testing.assert_allclose(z2, ref[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(zm2, ref[1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_time_major_features_equal_the_numpy_features(config, dtype):
    # the compiled features of the fast paths against the whole-array NumPy version, with large
    # accelerations so that the arcsinh is nonlinear: to rounding in float64; in float32
    # within a rounding of the float32 value (the arcsinh is computed from its own logarithm)
    twin = NumpySRNN(_module(config), dtype)
    x = _trajectories(np.random.default_rng(2), M=5, T=7)
    x[2, 3] += 0.3
    ref = twin._sequence_features(x).transpose(1, 0, 2)
    out = twin._time_major_features(x)
    assert out.dtype == dtype and out.shape == ref.shape
    if dtype == np.float64:
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
    else:
        ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(float)
        assert np.all(np.abs(out - ref) <= 2 * ulp + 2.5e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorised_tanh_exp_and_arcsinh_against_numpy(dtype):
    """The kernels' float32 tanh, exp and arcsinh (rational fit, range reduction, logarithm from
    the float's bits) within a few float32 roundings of NumPy's float64; float64 exact."""
    import numba

    from mixest._kernels._float32 import arcsinh_into, exp_into, tanh

    @numba.njit
    def tanh_all(v, out):
        for i in range(v.shape[0]):
            out[i] = tanh(v[i])

    v = np.concatenate([np.linspace(-12.0, 12.0, 200_001), [0.0, -1e-30, 1e-8, 30.0, -1e4]])
    tol = 4 * np.finfo(np.float32).eps if dtype == np.float32 else 1e-15  # 4.8e-7
    out = np.empty(v.shape, dtype)
    tanh_all(v.astype(dtype), out)
    ref = np.tanh(v.astype(dtype).astype(float))
    assert np.max(np.abs(out - ref)) <= tol  # |tanh| <= 1: absolute error
    lv = np.linspace(-80.0, 12.0, 100_001)  # log-variances, and softmax scores (E-W)
    exp_into(lv.astype(dtype), out[: lv.size])
    ref = np.exp(lv.astype(dtype).astype(float))
    assert np.max(np.abs(out[: lv.size] / ref - 1.0)) <= tol
    a = np.concatenate([v, -np.logspace(-12, 12, 1001), np.logspace(-12, 12, 1001)])
    out = np.empty(a.shape, dtype)
    arcsinh_into(a, out)
    ref = np.arcsinh(a)
    err = np.abs(out - ref)
    assert np.all(err <= tol * np.maximum(np.abs(ref), 1.0)), err.max()


class _Fixed:
    """A stand-in generator returning pre-drawn noise frame by frame (NumpySRNN.encode)."""

    def __init__(self, eps):
        self.eps, self.t = eps, 0

    def standard_normal(self, shape):
        self.t += 1
        return self.eps[:, self.t - 1]


def _torch_forward(module, iv, ip, z, R, propagate):
    """E-S forward pass with the torch module stepped frame by frame (DVAEDynamics' logic)."""
    M, T, D = iv.shape
    order = module.residual_order
    state = module.initial_state(M * R)
    x = s1 = s2 = s3 = None
    out = [np.empty((M, T, D)) for _ in range(4)]
    with torch.no_grad():
        for t in range(T):
            z_t = torch.as_tensor(z[:, t])
            mu, var, state = module.decode_step(x, z_t, state)
            mu, var = mu.numpy().reshape(M, R, D), var.numpy().reshape(M, R, D)
            m_bar = mu.mean(1)
            var = (var + mu**2).mean(1) - m_bar**2
            if propagate and module.gated_extrapolation and t >= 2:
                # mu_t = (1 + g_v + g_a) m_{t-1} - (g_v + 2 g_a) m_{t-2} + g_a m_{t-3} + ...
                gates = module.emission_gates(state.h, z_t)
                g_v, g_a = (g.numpy().reshape(M, R, D) for g in gates)
                g_a = g_a * (t >= 3)
                var = var + ((1 + g_v + g_a) ** 2).mean(1) * s1
                var = var + ((g_v + 2 * g_a) ** 2).mean(1) * s2
                if t >= 3:
                    var = var + (g_a**2).mean(1) * s3
            elif propagate and s1 is not None:
                if order == 2 and s2 is not None:
                    var = var + 4.0 * s1 + s2
                elif order >= 1:
                    var = var + s1
            m, s = gaussian_product(m_bar, var, iv[:, t], ip[:, t])
            for a, v in zip(out, (m, s, m_bar, var), strict=True):
                a[:, t] = v
            x = torch.as_tensor(np.repeat(m, R, axis=0))
            s1, s2, s3 = s, s1, s2
    return out


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("R", [1, 3])
def test_forward_pass_equals_torch(config, R):
    module = _module(config, seed=2)
    twin = NumpySRNN(module)
    rng = np.random.default_rng(3)
    M, T = 5, 8
    x = _trajectories(rng, M, T)
    ip = rng.uniform(0, 3e4, (M, T, 4)) * (rng.random((M, T, 1)) > 0.3)
    iv = ip * (x + 0.01 * rng.standard_normal(x.shape))
    z = rng.standard_normal((M * R, T, module.z_dim))
    for propagate in (True, False):
        got = twin.forward_pass(iv, ip, z, R, propagate)
        ref = _torch_forward(module, iv, ip, z, R, propagate)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", CONFIGS[:2] + CONFIGS[3:4] + CONFIGS[5:6])
def test_float32_fast_paths_equal_float32_torch(config):
    """The float32 twin (the tracker's default) against the module run in float32."""
    module = _module(config, seed=4)
    twin64, twin32 = NumpySRNN(module), NumpySRNN(module, np.float32)
    module = module.float()
    rng = np.random.default_rng(5)
    x = _trajectories(rng, 6, 10)
    with torch.no_grad():
        _, zm_t, zlv_t = module.encode(torch.as_tensor(x, dtype=torch.float32))
    z, zm, zlv = twin32.encode_fast(x)
    assert zm.dtype == np.float32
    # the gated model's acceleration and jerk features divide differences of positions by a
    # small unit: the twin forms them from float64 inputs, torch from float32 ones
    atol = 1e-4 if config.get("gated_extrapolation") else 2e-5
    np.testing.assert_allclose(zm, zm_t.numpy(), rtol=1e-4, atol=atol)
    np.testing.assert_allclose(zlv, zlv_t.numpy(), rtol=1e-4, atol=atol)
    ip = rng.uniform(0, 3e4, x.shape) * (rng.random(x.shape[:2] + (1,)) > 0.3)
    iv = ip * (x + 0.01 * rng.standard_normal(x.shape))
    got = twin32.forward_pass(iv, ip, z, 1, True)
    ref = twin64.forward_pass(iv, ip, z.astype(float), 1, True)
    for a, b in zip(got, ref, strict=True):
        assert a.dtype == np.float64  # trajectories and variances stay in float64
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="dtype"):
        NumpySRNN(module, np.float16)


def test_bound_kernel_equals_numpy():
    """The detections' bound term (Numba) against its NumPy twin, and the dynamics' term
    against the closed form of E[log N(s; mu, v)] + H(N(m, s)) written out."""
    from mixest._kernels._bound import expected_log_likelihood_diag
    from mixest.mixture import Dynamics
    from mixest.tracking._observation import expected_log_likelihood_numpy

    rng = np.random.default_rng(0)
    B, T, K, N, D = 3, 7, 4, 3, 4
    obs = rng.random((B, T, K, D))
    valid = rng.random((B, T, K)) > 0.3
    obs[~valid] = np.nan
    phi = rng.uniform(1e-4, 1e-2, (B, T, K, D))
    means, covs = rng.random((B, T, N, D)), rng.uniform(1e-5, 1e-3, (B, T, N, D))
    pm, pv = rng.random((B, T, N, D)), rng.uniform(1e-4, 1e-2, (B, T, N, D))
    for clutter in (False, True):
        C = N + clutter
        eta = rng.dirichlet(np.ones(C), (B, T, K)) * valid[..., None]
        eta[0, 0, 0] = 0.0  # exact zeros: 0 log 0 = 0
        eta[0, 0, 0, 0] = float(valid[0, 0, 0])
        lp = np.log(rng.dirichlet(np.ones(C), B))
        for log_clutter in (-0.3, rng.normal(0.0, 2.0, (B, T, K))):
            args = (obs, valid, phi, means, covs, eta, lp, log_clutter)
            np.testing.assert_allclose(expected_log_likelihood_diag(*args),
                                       expected_log_likelihood_numpy(*args), rtol=1e-12)
    prior = Dynamics().expected_log_prior(means, covs, pm, pv)
    written = sum(-0.5 * np.log(2 * np.pi * pv[:, t, n, d])
                  - 0.5 * ((means[:, t, n, d] - pm[:, t, n, d]) ** 2 + covs[:, t, n, d])
                  / pv[:, t, n, d] + 0.5 * np.log(2 * np.pi * np.e * covs[:, t, n, d])
                  for t in range(T) for n in range(N) for d in range(D))
    np.testing.assert_allclose(prior, written, rtol=1e-12)


@pytest.mark.parametrize("config", CONFIGS)
def test_encoder_reuses_the_e_s_hidden_states(config):
    """E-S feeds the decoder its own means: its LSTM states are the encoder's on those means."""
    module = _module(config, seed=4)
    twin = NumpySRNN(module)
    rng = np.random.default_rng(5)
    M, T, R = 4, 10, 2
    x = _trajectories(rng, M, T)
    ip = rng.uniform(0, 3e4, (M, T, 4))
    iv = ip * x
    z = rng.standard_normal((M * R, T, module.z_dim))
    means, *_, hidden = twin.forward_pass(iv, ip, z, R, return_hidden=True)
    with torch.no_grad():
        _, zm_t, _ = module.encode(torch.as_tensor(means))
    _, zm, _ = twin.encode_fast(means, hidden=hidden)
    np.testing.assert_allclose(zm, zm_t.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(zm, twin.encode_fast(means)[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("R", [1, 3])
def test_gated_dynamics_fused_pass_equals_step_by_step(smooth, R):
    """Gated extrapolation inside DVAEDynamics: the fused E-S pass (Numba kernel, coefficients
    for the smoother from the kernel) equals the step-by-step pass (gates from the twin,
    coefficients collected frame by frame), filter and smoother, one and three latent rows."""
    from mixest.mixture._dynamics import DVAEDynamics
    from mixest.mixture._vem import e_step_s

    module = _module(CONFIGS[5], seed=6).float()
    rng = np.random.default_rng(7)
    x = _trajectories(rng, 4, 10)
    ip = rng.uniform(1e3, 1e5, x.shape) * (rng.random(x.shape[:2] + (1,)) > 0.3)
    iv = ip * (x + 0.01 * rng.standard_normal(x.shape))
    out = []
    for fused in (True, False):
        dyn = DVAEDynamics(module, n_samples=R, sample=R > 1, precision="float64", smooth=smooth)
        assert dyn.twin is not None and dyn.gated
        if not fused:
            dyn.forward_pass = lambda *args: None  # e_step_s falls back to begin/predict/update
        dyn.infer_latents(x, np.random.default_rng(8))
        out.append(e_step_s(dyn, iv[:, :, None], ip[:, :, None], x[:, 0][:, None]))
    for got, ref in zip(*out, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-13)
    if smooth:  # the smoother moved the filtered means
        dyn.do_smooth = False
        dyn.forward_pass = lambda *args: None
        dyn.infer_latents(x, np.random.default_rng(8))
        filtered = e_step_s(dyn, iv[:, :, None], ip[:, :, None], x[:, 0][:, None])
        assert np.abs(filtered[0] - out[0][0]).max() > 1e-6


def test_gated_dynamics_torch_backend_matches_the_twin():
    """The torch step-by-step path (gates from ``emission_gates``) against the fused twin pass,
    smoother on: the same model in float32 and float64."""
    from mixest.mixture._dynamics import DVAEDynamics
    from mixest.mixture._vem import e_step_s

    module = _module(CONFIGS[5], seed=9).float()
    rng = np.random.default_rng(10)
    x = _trajectories(rng, 3, 9)
    ip = rng.uniform(1e3, 1e5, x.shape) * (rng.random(x.shape[:2] + (1,)) > 0.3)
    iv = ip * (x + 0.01 * rng.standard_normal(x.shape))
    out = []
    for backend in ("numpy", "torch"):
        dyn = DVAEDynamics(module, backend=backend, precision="float64", smooth=True)
        dyn.infer_latents(x, np.random.default_rng(0))
        out.append(e_step_s(dyn, iv[:, :, None], ip[:, :, None], x[:, 0][:, None]))
    for got, ref in zip(*out, strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dynamics_noise_level_runs_a_copy_at_that_level(backend):
    """``DVAEDynamics(noise_level=u)`` gives the E-S pass of the module whose ``noise_level``
    buffer is ``u`` (the twin folds the constant feature into its input bias), and leaves the
    module it was given alone."""
    import copy

    from mixest.mixture._dynamics import DVAEDynamics
    from mixest.mixture._vem import e_step_s

    module = _module(CONFIGS[-1], seed=11).float()
    at_07 = copy.deepcopy(module)
    at_07.noise_level.fill_(0.7)
    rng = np.random.default_rng(12)
    x = _trajectories(rng, 3, 9)
    ip = rng.uniform(1e3, 1e5, x.shape)
    iv = ip * (x + 0.01 * rng.standard_normal(x.shape))
    out = []
    for mod, level in ((module, 0.7), (at_07, None), (module, None)):
        dyn = DVAEDynamics(mod, backend=backend, precision="float64", noise_level=level)
        dyn.infer_latents(x, np.random.default_rng(0))
        out.append(e_step_s(dyn, iv[:, :, None], ip[:, :, None], x[:, 0][:, None]))
    assert float(module.noise_level) == pytest.approx(0.3)  # untouched
    for got, ref in zip(out[0], out[1], strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    assert np.abs(out[0][2] - out[2][2]).max() > 1e-6  # the level changes the predictions


def test_dynamics_noise_level_errors():
    from mixest.mixture._dynamics import DVAEDynamics

    with pytest.raises(ValueError, match="noise_level_input=True"):
        DVAEDynamics(_module(CONFIGS[5]), noise_level=0.5)
    with pytest.raises(ValueError, match="finite number >= 0"):
        DVAEDynamics(_module(CONFIGS[-1]), noise_level=-1.0)
