"""NMF separators: supervised NMF (Févotte & Idier 2011) and NMF with temporal continuity and
sparseness (Virtanen 2007).

Both learn one dictionary of spectral atoms per source type from the isolated sources in
:meth:`fit`, keep the stacked dictionaries fixed on a mixture, learn only the activations
there, and read the sources out as Wiener masks of the per-source model spectra applied to the
mixture STFT (16 kHz, 1024-sample sine window, hop 256; see
:class:`~mixest.separation._base.SpectralSeparator`).

:class:`NMFSeparator` delegates the factorisations to scikit-learn
(:class:`sklearn.decomposition.NMF` and :func:`sklearn.decomposition.non_negative_factorization`,
multiplicative updates). :class:`TemporalNMFSeparator` runs the multiplicative updates of
Virtanen's penalised KL cost, written here in NumPy (:func:`temporal_nmf`; the penalties cost
O(JT) per iteration against O(FJT) for the products with the dictionary, so BLAS dominates and
a compiled kernel would not pay).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.special import xlogy
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from mixest.separation._base import HOP, N_FFT, SpectralSeparator
from mixest.separation._stft import stft

__all__ = [
    "NMFSeparator",
    "TemporalNMFSeparator",
    "temporal_nmf",
    "virtanen_cost",
    "virtanen_gradients",
    "POWER_FLOOR",
    "floored_power",
]

#: floor added to every power spectrogram, relative to its mean power: the Itakura-Saito
#: divergence is undefined at 0, and being scale-invariant it would otherwise spend atoms on
#: the exact shape of bins 60 dB and more below the signal (the same floor, under the square
#: root, keeps the magnitude models of the KL costs away from 0/0 in the updates)
POWER_FLOOR = 1e-6

# smallest positive double: added where a ratio could be 0/0 (a bin that no source models
# gets equal shares; everywhere else it is absorbed by rounding)
_TINY = np.finfo(np.float64).tiny

_COMMON_CONSTRAINTS: dict = {
    "n_components": [Interval(Integral, 1, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "sample_rate": [Interval(Integral, 1, None, closed="left")],
    "n_jobs": [Integral, None],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


# ---------------------------------------------------------------------------- spectrograms
def _source_frames(signals: np.ndarray, name: str) -> np.ndarray:
    """STFT frames ``(F, n_frames)`` of all the signals ``(n, n_samples)`` of one source, one
    signal after the other, without the digitally silent frames (they carry nothing about
    the source's spectra, and zeros would break the Itakura-Saito divergence)."""
    S = stft(signals, n_fft=N_FFT, hop_length=HOP)  # (n, F, T)
    S = np.moveaxis(S, 0, 1).reshape(S.shape[1], -1)
    S = S[:, np.abs(S).max(axis=0) > 0]
    if S.shape[1] == 0:
        raise ValueError(f"{name} is silent: there is no frame to learn its dictionary from.")
    return S


def floored_power(S: np.ndarray) -> np.ndarray:
    """Power spectrogram ``|S|^2 + POWER_FLOOR * mean(|S|^2)`` of a complex STFT."""
    power = np.abs(S) ** 2
    return power + POWER_FLOOR * power.mean()


def _wiener(power: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Sources ``(N, F, T)`` as Wiener masks of the model powers ``(N, F, T)`` times ``S``."""
    power = power + _TINY  # 0/0 (no source models the bin): equal shares, masks still sum to 1
    return power / power.sum(axis=0) * S


# ---------------------------------------------------------------------------- Virtanen's cost
def _penalty_gradients(G: np.ndarray, alpha: float, beta: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts of the gradient of the two penalties with respect to ``G``.

    With :math:`S_j = \\sum_t g_{jt}^2`, :math:`D_j = \\sum_{t \\ge 1}(g_{jt} - g_{j,t-1})^2`
    and :math:`n_t` the number of neighbours of frame t (1 at the ends, 2 inside):

    .. math::

        \\nabla^+ c_t = \\frac{2 T n_t g_{jt}}{S_j}, \\quad
        \\nabla^- c_t = \\frac{2 T (g_{j,t-1} + g_{j,t+1})}{S_j}
                        + \\frac{2 T g_{jt} D_j}{S_j^2}, \\quad
        \\nabla^+ c_s = \\frac{\\sqrt T}{\\sqrt{S_j}}, \\quad
        \\nabla^- c_s = \\frac{\\sqrt T g_{jt} \\sum_k g_{jk}}{S_j^{3/2}}.
    """
    J, T = G.shape
    sq = (G ** 2).sum(axis=1, keepdims=True) + _TINY  # S_j (guarded: an all-zero row)
    plus = np.zeros_like(G)
    minus = np.zeros_like(G)
    if alpha > 0:
        diff2 = (np.diff(G, axis=1) ** 2).sum(axis=1, keepdims=True)
        neighbours = np.zeros_like(G)
        neighbours[:, 1:] += G[:, :-1]
        neighbours[:, :-1] += G[:, 1:]
        n_t = (np.arange(T) > 0).astype(G.dtype) + (np.arange(T) < T - 1)
        plus += (alpha * 2 * T) * n_t * G / sq
        minus += (alpha * 2 * T) * (neighbours / sq + G * diff2 / sq ** 2)
    if beta > 0:
        root = np.sqrt(T)
        plus += beta * root / np.sqrt(sq)
        minus += (beta * root) * G * G.sum(axis=1, keepdims=True) / sq ** 1.5
    return plus, minus


def virtanen_gradients(X: np.ndarray, B: np.ndarray, G: np.ndarray, alpha: float,
                       beta: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Positive and negative parts of the gradient of :func:`virtanen_cost`.

    Parameters
    ----------
    X : ndarray of shape (F, T)
        Magnitude spectrogram.
    B : ndarray of shape (F, J)
        Dictionary.
    G : ndarray of shape (J, T)
        Activations.
    alpha, beta : float
        Weights of the temporal-continuity and sparseness penalties.

    Returns
    -------
    gradients : dict
        ``{"G": (plus, minus), "B": (plus, minus)}``, all non-negative where ``B`` and ``G``
        are, with ``plus - minus`` the gradient; the multiplicative update of a factor is
        ``factor * minus / plus``.
    """
    V = B @ G
    ratio = X / V
    plus, minus = _penalty_gradients(G, alpha, beta)
    grad_G = (B.sum(axis=0)[:, None] + plus, B.T @ ratio + minus)
    grad_B = (np.broadcast_to(G.sum(axis=1), B.shape).copy(), ratio @ G.T)
    return {"G": grad_G, "B": grad_B}


def virtanen_cost(X: np.ndarray, B: np.ndarray, G: np.ndarray, alpha: float,
                  beta: float) -> float:
    """Virtanen's (2007) cost of the factorisation ``X ~ B G``.

    .. math::

        c(B, G) = \\sum_{f,t} \\Big(X_{ft} \\log\\frac{X_{ft}}{[BG]_{ft}} - X_{ft}
        + [BG]_{ft}\\Big)
        + \\alpha \\sum_j \\frac{1}{\\sigma_j^2} \\sum_{t \\ge 1} (g_{jt} - g_{j,t-1})^2
        + \\beta \\sum_j \\sum_t \\Big|\\frac{g_{jt}}{\\sigma_j}\\Big|,
        \\qquad \\sigma_j = \\sqrt{\\tfrac1T \\textstyle\\sum_t g_{jt}^2}.

    Parameters
    ----------
    X : ndarray of shape (F, T)
    B : ndarray of shape (F, J)
    G : ndarray of shape (J, T)
    alpha, beta : float

    Returns
    -------
    cost : float
    """
    return _cost(X, B @ G, G, alpha, beta, xlogy(X, X).sum() - X.sum())


def _cost(X: np.ndarray, V: np.ndarray, G: np.ndarray, alpha: float, beta: float,
          constant: float) -> float:
    """:func:`virtanen_cost` from ``V = B G`` and the constant ``sum X log X - X``."""
    T = G.shape[1]
    cost = constant - xlogy(X, V).sum() + V.sum()
    sq = (G ** 2).sum(axis=1) + _TINY
    if alpha > 0:
        cost += alpha * T * ((np.diff(G, axis=1) ** 2).sum(axis=1) / sq).sum()
    if beta > 0:
        cost += beta * np.sqrt(T) * (G.sum(axis=1) / np.sqrt(sq)).sum()
    return float(cost)


def temporal_nmf(
    X: np.ndarray,
    B: np.ndarray,
    G: np.ndarray,
    *,
    alpha: float,
    beta: float,
    max_iter: int,
    tol: float,
    update_B: bool = True,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Minimise :func:`virtanen_cost` by multiplicative updates from ``B`` and ``G``.

    Every iteration updates

    .. math::

        G \\leftarrow G \\odot \\frac{\\nabla^-_G c}{\\nabla^+_G c}
          = G \\odot \\frac{B^\\top (X / BG) + \\alpha \\nabla^- c_t + \\beta \\nabla^- c_s}
                          {B^\\top 1 + \\alpha \\nabla^+ c_t + \\beta \\nabla^+ c_s},
        \\qquad
        B \\leftarrow B \\odot \\frac{(X / BG)\\, G^\\top}{1\\, G^\\top}

    (the second only when ``update_B``), then scales every column of ``B`` to a unit sum and
    the matching row of ``G`` by the inverse (the penalties are scale-invariant in each
    :math:`g_j`, so the cost does not change).

    Parameters
    ----------
    X : ndarray of shape (F, T)
        Non-negative magnitude spectrogram.
    B : ndarray of shape (F, J)
        Positive initial dictionary (fixed when ``update_B`` is False).
    G : ndarray of shape (J, T)
        Positive initial activations.
    alpha, beta : float
        Weights of the temporal-continuity and sparseness penalties.
    max_iter : int
        Most iterations.
    tol : float
        Stop once an iteration lowers the cost by less than ``tol`` times its value (0: run
        ``max_iter`` iterations).
    update_B : bool, default=True
        Learn the dictionary too (training) or only the activations (separation).

    Returns
    -------
    B : ndarray of shape (F, J)
        Columns of unit sum when ``update_B``, else the ``B`` given.
    G : ndarray of shape (J, T)
    n_iter : int
        Iterations run.
    costs : ndarray of shape (n_iter + 1,)
        The cost before the first iteration and after every one.
    """
    B = np.array(B, dtype=np.float64)
    G = np.array(G, dtype=np.float64)
    if update_B:
        scale = B.sum(axis=0)
        B /= scale
        G *= scale[:, None]
    B_sum = B.sum(axis=0)[:, None]
    constant = xlogy(X, X).sum() - X.sum()
    V = B @ G
    costs = [_cost(X, V, G, alpha, beta, constant)]
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is returned)
        plus, minus = _penalty_gradients(G, alpha, beta)
        G *= (B.T @ (X / V) + minus) / (B_sum + plus)
        V = B @ G
        if update_B:
            B *= ((X / V) @ G.T) / G.sum(axis=1)
            scale = B.sum(axis=0)  # unit-sum atoms: keeps B and G in range, cost unchanged
            B /= scale
            G *= scale[:, None]
            V = B @ G
        costs.append(_cost(X, V, G, alpha, beta, constant))
        if tol > 0 and costs[-2] - costs[-1] < tol * abs(costs[-2]):
            break
    return B, G, n_iter, np.array(costs)


# ---------------------------------------------------------------------------- separators
class _NMFBase(SpectralSeparator):
    """What the two NMF separators share: one dictionary per source, Wiener read-out."""

    # the model spectra are powers ("power") or magnitudes ("magnitude")
    def _model_kind(self) -> str:
        raise NotImplementedError

    def _batch_size(self) -> int:
        return 1  # every mixture is its own factorisation

    def _activations(self, S: np.ndarray, seed: int) -> np.ndarray:
        """Activations ``(N, n_components, T)`` of the stacked dictionaries on the mixture
        STFT ``S`` ``(F, T)``."""
        raise NotImplementedError

    def _separate_spectra(self, S: np.ndarray, references: np.ndarray | None,
                          seed: int) -> np.ndarray:
        if references is not None:
            raise ValueError(f"{type(self).__name__} has no oracle mode: references must be "
                             "None.")
        seeds = np.random.RandomState(seed).randint(2**31 - 1, size=len(S))
        out = np.empty((len(S), self.n_sources_) + S.shape[1:], dtype=S.dtype)
        for b in range(len(S)):
            A = self._activations(S[b], int(seeds[b]))
            model = np.einsum("nkf,nkt->nft", self.dictionaries_, A)
            power = model if self._model_kind() == "power" else model ** 2
            out[b] = _wiener(power, S[b])
        return out

    def _validated_sources(self, X: object, y: object) -> np.ndarray:
        self._validate_params()
        _, y = self._check_training_sources(X, y, None, required=True)
        return y


class NMFSeparator(_NMFBase):
    """Supervised NMF separation (Févotte & Idier, 2011) with scikit-learn's NMF.

    :meth:`fit` learns, for every source type n, a dictionary :math:`H_n` of
    ``n_components`` spectral atoms from the spectrogram :math:`V_n` of all the isolated
    signals ``y[:, n]`` (their STFT frames stacked, digitally silent frames dropped) with
    :class:`sklearn.decomposition.NMF` (multiplicative updates), minimising

    .. math::

        \\min_{W_n \\ge 0, H_n \\ge 0} D_\\beta(V_n \\,|\\, W_n H_n),

    (rows of :math:`V_n` are frames), where :math:`D_\\beta` is the Itakura-Saito divergence
    :math:`\\sum (v / \\hat v - \\log(v / \\hat v) - 1)` on power spectra or the
    Kullback-Leibler divergence :math:`\\sum (v \\log(v / \\hat v) - v + \\hat v)` on magnitude
    spectra. On a mixture spectrogram :math:`V` the stacked dictionaries
    :math:`H = [H_1; \\dots; H_N]` stay fixed and only the activations
    :math:`W = [W_1, \\dots, W_N]` are learned
    (:func:`sklearn.decomposition.non_negative_factorization` with ``update_H=False``). The
    sources are the Wiener masks of the modelled powers times the mixture STFT,

    .. math::

        \\hat s_n = \\frac{P_n}{\\sum_m P_m} \\odot x, \\qquad
        P_n = W_n H_n \\text{ (IS)}, \\quad P_n = (W_n H_n)^{\\odot 2} \\text{ (KL)},

    so they keep the mixture's phase and sum to it. Every power spectrogram (training and
    mixtures) gets a floor of ``POWER_FLOOR = 1e-6`` times its mean power before it is
    modelled (the magnitude is the square root of the floored power).

    Parameters
    ----------
    n_components : int, default=32
        Atoms per source (the dictionary of a mixture has ``n_sources * n_components``).
        On a small check with speech and flute training audio (``docs/nmf.md``) 16 and 32
        atoms did best with IS (2.1 dB SI-SDR; 64 and 128: 0.9 and 1.5 dB).
    beta_loss : {"itakura-saito", "kullback-leibler"}, default="itakura-saito"
        Divergence, on power spectra (IS) or on magnitude spectra (KL).
    init : {"random", "nndsvda", "nndsvdar"} or None, default=None
        Initialisation of the dictionary learning, passed to
        :class:`sklearn.decomposition.NMF` (None: ``"nndsvda"`` when ``n_components`` is at
        most the number of frames and bins, else ``"random"``).
    max_iter : int, default=200
        Most multiplicative updates, in :meth:`fit` and on every mixture.
    tol : float, default=1e-4
        scikit-learn's stopping tolerance (relative decrease of the divergence over 10
        iterations), in :meth:`fit` and on every mixture.
    sample_rate : int, default=16000
        Rate of the waveforms given and returned; others than 16 kHz are resampled in and out.
    n_jobs : int or None, default=None
        Mixtures separated in parallel processes (joblib; -1: all cores).
    random_state : int, RandomState or None, default=None
        Seeds the dictionary learning: source n's :class:`~sklearn.decomposition.NMF` gets
        ``random_state=seeds[n]``, ``seeds = check_random_state(random_state).randint(2**31 -
        1, size=n_sources)``. The separation itself is deterministic (scikit-learn starts the
        activations from a constant).
    verbose : bool, default=False
        scikit-learn's progress messages while learning the dictionaries, and a progress bar
        over the mixtures in :meth:`transform`.

    Attributes
    ----------
    dictionaries_ : ndarray of shape (n_sources, n_components, 513)
        ``dictionaries_[n]`` is source n's ``components_``: one atom (a power spectrum for IS,
        a magnitude spectrum for KL) per row.
    n_iter_ : ndarray of shape (n_sources,)
        Iterations of each dictionary's learning.
    reconstruction_err_ : ndarray of shape (n_sources,)
        scikit-learn's ``reconstruction_err_`` of each dictionary's learning.
    n_sources_ : int

    References
    ----------
    C. Févotte and J. Idier, "Algorithms for nonnegative matrix factorization with the
    beta-divergence", Neural Computation 23(9), 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.baselines import NMFSeparator
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(16000) / 16000
    >>> y = np.stack([np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(t.size)])[None]
    >>> sep = NMFSeparator(4, max_iter=50, tol=0, random_state=0).fit(y.sum(1), y)
    >>> sep.dictionaries_.shape
    (2, 4, 513)
    >>> sep.transform(y.sum(1)).shape
    (1, 2, 16000)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_COMMON_CONSTRAINTS,
        "beta_loss": [StrOptions({"itakura-saito", "kullback-leibler"})],
        "init": [StrOptions({"random", "nndsvda", "nndsvdar"}), None],
    }

    _test_params: ClassVar[dict] = {"n_components": 4, "max_iter": 20, "tol": 0.0}

    def __init__(
        self,
        n_components: int = 32,
        *,
        beta_loss: str = "itakura-saito",
        init: str | None = None,
        max_iter: int = 200,
        tol: float = 1e-4,
        sample_rate: int = 16000,
        n_jobs: int | None = None,
        random_state: object = None,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.beta_loss = beta_loss
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.sample_rate = sample_rate
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _model_kind(self) -> str:
        return "power" if self.beta_loss == "itakura-saito" else "magnitude"

    def _spectrogram(self, S: np.ndarray) -> np.ndarray:
        """What the NMF models, rows = frames: floored power (IS) or its square root (KL)."""
        power = floored_power(S).T
        return power if self._model_kind() == "power" else np.sqrt(power)

    def fit(self, X: object, y: object = None) -> NMFSeparator:
        """Learn one dictionary per source from the isolated sources.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)
            Mixtures (only checked: the dictionaries are learned on ``y``).
        y : array-like of shape (n_mixtures, n_sources, n_samples)
            Isolated sources; source n's dictionary is learned on all of ``y[:, n]``.

        Returns
        -------
        self
        """
        from sklearn.decomposition import NMF

        y = self._validated_sources(X, y)
        seeds = check_random_state(self.random_state).randint(2**31 - 1, size=y.shape[1])
        dictionaries, n_iter, errors = [], [], []
        for n in range(y.shape[1]):
            V = self._spectrogram(_source_frames(y[:, n], f"y[:, {n}]"))
            model = NMF(self.n_components, init=self.init, solver="mu",
                        beta_loss=self.beta_loss, tol=self.tol, max_iter=self.max_iter,
                        random_state=int(seeds[n]), verbose=self.verbose)
            model.fit(V)
            dictionaries.append(model.components_)
            n_iter.append(model.n_iter_)
            errors.append(model.reconstruction_err_)
        self.dictionaries_ = np.stack(dictionaries)
        self.n_iter_ = np.array(n_iter)
        self.reconstruction_err_ = np.array(errors)
        self.n_sources_ = y.shape[1]
        return self

    def _activations(self, S: np.ndarray, seed: int) -> np.ndarray:
        # seed unused: scikit-learn starts W from a constant when H is fixed
        from sklearn.decomposition import non_negative_factorization

        N, K, F = self.dictionaries_.shape
        W, _, _ = non_negative_factorization(
            self._spectrogram(S), H=self.dictionaries_.reshape(N * K, F), n_components=N * K,
            update_H=False, solver="mu", beta_loss=self.beta_loss, tol=self.tol,
            max_iter=self.max_iter)
        return W.T.reshape(N, K, -1)


class TemporalNMFSeparator(_NMFBase):
    """Supervised NMF separation with temporal continuity and sparseness (Virtanen, 2007).

    The magnitude spectrogram :math:`X` (F x T), scaled to a unit mean, is modelled as
    :math:`X \\approx BG` (dictionary :math:`B`, F x J; activations :math:`G`, J x T) by
    minimising

    .. math::

        c(B, G) = \\mathrm{KL}(X \\,|\\, BG)
        + \\alpha \\sum_j \\frac{1}{\\sigma_j^2} \\sum_{t \\ge 1} (g_{jt} - g_{j,t-1})^2
        + \\beta \\sum_j \\sum_t \\Big|\\frac{g_{jt}}{\\sigma_j}\\Big|,
        \\qquad \\sigma_j = \\sqrt{\\tfrac1T \\textstyle\\sum_t g_{jt}^2},

    with :math:`\\mathrm{KL}(X|V) = \\sum X \\log(X/V) - X + V`, by the multiplicative updates
    of :func:`temporal_nmf` from a seeded random start. :meth:`fit` learns one dictionary
    :math:`B_n` of ``n_components`` atoms per source type (B and G updated) on the STFT frames
    of all the isolated signals ``y[:, n]`` one after the other (digitally silent frames
    dropped). On a mixture the stacked dictionaries :math:`[B_1, \\dots, B_N]` stay fixed and
    only the activations are learned, with the same cost (the :math:`\\sigma_j` are those of
    the mixture's activations). The sources are the Wiener masks of the modelled powers,
    :math:`\\hat s_n = (B_n G_n)^{\\odot 2} / \\sum_m (B_m G_m)^{\\odot 2} \\odot x`, so they
    keep the mixture's phase and sum to it. Scaling :math:`X` to a unit mean makes the
    weights independent of the recording level (the KL term is proportional to the level,
    the penalties are scale-invariant); the magnitudes are the square roots of the power
    spectrogram floored at ``POWER_FLOOR = 1e-6`` times its mean.

    Parameters
    ----------
    n_components : int, default=32
        Atoms per source (J of one dictionary).
    alpha : float, default=10.0
        Weight of the temporal-continuity penalty (0: none), the term that makes the method
        Virtanen's. On a small check with speech and flute training audio (``docs/nmf.md``) it
        helped without sparseness (1.8 against 1.3 dB SI-SDR at ``alpha=10``) and cost
        0.7 dB with it (3.5 against 4.2 dB at ``beta=100``, within the check's spread); it
        stays on so that the separator is the method its name says.
    beta : float, default=100.0
        Weight of the sparseness penalty (0: none): the best of 0 to 300 on the same check.
        Both weights are relative to a KL term on 513 bins of a unit-mean spectrogram.
    max_iter : int, default=200
        Most iterations, in :meth:`fit` and on every mixture.
    tol : float, default=1e-4
        Stop once an iteration lowers the cost by less than ``tol`` times its value (0: always
        ``max_iter`` iterations), in :meth:`fit` and on every mixture.
    sample_rate : int, default=16000
        Rate of the waveforms given and returned; others than 16 kHz are resampled in and out.
    n_jobs : int or None, default=None
        Mixtures separated in parallel processes (joblib; -1: all cores).
    random_state : int, RandomState or None, default=None
        Seeds the random starts of the dictionaries (in :meth:`fit`) and of the activations
        on every mixture (:meth:`transform`).
    verbose : bool, default=False
        One line per learned dictionary in :meth:`fit`, a progress bar over the mixtures in
        :meth:`transform`.

    Attributes
    ----------
    dictionaries_ : ndarray of shape (n_sources, n_components, 513)
        ``dictionaries_[n]`` is :math:`B_n^\\top`: one magnitude-spectrum atom per row, each
        of unit sum.
    n_iter_ : ndarray of shape (n_sources,)
        Iterations of each dictionary's learning.
    costs_ : list of ndarray
        The cost of each dictionary's learning, before the first iteration and after every one.
    n_sources_ : int

    References
    ----------
    T. Virtanen, "Monaural sound source separation by nonnegative matrix factorization with
    temporal continuity and sparseness criteria", IEEE TASLP 15(3), 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.baselines import TemporalNMFSeparator
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(16000) / 16000
    >>> y = np.stack([np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(t.size)])[None]
    >>> sep = TemporalNMFSeparator(4, max_iter=50, tol=0, random_state=0).fit(y.sum(1), y)
    >>> sep.dictionaries_.shape
    (2, 4, 513)
    >>> sep.transform(y.sum(1)).shape
    (1, 2, 16000)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_COMMON_CONSTRAINTS,
        "alpha": [Interval(Real, 0, None, closed="left")],
        "beta": [Interval(Real, 0, None, closed="left")],
    }

    _test_params: ClassVar[dict] = {"n_components": 4, "max_iter": 10, "tol": 0.0}

    def __init__(
        self,
        n_components: int = 32,
        *,
        alpha: float = 10.0,
        beta: float = 100.0,
        max_iter: int = 200,
        tol: float = 1e-4,
        sample_rate: int = 16000,
        n_jobs: int | None = None,
        random_state: object = None,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.alpha = alpha
        self.beta = beta
        self.max_iter = max_iter
        self.tol = tol
        self.sample_rate = sample_rate
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _model_kind(self) -> str:
        return "magnitude"

    @staticmethod
    def _magnitudes(S: np.ndarray) -> np.ndarray:
        """Square root of the floored power, scaled to a unit mean: ``X`` (F, T)."""
        X = np.sqrt(floored_power(S))
        return X / X.mean()

    def _run(self, X: np.ndarray, B: np.ndarray, rng: np.random.RandomState,
             update_B: bool, what: str) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """:func:`temporal_nmf` from random activations whose model has X's mean."""
        G = rng.uniform(0.5, 1.5, size=(B.shape[1], X.shape[1]))
        G *= X.mean() / (B @ G).mean()
        B, G, n_iter, costs = temporal_nmf(X, B, G, alpha=self.alpha, beta=self.beta,
                                           max_iter=self.max_iter, tol=self.tol,
                                           update_B=update_B)
        if self.tol > 0 and n_iter == self.max_iter:
            warnings.warn(f"TemporalNMFSeparator: the {what} did not converge in "
                          f"{self.max_iter} iterations (tol={self.tol}); increase max_iter or "
                          "tol.", ConvergenceWarning, stacklevel=3)
        return B, G, n_iter, costs

    def fit(self, X: object, y: object = None) -> TemporalNMFSeparator:
        """Learn one dictionary per source from the isolated sources.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)
            Mixtures (only checked: the dictionaries are learned on ``y``).
        y : array-like of shape (n_mixtures, n_sources, n_samples)
            Isolated sources; source n's dictionary is learned on all of ``y[:, n]``.

        Returns
        -------
        self
        """
        y = self._validated_sources(X, y)
        rng = check_random_state(self.random_state)
        dictionaries, n_iter, costs = [], [], []
        for n in range(y.shape[1]):
            X_n = self._magnitudes(_source_frames(y[:, n], f"y[:, {n}]"))
            B = rng.uniform(0.5, 1.5, size=(X_n.shape[0], self.n_components))
            B, _, iters, cost = self._run(X_n, B, rng, True, f"dictionary of source {n}")
            if self.verbose:
                print(f"TemporalNMFSeparator: source {n}: {iters} iterations, cost "
                      f"{cost[0]:.6g} -> {cost[-1]:.6g}")
            dictionaries.append(B.T)
            n_iter.append(iters)
            costs.append(cost)
        self.dictionaries_ = np.stack(dictionaries)
        self.n_iter_ = np.array(n_iter)
        self.costs_ = costs
        self.n_sources_ = y.shape[1]
        return self

    def _activations(self, S: np.ndarray, seed: int) -> np.ndarray:
        N, K, F = self.dictionaries_.shape
        B = self.dictionaries_.reshape(N * K, F).T
        _, G, _, _ = self._run(self._magnitudes(S), B, np.random.RandomState(seed), False,
                               "activations of a mixture")
        return G.reshape(N, K, -1)
