"""MixDVAESeparator, its observation model and dynamics, and the E-W kernel."""

from __future__ import annotations

import numpy as np
import pytest

from mixest._kernels._spectral import (
    additive_powers,
    additive_powers_numpy,
    expected_power,
    expected_power_numpy,
    feed_terms,
    feed_terms_numpy,
    source_posteriors,
    source_posteriors_numpy,
    spectral_data_bound,
    spectral_e_w,
    spectral_e_w_numpy,
    spectral_evidence,
    spectral_evidence_numpy,
    spectral_prior_bound,
)
from mixest.dvae import DVAE, Network
from mixest.mixture import run_vem
from mixest.separation import MixDVAESeparator, istft, si_sdr, stft
from mixest.separation._additive import additive_em, joint_posterior
from mixest.separation._base import fade_weights, peak_levels, segment_bounds
from mixest.separation._vem_models import (
    ComplexGaussianBins,
    SpectralDVAEDynamics,
    sampled_power,
)

RATE = 16000


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# ---------------------------------------------------------------------- kernels
def test_e_w_kernel_equals_numpy_twin():
    rng = np.random.default_rng(0)
    B, T, N, F = 3, 7, 3, 11
    x = _complex(rng, (B, T, F))
    v_x = rng.uniform(0.01, 2.0, (B, T, F))
    means = _complex(rng, (B, T, N, F))
    covs = rng.uniform(0.01, 1.0, (B, T, N, F))
    log_prior = np.log(rng.dirichlet(np.ones(N), size=B))
    eta = spectral_e_w(x, v_x, means, covs, log_prior)
    np.testing.assert_allclose(eta, spectral_e_w_numpy(x, v_x, means, covs, log_prior),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(eta.sum(axis=2), 1.0, atol=1e-12)


def test_evidence_and_e_s_kernels_equal_numpy_twins():
    rng = np.random.default_rng(3)
    B, T, N, F = 2, 6, 3, 9
    x, v_x = _complex(rng, (B, T, F)), rng.uniform(0.01, 2.0, (B, T, F))
    eta = rng.dirichlet(np.ones(N), size=(B, T, F)).transpose(0, 1, 3, 2)
    for got, want in zip(spectral_evidence(x, v_x, eta), spectral_evidence_numpy(x, v_x, eta),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    iv, ip = spectral_evidence_numpy(x, v_x, eta)
    for got, want in zip(feed_terms(iv, ip), feed_terms_numpy(iv, ip), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)
    nu = rng.uniform(0.0, 1.0, iv.shape)
    assert expected_power(iv, nu).dtype == np.float32
    np.testing.assert_allclose(expected_power(iv, nu), expected_power_numpy(iv, nu), rtol=1e-6)
    var = rng.uniform(1e-3, 5.0, iv.shape).astype(np.float32)
    for got, want in zip(source_posteriors(var, iv, ip), source_posteriors_numpy(var, iv, ip),
                         strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


def test_single_precision_sources_keep_their_precision_through_every_kernel():
    """complex64 sources (the separators' default) give float32 responsibilities, complex64 /
    float32 evidence and posteriors, each the double-precision twin's value rounded: the
    kernels compute in float64 and store in the sources' precision."""
    rng = np.random.default_rng(8)
    B, T, N, F = 2, 6, 2, 9
    x, v_x = _complex(rng, (B, T, F)), rng.uniform(0.01, 2.0, (B, T, F))
    means = _complex(rng, (B, T, N, F)).astype(np.complex64)
    covs = rng.uniform(0.01, 1.0, (B, T, N, F)).astype(np.float32)
    log_prior = np.log(rng.dirichlet(np.ones(N), size=B))
    eta = spectral_e_w(x, v_x, means, covs, log_prior)
    assert eta.dtype == np.float32
    np.testing.assert_allclose(eta, spectral_e_w_numpy(x, v_x, means.astype(complex),
                                                       covs.astype(float), log_prior),
                               rtol=1e-6, atol=1e-7)
    iv, ip = spectral_evidence(x, v_x, eta)
    assert (iv.dtype, ip.dtype) == (np.complex64, np.float32)
    for got, want in zip((iv, ip), spectral_evidence_numpy(x, v_x, eta.astype(float)),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    per_source = np.moveaxis(ip, 2, 1)  # the (B, N, T, F) layout the dynamics read
    assert feed_terms(np.moveaxis(iv, 2, 1), per_source)[0] is per_source  # not copied
    var = rng.uniform(1e-3, 5.0, iv.shape).astype(np.float32)
    mu, nu = source_posteriors(var, iv, ip)
    assert (mu.dtype, nu.dtype) == (np.complex64, np.float32)
    for got, want in zip((mu, nu), source_posteriors_numpy(var, iv, ip), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    bound64 = spectral_data_bound(x, v_x, means.astype(complex), covs.astype(float),
                                  eta.astype(float), log_prior)
    np.testing.assert_allclose(spectral_data_bound(x, v_x, means, covs, eta, log_prior),
                               bound64, rtol=1e-12)  # float64 sums of the same values
    prior64 = spectral_prior_bound(means.astype(complex), covs.astype(float), var.astype(float))
    np.testing.assert_allclose(spectral_prior_bound(means, covs, var), prior64, rtol=1e-12)
    v0 = rng.uniform(0.1, 1.0, (B, T, N, F))
    for dtype in (np.complex64, np.complex128):
        model = ComplexGaussianBins(initial_variances=v0, dtype=dtype)
        m0, c0 = model.initialize(*model.prepare(x, N), N, None, None)
        assert (m0.dtype, c0.dtype) == (np.dtype(dtype), np.zeros(1, dtype).real.dtype)
        np.testing.assert_allclose(m0.sum(axis=2), x, rtol=1e-6)  # Wiener filters of x
    with pytest.raises(ValueError, match="dtype"):
        ComplexGaussianBins(dtype=np.float32)


def test_kernels_read_either_layout_and_hand_the_dynamics_views():
    """E-W and the evidence come in sequence-major memory, so the engine's ``(B * N, T, F)``
    batch of them is a view, not a copy; every kernel reads either memory layout alike."""
    rng = np.random.default_rng(6)
    B, T, N, F = 2, 5, 3, 7
    x, v_x = _complex(rng, (B, T, F)), rng.uniform(0.01, 2.0, (B, T, F))
    means = _complex(rng, (B, T, N, F))
    covs, var = rng.uniform(0.1, 1.0, (B, T, N, F)), rng.uniform(0.5, 2.0, (B, T, N, F))
    log_prior = np.log(rng.dirichlet(np.ones(N), size=B))

    def sequence_major(a):
        return np.ascontiguousarray(a.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)

    eta = spectral_e_w(x, v_x, means, covs, log_prior)
    np.testing.assert_array_equal(
        spectral_e_w(x, v_x, sequence_major(means), sequence_major(covs), log_prior), eta)
    for a in (eta, *spectral_evidence(x, v_x, eta)):
        assert np.shares_memory(np.moveaxis(a, 2, 1).reshape(B * N, T, F), a)
    want = spectral_data_bound(x, v_x, means, covs, np.ascontiguousarray(eta), log_prior)
    got = spectral_data_bound(x, v_x, sequence_major(means), sequence_major(covs), eta,
                              log_prior)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        spectral_prior_bound(sequence_major(means), sequence_major(covs), sequence_major(var)),
        spectral_prior_bound(means, covs, var))


@pytest.mark.parametrize(("dtype", "arrays"), [(np.complex128, 13), (np.complex64, 8)])
def test_audio_vem_holds_one_iterate(disjoint_priors, dtype, arrays):
    """With ``keep="last"`` the engine frees the previous iterate before E-S and the dynamics
    read views of the evidence: the VEM's peak NumPy memory is about ten float64 arrays of the
    sources' shape in double precision (21 when the previous iterate and copies of the evidence
    were held through E-S), about six and a half with single-precision sources."""
    import tracemalloc

    modules = [prior.module_ for prior in disjoint_priors]
    rng = np.random.default_rng(7)
    B, T, F = 4, 40, modules[0].x_dim
    S = _complex(rng, (B, T, F))

    def run():
        return run_vem(S, ComplexGaussianBins(dtype=dtype), SpectralDVAEDynamics(modules),
                       n_sources=2, max_iter=3, tol=0, keep="last")

    run()  # compiled kernels and their caches are not what is measured
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    unit = B * T * 2 * F * np.dtype(float).itemsize  # one float64 array of shape (B, T, N, F)
    assert peak < arrays * unit, peak / unit


def test_srnn_priors_separate_in_threads_alike_and_leave_torch_threads_as_they_were(
        disjoint, monkeypatch):
    """With SRNN priors n_jobs runs the batches in threads of this process (their E-S pass is
    compiled and releases the interpreter lock), with the sequential separation; torch's
    thread count is restored after. Other priors run in processes."""
    import copy
    import threading
    import types

    import torch

    sep, X, _ = disjoint
    sep = copy.deepcopy(sep).set_params(batch_size=1, max_iter=3)
    assert sep._workers() == "threads"
    want = sep.transform(X)
    ran_in = []
    separate = type(sep)._separate_spectra
    monkeypatch.setattr(type(sep), "_separate_spectra", lambda self, *a: (
        ran_in.append(threading.get_ident()) or separate(self, *a)))
    threads = torch.get_num_threads()
    got = sep.set_params(n_jobs=2).transform(X)
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(got, want)
    assert len(ran_in) == len(X)  # every batch ran here, in a thread of this process
    vrnn = copy.deepcopy(sep)
    vrnn.priors_ = [types.SimpleNamespace(module_=_spectral_module("vrnn"))] * 2
    assert vrnn._workers() == "processes"


def _evidence(rng, shape):
    """Random information-form evidence ``(eta x / v_x, eta / v_x)`` of sources' bins."""
    x, v_x = _complex(rng, shape), rng.uniform(0.05, 2.0, shape)
    ip = rng.uniform(0.0, 1.0, shape) / v_x
    return ip * x, ip


@pytest.mark.parametrize("priors", ["trained", "srnn", "vrnn"])
def test_e_s_pass_equals_the_recursion_run_by_hand(priors, request):
    """The E-S pass against decode_step fed by hand with |mu|^2 + nu in float64: the trained
    SRNN priors and two small random SRNNs (the compiled stacked pass), two small VRNNs (the
    per-source Python loop)."""
    import torch

    rng = np.random.default_rng(4)
    if priors == "trained":
        modules = [prior.module_ for prior in request.getfixturevalue("disjoint_priors")]
    else:
        modules = [_spectral_module(priors, True, seed) for seed in (0, 1)]
    B, T, F = 2, 5, modules[0].x_dim
    N = len(modules)
    iv, ip = _evidence(rng, (B * N, T, F))
    dyn = SpectralDVAEDynamics(modules)
    assert bool(dyn._stacked) == (priors != "vrnn")
    dyn.start_batch(B * N, N, rng)
    dyn.infer_latents(iv / np.maximum(ip, 1e-3), rng, covs=np.ones(ip.shape))
    mu, nu, _, var = dyn.forward_pass(iv, ip, None)
    for n, module in enumerate(modules):
        rows = np.arange(n, B * N, N)
        state, fed = module.initial_state(B), None
        for t in range(T):
            with torch.no_grad():
                _, v, state = module.decode_step(fed, dyn._z[n][:, t], state)
            v = v.double().numpy()
            nu_t = v / (1.0 + v * ip[rows, t])
            mu_t = nu_t * iv[rows, t]
            # float32 products with stacked, folded weights (StackedSRNNPass): rounding only
            np.testing.assert_allclose(var[rows, t], v, rtol=1e-5)
            np.testing.assert_allclose(nu[rows, t], nu_t, rtol=1e-5)
            np.testing.assert_allclose(mu[rows, t], mu_t, rtol=1e-5)
            fed = torch.as_tensor(np.abs(mu_t) ** 2 + nu_t, dtype=torch.float32)


def _spectral_module(architecture="srnn", log_input=True, seed=0, **kw):
    import torch

    from mixest.dvae._modules import build_module

    torch.manual_seed(seed)
    return build_module({"architecture": architecture, "x_dim": 9, "z_dim": 3, "rnn_dim": 5,
                         "dense_dims": (7,), "likelihood": "itakura_saito",
                         "log_input": log_input, **kw}).eval()


@pytest.mark.parametrize("log_input", [True, False])
def test_stacked_step_equals_decode_step(log_input):
    """The compiled E-S step of two SRNN priors of one shape stacked (their standardisation and
    variance map folded into the weights) gives each module's own variances and LSTM states
    over a run of frames."""
    import torch

    from mixest._torchscript import scripted
    from mixest.separation._stacked_srnn import StackedSRNNPass, srnn_step

    modules = [_spectral_module("srnn", log_input, seed) for seed in (0, 1)]
    stacked = SpectralDVAEDynamics(modules)._stacked[0, 2]
    assert isinstance(stacked, StackedSRNNPass)
    B, T = 4, 6
    z = [torch.randn(B, T, 3) for _ in modules]
    fed_all = torch.rand(len(modules), B, T, 9) * 3.0
    step = scripted(srnn_step)
    with torch.no_grad():
        z_part = stacked.z_part(z)
        h = c = torch.zeros(len(modules), B, 5)
        fed, refs = None, [m.initial_state(B) for m in modules]
        for t in range(T):
            v, h, c = step(fed, z_part[:, :, t], h, c, stacked.weights)
            for n, module in enumerate(modules):
                _, v_ref, refs[n] = module.decode_step(None if fed is None else fed[n],
                                                       z[n][:, t], refs[n])
                torch.testing.assert_close(v[n], v_ref, rtol=2e-5, atol=0)
                torch.testing.assert_close(h[n], refs[n].h, rtol=1e-5, atol=1e-6)
            fed = fed_all[:, :, t]


@pytest.mark.parametrize("feed", ["expected", "sample"])
def test_compiled_e_s_pass_equals_the_same_code_run_by_python(feed):
    """TorchScript runs the pass's operations as Python would: the same variances, powers fed
    and LSTM states, and with the sampled feed the same draws from the same generator."""
    import torch

    from mixest._torchscript import scripted
    from mixest.separation._stacked_srnn import srnn_pass

    compiled = scripted(srnn_pass)
    assert isinstance(compiled, torch.jit.ScriptFunction)
    modules = [_spectral_module("srnn", True, seed) for seed in (0, 1)]
    stacked = SpectralDVAEDynamics(modules)._stacked[0, 2]
    k, B, T, F = 2, 3, 7, 9
    gen = torch.Generator().manual_seed(0)
    prec, power, re, im = (torch.rand(k, B, T, F, generator=gen) for _ in range(4))
    iv = (re, im) if feed == "sample" else (None, None)
    outs = []
    for fn in (srnn_pass, compiled):
        out = (torch.empty(k, B, T, F), torch.empty(k, B, T, F), torch.empty(k, B, T, 5))
        with torch.no_grad():
            fn(prec, power, stacked.z_part([torch.ones(B, T, 3), -torch.ones(B, T, 3)]),
               stacked.weights, *out, *iv,
               torch.Generator().manual_seed(1))
        outs.append(out)
    for got, want in zip(*outs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


def test_latent_chain_compiled_for_inference_equals_autograd_run():
    """E-Z's posterior chain runs compiled under no_grad and as Python under autograd: the
    same latents (means, and draws from the same generator)."""
    import torch

    from mixest._torchscript import scripted
    from mixest.dvae._modules import latent_chain

    assert isinstance(scripted(latent_chain), torch.jit.ScriptFunction)
    module = _spectral_module("srnn", True, 0)
    x = torch.rand(3, 8, 9) * 2.0
    for sample in (False, True):
        with torch.no_grad():
            z_inf = module.encode(x, sample=sample, generator=torch.Generator().manual_seed(2))
        z_grad = module.encode(x, sample=sample, generator=torch.Generator().manual_seed(2))
        assert z_grad[0].requires_grad
        for got, want in zip(z_inf, z_grad, strict=True):
            torch.testing.assert_close(got, want.detach(), rtol=1e-6, atol=1e-7)


def test_scripted_runs_python_without_source_and_raises_what_torchscript_refuses():
    import torch

    from mixest._torchscript import scripted

    namespace = {"__name__": "generated"}
    exec("def add(a: int, b: int) -> int:\n    return a + b\n", namespace)  # no source file
    assert scripted(namespace["add"]) is namespace["add"]

    def varargs(*tensors):  # TorchScript compiles no *args: a bug to report, not to hide
        return sum(tensors)

    with pytest.raises(torch.jit.frontend.NotSupportedError):
        scripted(varargs)


def test_scripted_compiles_once_for_threads_asking_together():
    import threading

    from mixest._torchscript import scripted

    def triple(x: int) -> int:
        return 3 * x

    barrier, got = threading.Barrier(4), []

    def ask():
        barrier.wait()
        got.append(scripted(triple))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and all(f is got[0] for f in got) and got[0](2) == 6


def test_stacked_pass_groups_priors_of_one_shape():
    from mixest.separation._stacked_srnn import StackedSRNNPass

    small, other_small = _spectral_module(seed=0), _spectral_module(seed=1)
    power_input = _spectral_module(log_input=False)
    wide = _spectral_module(rnn_dim=6)
    vrnn = _spectral_module("vrnn")
    groups = StackedSRNNPass.groups
    assert groups([small, other_small]) == [(0, 2)]
    assert groups([small, other_small, small]) == [(0, 3)]
    assert groups([small, wide]) == [(0, 1), (1, 2)]
    assert groups([small, power_input]) == [(0, 1), (1, 2)]  # the input is read differently
    assert groups([vrnn, vrnn]) == [(0, 1), (1, 2)]
    assert groups([small, vrnn, small, other_small]) == [(0, 1), (1, 2), (2, 4)]


def test_powers_agree_is_an_elementwise_relative_test():
    from mixest._kernels._spectral import powers_agree

    rng = np.random.default_rng(0)
    b = rng.uniform(1e-12, 10.0, (3, 4, 5)).astype(np.float32)
    for scale in (0.0, 0.5e-4, 2e-4):
        a = b * (1.0 + scale * rng.choice([-1.0, 1.0], b.shape)).astype(np.float32)
        expected = bool(np.all(np.abs(a - b) <= 1e-4 * np.abs(b)))
        assert powers_agree(a, b, 1e-4) == expected
    assert powers_agree(b, b, 0.0)
    assert not powers_agree(b[:2], b, 1e-4)  # shapes differ
    c = b.copy()
    c[1, 2, 3] = np.nan
    assert not powers_agree(c, b, 1e-4) and not powers_agree(b, c, 1e-4)


def test_e_z_reuses_the_e_s_states_only_when_it_reads_what_e_s_fed(disjoint_priors):
    """E-Z after E-S takes the LSTM states E-S computed (it would compute the same states: the
    same latents to float32 rounding); with other powers, or the sampled feed, it runs the LSTM
    itself."""
    import torch

    rng = np.random.default_rng(3)
    modules = [prior.module_ for prior in disjoint_priors]
    B, T, F = 2, 6, modules[0].x_dim
    N = len(modules)
    iv, ip = _evidence(rng, (B * N, T, F))
    for feed in ("expected", "sample"):
        dyn = SpectralDVAEDynamics(modules, feed=feed)
        dyn.start_batch(B, N, np.random.default_rng(0))
        dyn.infer_latents(iv / np.maximum(ip, 1e-3), rng, covs=np.ones(ip.shape))
        mu, nu, _, _ = dyn.forward_pass(iv, ip, None)
        power = dyn._per_source(np.abs(mu) ** 2 + nu).astype(np.float32)
        for n, module in enumerate(modules):
            reused = dyn._teacher_forced(n, torch.as_tensor(np.ascontiguousarray(power[:, n])))
            if feed == "sample":
                assert reused is None
                continue
            with torch.no_grad():
                own = module._hidden_teacher_forced(torch.as_tensor(power[:, n]))
            torch.testing.assert_close(reused, own, rtol=1e-4, atol=1e-5)
            assert dyn._teacher_forced(n, torch.as_tensor(power[:, n] * 1.01)) is None
        if feed == "expected":
            calls = []
            for module in modules:  # count the LSTM passes E-Z runs itself
                module._hidden_teacher_forced = (
                    lambda *a, _own=module._hidden_teacher_forced, _calls=calls:
                    _calls.append(1) or _own(*a))
            try:
                dyn.infer_latents(mu, rng, covs=nu)  # reads what E-S fed: reuses its states
                assert (len(calls), dyn._teacher) == (0, {})  # and only once
                z_reused = [z.clone() for z in dyn._z]
                dyn.infer_latents(mu, rng, covs=nu)
                assert len(calls) == N
            finally:
                for module in modules:
                    del module._hidden_teacher_forced
            for z_new, z_old in zip(dyn._z, z_reused, strict=True):
                torch.testing.assert_close(z_new, z_old, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("log_input", "encoder_input"),
                         [(True, "hx"), (False, "hx"), (True, "x")])
def test_stacked_encode_equals_each_module_encode(log_input, encoder_input):
    """E-Z of SRNN priors stacked (standardisation folded, the feature layer's tanh as a
    sigmoid whose affine map the backward LSTM's copy absorbs) gives each module's own
    latents: the posterior means, and with one prior the same draws from the same generator."""
    import torch

    from mixest.separation._stacked_srnn import StackedSRNNPass

    modules = [_spectral_module("srnn", log_input, seed, encoder_input=encoder_input)
               for seed in (0, 1)]
    power = torch.rand(2, 3, 7, 9) * 2.0
    with torch.no_grad():
        hidden = torch.stack([m._hidden_teacher_forced(p)
                              for m, p in zip(modules, power, strict=True)])
        z = StackedSRNNPass(modules).encode(power, hidden)
        for n, module in enumerate(modules):
            torch.testing.assert_close(z[n], module.encode(power[n])[0], rtol=1e-5, atol=1e-6)
        drawn = StackedSRNNPass(modules[:1]).encode(
            power[:1], hidden[:1], sample=True, generator=torch.Generator().manual_seed(4))
        own = modules[0].encode(power[0], sample=True,
                                generator=torch.Generator().manual_seed(4))[0]
        torch.testing.assert_close(drawn[0], own, rtol=1e-5, atol=1e-6)
    assert not torch.equal(drawn[0], z[0])  # the draws are not the means


@pytest.mark.parametrize(("log_input", "encoder_input"),
                         [(True, "hx"), (False, "hx"), (True, "x")])
def test_stacked_reconstruction_equals_each_module_run(log_input, encoder_input):
    """DVAE-init's and the additive model's reconstruction by stacked priors over whole
    sequences equals each module's teacher-forced run, from one frame up."""
    import torch

    from mixest.separation._stacked_srnn import StackedSRNNPass

    modules = [_spectral_module("srnn", log_input, seed, encoder_input=encoder_input)
               for seed in (0, 1)]
    stacked = StackedSRNNPass(modules)
    for T in (1, 7):
        power = torch.rand(2, 3, T, 9) * 2.0
        with torch.no_grad():
            got = stacked.reconstruct(power)
            for n, module in enumerate(modules):
                want = module.run(power[n], sample=False)["x_var"]
                torch.testing.assert_close(got[n], want, rtol=1e-4, atol=0)


def test_priors_without_the_backward_encoder_lstm_keep_their_own_e_z_and_reconstruction():
    """Stacked priors whose encoder has no backward LSTM run E-S stacked, and E-Z and the
    reconstructions through each module (the stacked ones refuse them)."""
    import torch

    from mixest.separation._stacked_srnn import StackedSRNNPass

    modules = [_spectral_module("srnn", True, seed, encoder_rnn=False) for seed in (0, 1)]
    dyn = SpectralDVAEDynamics(modules)
    stacked = dyn._stacked[0, 2]
    assert isinstance(stacked, StackedSRNNPass) and not stacked.encodes
    power = torch.rand(2, 3, 5, 9) * 2.0
    for method in (stacked.reconstruct, lambda p: stacked.encode(p, torch.zeros(2, 3, 5, 5))):
        with pytest.raises(ValueError, match="backward LSTM"):
            method(power)
    powers = power.permute(1, 2, 0, 3).numpy()  # (B, T, N, F)
    got = dyn.reconstruct_each(powers)
    with torch.no_grad():
        for n, module in enumerate(modules):
            want = module.run(power[n], sample=False)["x_var"].double().numpy()
            np.testing.assert_allclose(got[:, :, n], want, rtol=1e-12)


def test_sigmoid_form_of_a_tanh_network_computes_the_same_function():
    """tanh(u) = 2 sigmoid(2u) - 1, the affine map absorbed by the next layer or the reader."""
    import torch

    from mixest.separation._stacked_srnn import _sigmoid_form

    g = torch.Generator().manual_seed(0)
    layers = [(torch.randn(5, 4, generator=g), torch.randn(4, generator=g), True),
              (torch.randn(4, 6, generator=g), torch.randn(6, generator=g), True),
              (torch.randn(6, 3, generator=g), torch.randn(3, generator=g), False)]
    x = torch.randn(8, 5, generator=g)

    def run(layers, act, x):
        for w, b, flag in layers:
            x = x @ w + b
            x = act(x) if flag else x
        return x

    want = run(layers, torch.tanh, x)
    form, _ = _sigmoid_form(layers)
    torch.testing.assert_close(run(form, torch.sigmoid, x), want, rtol=1e-5, atol=1e-5)
    form, (w, b) = _sigmoid_form(layers[:2], (layers[2][0], layers[2][1]))
    torch.testing.assert_close(run(form, torch.sigmoid, x) @ w + b, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="reads it"):
        _sigmoid_form(layers[:2])


def test_encode_with_known_states_equals_encode():
    import torch

    module = _spectral_module()
    x = torch.rand(3, 7, 9) * 2.0
    with torch.no_grad():
        hidden = module._hidden_teacher_forced(x)
        for got, ref in zip(module.encode(x, hidden=hidden), module.encode(x), strict=True):
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
        with pytest.raises(ValueError, match="hidden must have shape"):
            module.encode(x, hidden=hidden[:, :-1])
        with pytest.raises(ValueError, match="SRNN"):
            _spectral_module("vrnn").encode(x, hidden=hidden)


def test_bound_terms_equal_their_formulas():
    rng = np.random.default_rng(1)
    B, T, N, F = 2, 5, 2, 6
    x, means = _complex(rng, (B, T, F)), _complex(rng, (B, T, N, F))
    v_x = rng.uniform(0.1, 1.0, (B, T, F))
    covs, var = rng.uniform(0.1, 1.0, (B, T, N, F)), rng.uniform(0.5, 2.0, (B, T, N, F))
    log_prior = np.full((B, N), -np.log(N))
    eta = spectral_e_w_numpy(x, v_x, means, covs, log_prior)
    dist = np.abs(x[:, :, None] - means) ** 2 + covs
    expected = (eta * (log_prior[:, None, :, None] - np.log(np.pi * v_x[:, :, None])
                       - dist / v_x[:, :, None] - np.log(eta))).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(spectral_data_bound(x, v_x, means, covs, eta, log_prior),
                               expected, rtol=1e-12)
    # E_q[log N_c(s; 0, v)] + H(q): -log(pi v) - (|mu|^2 + nu) / v + log(pi e nu)
    prior = (-np.log(np.pi * var) - (np.abs(means) ** 2 + covs) / var
             + np.log(np.pi * np.e * covs)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(spectral_prior_bound(means, covs, var), prior, rtol=1e-12)


# ---------------------------------------------------------------------- a known answer
@pytest.fixture(scope="module")
def disjoint(disjoint_audio, disjoint_priors):
    """Two sources with disjoint frequency support, tiny priors trained on each."""
    train, X, y = disjoint_audio
    sep = MixDVAESeparator(priors=disjoint_priors, max_iter=20, random_state=0)
    sep.fit(train.sum(0)[None], train[None])
    return sep, X, y


def test_disjoint_sources_separated_above_20_db(disjoint):
    sep, X, y = disjoint
    est = sep.transform(X)
    assert est.shape == y.shape
    scores = si_sdr(y, est)
    assert scores.min() > 20, scores
    # the sources sum back to the mixture up to the model error
    assert si_sdr(X, est.sum(1)).min() > 20


def test_sampled_power_is_the_power_of_a_posterior_draw():
    import torch

    rng = np.random.default_rng(5)
    nu = torch.as_tensor(rng.uniform(0.1, 2.0, 4))
    iv = _complex(rng, 4)
    iv_re, iv_im = torch.as_tensor(iv.real), torch.as_tensor(iv.imag)
    gen = torch.Generator().manual_seed(0)
    # exactly |mu + sqrt(nu / 2) (a + ib)|^2 with the generator's normal draws a, b
    noise = torch.randn((2, 4), generator=torch.Generator().manual_seed(0), dtype=nu.dtype)
    mu = nu.numpy() * iv
    draw = mu + np.sqrt(nu.numpy() / 2) * (noise[0].numpy() + 1j * noise[1].numpy())
    np.testing.assert_allclose(sampled_power(nu, iv_re, iv_im, gen).numpy(), np.abs(draw) ** 2,
                               rtol=1e-12)
    # its mean is the expected power |mu|^2 + nu
    many = [sampled_power(nu, iv_re, iv_im, gen).numpy() for _ in range(20000)]
    np.testing.assert_allclose(np.mean(many, axis=0), np.abs(mu) ** 2 + nu.numpy(), rtol=0.03)


def test_sampled_feed_separates_and_is_reproducible(disjoint):
    sep, X, y = disjoint
    sampled = MixDVAESeparator(priors=sep.priors_, max_iter=20, feed="sample",
                               random_state=0).fit(X)
    est = sampled.transform(X)
    assert si_sdr(y, est).min() > 20
    np.testing.assert_array_equal(est, sampled.transform(X))
    other = sampled.set_params(random_state=1).transform(X)
    assert not np.array_equal(est, other)
    with pytest.raises(ValueError, match="feed"):
        MixDVAESeparator(feed="mean").fit(X)
    with pytest.raises(ValueError, match="feed='sample' needs observation='assignment'"):
        MixDVAESeparator(priors=sep.priors_, feed="sample", observation="additive").fit(X)
    with pytest.raises(ValueError, match="observation"):
        MixDVAESeparator(observation="sum").fit(X)


def test_dvae_init_is_a_separation_too(disjoint):
    sep, X, y = disjoint
    init = MixDVAESeparator(priors=sep.priors_, max_iter=0).fit(X).transform(X)
    assert si_sdr(y, init).mean() > 10


def test_bound_does_not_decrease_with_deterministic_latents(disjoint):
    sep, X, _ = disjoint
    S = np.moveaxis(stft(X), -1, -2)
    dynamics = SpectralDVAEDynamics([p.module_ for p in sep.priors_])
    result = run_vem(S, ComplexGaussianBins(), dynamics, n_sources=2, max_iter=15, tol=0,
                     random_state=0)
    history = result.history
    assert np.isfinite(history).all()
    steps = np.diff(history, axis=0)
    assert (steps >= -1e-6 * np.abs(history[1:])).all(), steps.min()


def test_separator_is_reproducible_and_handles_other_rates(disjoint):
    sep, X, _ = disjoint
    a = sep.transform(X[:1])
    np.testing.assert_array_equal(a, sep.transform(X[:1]))
    from mixest.separation import resample

    silent = sep.transform(np.stack([X[0], np.zeros_like(X[0])]))
    np.testing.assert_allclose(silent[0], a[0])
    assert (silent[1] == 0).all()  # a silent mixture has silent sources
    x8 = resample(X[0], RATE, 8000)[None]
    sep8 = MixDVAESeparator(priors=sep.priors_, sample_rate=8000, max_iter=3).fit(x8)
    out = sep8.transform(x8)
    assert out.shape == (1, 2, x8.shape[1])
    assert np.isfinite(out).all()


def test_separation_follows_the_mixtures_level(disjoint):
    """Each mixture is separated at peak 1 and its sources scaled back: a gain in is the same
    gain out (exactly for powers of two, whose products round nothing)."""
    sep, X, y = disjoint
    est = sep.transform(X)
    for gain in (2.0**-12, 2.0**6):
        np.testing.assert_array_equal(sep.transform(gain * X), gain * est)
    # any gain, each mixture its own: equal to the rounding of the division by the peak
    gains = np.geomspace(1e-4, 37.0, len(X))
    np.testing.assert_allclose(sep.transform(gains[:, None] * X), gains[:, None, None] * est,
                               rtol=1e-4, atol=1e-4 * gains.max() * np.abs(est).max())


# ---------------------------------------------------------------------- the additive model
def test_joint_posterior_is_the_gaussian_posterior_of_the_sum():
    """x = s_1 + ... + s_N + e with independent N_c(0, v_n) sources and N_c(0, v_x) noise:
    the linear-Gaussian posterior, by matrices, bin by bin."""
    rng = np.random.default_rng(3)
    B, T, N, F = 2, 3, 3, 4
    x = _complex(rng, (B, T, F))
    var = rng.uniform(0.1, 3.0, (B, T, N, F))
    v_x = rng.uniform(0.01, 0.5, (B, T, F))
    means, covs = joint_posterior(x, var, v_x)
    H = np.ones((1, N))
    for b, t, f in np.ndindex(B, T, F):
        prior = np.diag(var[b, t, :, f])
        gain = prior @ H.T @ np.linalg.inv(H @ prior @ H.T + v_x[b, t, f])
        np.testing.assert_allclose(means[b, t, :, f], (gain * x[b, t, f]).ravel(), rtol=1e-12)
        np.testing.assert_allclose(covs[b, t, :, f], np.diag(prior - gain @ H @ prior),
                                   rtol=1e-12)


def test_additive_powers_kernel_equals_its_twin_and_the_posterior_powers():
    rng = np.random.default_rng(4)
    B, T, N, F = 2, 5, 3, 7
    x = _complex(rng, (B, T, F))
    var = rng.uniform(1e-3, 3.0, (B, T, N, F))
    v_x = rng.uniform(1e-4, 0.5, (B, T, F))
    power = np.abs(x) ** 2
    fast = additive_powers(power, var, v_x)
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast, additive_powers_numpy(power, var, v_x), rtol=1e-6)
    means, covs = joint_posterior(x, var, v_x)
    np.testing.assert_allclose(fast, np.abs(means) ** 2 + covs, rtol=1e-6)


def test_additive_model_separates_disjoint_sources(disjoint):
    sep, X, y = disjoint
    additive = MixDVAESeparator(priors=sep.priors_, max_iter=10, observation="additive").fit(X)
    assert additive._segments is None and sep._segments == (300, 32)  # long mixtures: one pass
    est = additive.transform(X)
    assert si_sdr(y, est).min() > 20
    assert si_sdr(X, est.sum(1)).min() > 20
    # it starts where the assignment model starts: DVAE-init
    init = MixDVAESeparator(priors=sep.priors_, max_iter=0).fit(X).transform(X)
    np.testing.assert_array_equal(additive.set_params(max_iter=0).transform(X), init)


def test_additive_iterations_reconstruct_the_posterior_powers(disjoint):
    """One iteration by hand: each prior reconstructs its source's expected power under the
    joint posterior of DVAE-init's variances, and the sources are that posterior again."""
    sep, X, _ = disjoint
    S = np.moveaxis(stft(X), -1, -2)
    dynamics = SpectralDVAEDynamics([p.module_ for p in sep.priors_])
    data, _ = ComplexGaussianBins(0.01).prepare(S, 2)
    means, covs = joint_posterior(data["x"], dynamics.reconstruct(data["power"]), data["v_x"])
    powers = np.abs(means) ** 2 + covs
    var = np.stack([dynamics.reconstruct(powers[:, :, n])[:, :, n] for n in range(2)], axis=2)
    expected = joint_posterior(data["x"], var, data["v_x"])
    for a, b in zip(additive_em(S, dynamics, 0.01, 1), expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("n_frames", [1, 64, 65, 150, 1000])
def test_segments_cover_the_mixture_and_cross_fade_to_one(n_frames):
    bounds = segment_bounds(n_frames, 64, 16)
    if n_frames <= 64:
        assert bounds == [(0, n_frames)]
    else:
        assert all(b - a == 64 for a, b in bounds)
        assert len(bounds) == -(-(n_frames - 16) // 48)  # the fewest that overlap enough
        assert bounds[0][0] == 0 and bounds[-1][1] == n_frames
        assert all(b1 - a2 >= 16
                   for (_, b1), (a2, _) in zip(bounds[:-1], bounds[1:], strict=True))
    weights = fade_weights(bounds, n_frames)
    np.testing.assert_allclose(weights.sum(0), 1.0, rtol=1e-12)
    for k, (a, b) in enumerate(bounds):
        assert (weights[k, a:b] > 0).all() and (weights[k, :a] == 0).all()
        assert (weights[k, b:] == 0).all()
    # a frame only one segment holds is that segment's; a shared one fades linearly
    if len(bounds) > 1:
        assert (weights[0, :bounds[1][0]] == 1).all()
        shared = weights[0, bounds[1][0]:bounds[0][1]]
        assert (np.diff(shared) < 0).all() and np.ptp(np.diff(shared)) < 1e-12


def test_long_mixtures_are_separated_in_bounded_segments(disjoint, monkeypatch):
    """A mixture longer than a segment is cut into overlapping segments, separated as a batch
    of mixtures and cross-faded back: the known answer holds, every VEM batch stays within the
    segment's frames, and a mixture no longer than a segment is separated as before."""
    sep, X, y = disjoint
    short = sep.transform(X)
    long_x, long_y = X.reshape(1, -1), y.transpose(1, 0, 2).reshape(1, 2, -1)  # 150 frames
    monkeypatch.setattr(type(sep), "_segments", (64, 16))
    seen, parts = [], []
    separate = type(sep)._separate_spectra
    monkeypatch.setattr(type(sep), "_separate_spectra", lambda self, S, *a: (
        seen.append(S.shape) or parts.append(separate(self, S, *a)) or parts[-1]))
    est = sep.transform(long_x)
    assert [shape[-1] for shape in seen] == [64] and seen[0][0] == 3  # three segments, one batch
    assert si_sdr(long_y, est).min() > 20
    assert si_sdr(long_x, est.sum(1)).min() > 20
    # the segments' sources, cross-faded in the whole STFT and inverted at once (what the
    # separator holds a segment at a time)
    bounds = segment_bounds(150, 64, 16)
    weights = fade_weights(bounds, 150)
    whole = np.zeros((2, 513, 150), dtype=complex)
    for k, (a, b) in enumerate(bounds):
        whole[..., a:b] += parts[0][k] * weights[k, a:b]
    expected = istft(whole, n_samples=long_x.shape[-1]) * peak_levels(long_x)[0]
    np.testing.assert_allclose(est[0], expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_array_equal(est, sep.transform(long_x))  # the same seed, the same sources
    seen.clear()
    np.testing.assert_array_equal(sep.transform(X), short)  # 50 frames: one segment, as before
    assert [shape[-1] for shape in seen] == [50]


# ---------------------------------------------------------------------- contract and errors
def test_fit_errors():
    gaussian = DVAE(network=Network(z_dim=2, rnn_dim=4, dense_dims=(4,)), recipe="plain",
                    n_epochs=1, device="cpu", random_state=0).fit(
        np.random.default_rng(0).random((8, 5, 4)))
    X = np.zeros((1, 12800)) + 0.1
    with pytest.raises(ValueError, match="Itakura-Saito"):
        MixDVAESeparator(priors=(gaussian, gaussian)).fit(X)
    unfitted = DVAE(likelihood="itakura_saito")
    with pytest.raises(ValueError, match="needs the isolated sources y"):
        MixDVAESeparator(priors=(unfitted, unfitted)).fit(X)
    with pytest.raises(TypeError, match=r"priors\[0\]"):
        MixDVAESeparator(priors=(3, 4)).fit(X)
    with pytest.raises(FileNotFoundError, match=r"priors\[0\]"):
        MixDVAESeparator(priors=("/nonexistent.pt", "/nonexistent.pt")).fit(X)
    with pytest.raises(ValueError, match="at least 50 STFT frames"):
        MixDVAESeparator(priors=(unfitted, unfitted)).fit(X[:, :1000],
                                                          np.ones((1, 2, 1000)) * 0.1)
    with pytest.raises(ValueError, match="at least two"):
        MixDVAESeparator(priors=(unfitted,)).fit(X)
    with pytest.raises(ValueError, match="sources"):
        MixDVAESeparator(priors=(unfitted, unfitted)).fit(X, np.zeros((1, 3, 12800)))
    with pytest.raises(ValueError, match="X"):
        MixDVAESeparator(priors=(unfitted, unfitted)).fit(np.zeros(12800))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'"):
            MixDVAESeparator(priors=(unfitted, unfitted), device="cuda").fit(X)


@pytest.mark.cuda
def test_cuda_priors_give_the_cpu_separation(disjoint):
    sep, X, _ = disjoint
    gpu = MixDVAESeparator(priors=sep.priors_, max_iter=5, device="cuda").fit(X)
    cpu = MixDVAESeparator(priors=sep.priors_, max_iter=5, device="cpu").fit(X)
    np.testing.assert_allclose(gpu.transform(X), cpu.transform(X), rtol=1e-3, atol=1e-5)


def test_oracle_ratio_mask_is_the_reference(disjoint_audio):
    from mixest.separation._base import oracle_ratio_mask

    _, X, y = disjoint_audio
    est = oracle_ratio_mask(X, y)
    assert est.shape == y.shape
    assert si_sdr(y, est).min() > 30  # disjoint supports: the mask is nearly binary and right
    np.testing.assert_allclose(est.sum(1), X, atol=1e-9)  # the masks sum to one
