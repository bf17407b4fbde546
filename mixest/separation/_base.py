"""What every separator shares: waveforms in and out, the paper's STFT inside, batches.

:class:`SpectralSeparator` validates waveforms, resamples them to the 16 kHz of the spectral
models, scales each mixture to peak 1 (the level the models learned at), takes the STFT
(1024-sample sine window, hop 256), hands the spectrograms of the mixtures that are not silent
to the subclass (:meth:`SpectralSeparator._separate_spectra`) in batches, possibly in parallel
processes, and returns waveforms at the caller's rate and level. A subclass may have long
mixtures cut into overlapping segments, separated as mixtures of their own and cross-faded back
(:func:`segment_bounds`, :func:`fade_weights`; the VEM separators do); a segment's STFT is
then taken, and its sources inverted, only while its batch is in flight
(:class:`~mixest.separation._stft.SegmentedSTFT`), so that beyond the waveforms the memory
does not grow with the recording's length.
:class:`VEMSeparator` adds the variational EM of :func:`mixest.mixture.run_vem` with the audio
observation model (:class:`~mixest.separation._vem_models.ComplexGaussianBins`): a subclass
only says which source dynamics it runs.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator, check_sequences
from mixest.separation._audio_io import resample
from mixest.separation._stft import SegmentedSTFT, istft, n_frames_for, stft

__all__ = ["SpectralSeparator", "VEMSeparator", "PRIOR_RATE", "N_FFT", "HOP",
           "fade_weights", "oracle_ratio_mask", "peak_levels", "segment_bounds",
           "training_sequences", "wiener_read_out"]

#: the rate, window and hop every spectral model of mixest works at (the paper's STFT)
PRIOR_RATE, N_FFT, HOP = 16000, 1024, 256


def _resample_rows(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """:func:`resample` along the last axis of an array of signals."""
    flat = x.reshape(-1, x.shape[-1])
    out = np.stack([resample(row, orig_rate, new_rate) for row in flat])
    return out.reshape(x.shape[:-1] + out.shape[-1:])


#: STFT frames of the segments the VEM separators cut a long mixture into (4.8 s), and the
#: frames two segments share at least (0.5 s), cross-faded (``docs/separation.md``, "Long
#: recordings")
SEGMENT_FRAMES, SEGMENT_OVERLAP = 300, 32

#: frames per training sequence when a prior is trained from isolated sources
TRAIN_FRAMES = 50


def training_sequences(signals: np.ndarray) -> np.ndarray:
    """Power spectra of the isolated sources ``(n, n_samples)``, sequences of 50 frames that
    never straddle two signals (the training data of a prior)."""
    from mixest.datasets import make_spectral_sequences

    if signals.shape[-1] < TRAIN_FRAMES * HOP:
        raise ValueError(f"y must hold at least {TRAIN_FRAMES} STFT frames "
                         f"({TRAIN_FRAMES * HOP} samples at {PRIOR_RATE} Hz) per source to "
                         f"train a prior, got {signals.shape[-1]} samples.")
    return make_spectral_sequences(signals, TRAIN_FRAMES, n_fft=N_FFT, hop_length=HOP)


def oracle_ratio_mask(mixtures: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """The oracle reference: the ideal ratio mask :math:`|S_n|^2 / \\sum_m |S_m|^2` of the true
    sources ``(n, N, n_samples)`` on the mixtures' STFT ``(n, n_samples)``, as waveforms."""
    S, P = stft(mixtures, n_fft=N_FFT, hop_length=HOP), np.abs(
        stft(sources, n_fft=N_FFT, hop_length=HOP)) ** 2
    mask = P / np.maximum(P.sum(1, keepdims=True), 1e-30)
    return istft(mask * S[:, None], n_fft=N_FFT, hop_length=HOP, n_samples=mixtures.shape[-1])


def peak_levels(X: np.ndarray) -> np.ndarray:
    """Each signal's peak ``max |x|`` along the last axis (1 for a silent one): the level the
    separators divide out.

    Every spectral model of mixest, and the MixDVAE authors' priors, learned from recordings
    scaled to max |x| = 1, and none of them is blind to level (a network reads log-power or
    power, an AR(1) or a dictionary has the scale of its training audio). So each mixture is
    separated at peak 1 and its sources scaled back, ``transform(c X) = c transform(X)``, and
    each isolated source a separator learns from in ``fit`` is scaled to peak 1.
    """
    peak = np.abs(X).max(axis=-1)
    return np.where(peak > 0, peak, 1.0)


def check_waveforms(X: object, name: str = "X") -> np.ndarray:
    """Mixtures as a float array ``(n_mixtures, n_samples)`` (clear errors otherwise)."""
    return check_sequences(X, name=name, ndim=2, axis_names="(n_mixtures, n_samples)")


def check_sources(y: object, name: str = "y") -> np.ndarray:
    """Isolated sources as a float array ``(n_mixtures, n_sources, n_samples)``."""
    return check_sequences(y, name=name, ndim=3,
                           axis_names="(n_mixtures, n_sources, n_samples)")


class SpectralSeparator(TransformerMixin, SequenceEstimator):
    """Base of the separators: waveforms at ``sample_rate`` in and out, STFTs at 16 kHz inside.

    Every mixture is separated at peak 1 and its sources scaled back, and every isolated
    source learned from in ``fit`` is scaled to peak 1 (:func:`peak_levels`).

    Subclasses store ``sample_rate``, ``batch_size``, ``n_jobs``, ``random_state`` and
    ``verbose``, set ``n_sources_`` in ``fit`` and implement :meth:`_separate_spectra`.
    """

    _input_kind: ClassVar[str] = "waveforms"
    #: (frames, overlap) of the segments a long mixture is separated in, or None: one pass
    _segments: ClassVar[tuple[int, int] | None] = None

    # ------------------------------------------------------------------ input
    def _to_prior_rate(self, x: np.ndarray) -> np.ndarray:
        if self.sample_rate == PRIOR_RATE:
            return x
        return _resample_rows(x, self.sample_rate, PRIOR_RATE)

    def _check_training_sources(self, X: object, y: object, n_sources: int | None,
                                required: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Validated mixtures and, when given, sources resampled to 16 kHz (``n_sources``
        of them when not None), each scaled to peak 1 like the recordings the bundled models
        learned from (:func:`peak_levels`). ``required``: fit cannot do without ``y``."""
        X = check_waveforms(X)
        if y is None:
            if required:
                raise ValueError(f"{type(self).__name__}.fit needs the isolated sources y, "
                                 "shape (n_mixtures, n_sources, n_samples).")
            return X, None
        y = check_sources(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y holds the sources of {y.shape[0]} mixtures, X has "
                             f"{X.shape[0]}.")
        if n_sources is not None and y.shape[1] != n_sources:
            raise ValueError(f"y has {y.shape[1]} sources, {type(self).__name__} models "
                             f"{n_sources}.")
        y = self._to_prior_rate(y)
        return X, y / peak_levels(y)[..., None]

    # ------------------------------------------------------------------ separation
    def _separate_spectra(self, S: np.ndarray, references: np.ndarray | None,
                          seed: int) -> np.ndarray:
        """Source STFTs ``(B, N, F, T)`` of a batch of mixture STFTs ``(B, F, T)``.

        ``references`` are the true sources' STFTs ``(B, N, F, T)`` for oracle modes, else None.
        """
        raise NotImplementedError

    def _workers(self) -> str:
        """The kind of worker that suits this separator's batches: ``"threads"`` when its
        per-frame loops release the interpreter lock (two threads then separate as fast as two
        processes, in one process's memory), else ``"processes"``."""
        return "processes"

    def _batch_size(self) -> int:
        return self.batch_size

    def _transform(self, X: object, references: object = None) -> np.ndarray:
        check_is_fitted(self, "n_sources_")
        X = check_waveforms(X)
        peak = peak_levels(X)[:, None]
        x = self._to_prior_rate(X) / peak
        refs = None
        if references is not None:
            refs = check_sources(references)
            if refs.shape[0] != X.shape[0] or refs.shape[1] != self.n_sources_:
                raise ValueError(f"y must hold {self.n_sources_} sources for each of the "
                                 f"{X.shape[0]} mixtures, got shape {refs.shape}.")
            refs = self._to_prior_rate(refs / peak[:, None])[..., :x.shape[-1]]
        n_mixtures, n_frames = x.shape[0], n_frames_for(x.shape[-1], HOP)
        bounds = segment_bounds(n_frames, *self._segments) if self._segments else [(0, n_frames)]
        K = len(bounds)
        if K == 1:  # whole mixtures
            S = stft(x, n_fft=N_FFT, hop_length=HOP)
            R = None if refs is None else stft(refs, n_fft=N_FFT, hop_length=HOP)

            def item(A, i):
                return A[i]
        else:
            # item i is segment k = i % K of mixture m = i // K, separated as a mixture of its
            # own; only the signals, the output and the segments of the batches in flight are
            # held (a long recording's whole STFT would cost 3 MB a second)
            S, R = SegmentedSTFT(x, n_fft=N_FFT, hop_length=HOP), None
            if refs is not None:
                R = SegmentedSTFT(refs, n_fft=N_FFT, hop_length=HOP)

            def item(A, i):
                return A.frames(*bounds[i % K], i // K)
        seeds = check_random_state(self.random_state).randint(2**31 - 1, size=n_mixtures * K)
        # a silent mixture (or segment) has silent sources: nothing to separate. Read from the
        # waveform: the sine window has no zero, so a frame is zero exactly when its samples are
        sounding = [i for i in range(n_mixtures * K) if np.any(
            x[i // K, slice(None) if K == 1 else S.samples(*bounds[i % K])] != 0)]
        size = self._batch_size()
        batches = [sounding[i:i + size] for i in range(0, len(sounding), size)]
        from joblib import Parallel, delayed
        from tqdm.auto import tqdm

        def cut(A, batch):
            """The batch's items, cut out when it is sent."""
            return None if A is None else np.stack([item(A, i) for i in batch])

        jobs = (delayed(_run_batch)(self, cut(S, b), cut(R, b), int(seeds[b[0]]))
                for b in batches)
        if self.verbose:
            jobs = tqdm(jobs, total=len(batches), desc="separating", unit="batch")
        import torch

        # One level of parallelism: batches across n_jobs workers (the kind _workers says,
        # unless joblib.parallel_config names another), each network on one torch thread.
        # Pinned here for the whole call, so that threads never restore it under one another.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        if K == 1:
            spectra = np.zeros((n_mixtures, self.n_sources_) + S.shape[1:], dtype=S.dtype)
        else:
            out = np.zeros((n_mixtures, self.n_sources_, x.shape[-1]))
            weights = fade_weights(bounds, n_frames)
        try:
            parts = Parallel(n_jobs=self.n_jobs, prefer=self._workers(),
                             return_as="generator")(jobs)
            for batch, part in zip(batches, parts, strict=True):
                if K == 1:
                    spectra[batch] = part
                    continue
                for i, sources in zip(batch, part, strict=True):
                    a, b = bounds[i % K]  # cross-faded into the mixture's frames
                    S.add(out[i // K], sources * weights[i % K, a:b], a)
        finally:
            torch.set_num_threads(threads)
        if K == 1:
            out = istft(spectra, n_fft=N_FFT, hop_length=HOP, n_samples=x.shape[-1])
        else:
            S.finish(out)
        out *= peak[:, None]
        if self.sample_rate != PRIOR_RATE:
            out = _resample_rows(out, PRIOR_RATE, self.sample_rate)
            n = X.shape[-1]
            out = out[..., :n] if out.shape[-1] >= n else np.pad(
                out, [(0, 0), (0, 0), (0, n - out.shape[-1])])
        return out

    def transform(self, X: object) -> np.ndarray:
        """Separate the mixtures.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)

        Returns
        -------
        sources : ndarray of shape (n_mixtures, n_sources, n_samples)
            At ``sample_rate``; they sum to the mixtures (up to resampling when
            ``sample_rate`` is not 16 kHz).
        """
        return self._transform(X)

    def score(self, X: object, y: object) -> float:
        """Mean SI-SDR (dB) of :meth:`transform` against the true sources ``y``."""
        from mixest.separation._metrics import si_sdr

        y = check_sources(y)
        return float(np.mean(si_sdr(y, self.transform(X))))


def segment_bounds(n_frames: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, stop)`` frames of the fewest segments of ``length`` frames that cover
    ``n_frames``, evenly spaced, each overlapping the next by at least ``overlap`` (one segment
    when it is short enough)."""
    if n_frames <= length:
        return [(0, n_frames)]
    n = -(-(n_frames - overlap) // (length - overlap))
    starts = np.rint(np.linspace(0, n_frames - length, n)).astype(int)
    return [(int(a), int(a) + length) for a in starts]


def fade_weights(bounds: list[tuple[int, int]], n_frames: int) -> np.ndarray:
    """Each segment's weight ``(n_segments, n_frames)`` in the frames it covers: in a frame two
    segments share, each weighs by how far the frame lies from its cut edge (linear ramps over
    the overlap), and the weights of every frame sum to 1, so sources that sum to each
    segment's mixture sum to the whole mixture."""
    weights = np.zeros((len(bounds), n_frames))
    for k, (a, b) in enumerate(bounds):
        frames = np.arange(b - a) + 0.5
        w = np.ones(b - a)
        if k > 0:  # fade in over the frames shared with the segment before
            w = np.minimum(w, frames / (bounds[k - 1][1] - a))
        if k < len(bounds) - 1:  # fade out over those shared with the next
            w = np.minimum(w, frames[::-1] / (b - bounds[k + 1][0]))
        weights[k, a:b] = w
    return weights / weights.sum(axis=0)


def _run_batch(separator: SpectralSeparator, S: np.ndarray, R: np.ndarray | None,
               seed: int) -> np.ndarray:
    """One batch with one torch thread (module level: joblib ships it to workers)."""
    import torch

    torch.set_num_threads(1)  # a no-op in this process (_transform pinned it); for workers
    return separator._separate_spectra(S, R, seed)


class VEMSeparator(SpectralSeparator):
    """Base of the separators that run the audio VEM (MixDVAE, VKF, Deep AR).

    Every STFT bin of a mixture is assigned to one source,
    :math:`p(x_{ft} | w_{ft} = n, s) = N_c(x_{ft}; s_{nft}, \\epsilon |x_{ft}|^2)`; a subclass
    gives the sources' dynamics (:meth:`_dynamics`) and, optionally, the variances the sources
    start from (:meth:`_initial_variances`; by default each source's dynamics reconstructs
    the mixture) and the iterations that reach the posterior (:meth:`_posterior`; by default
    the assignment VEM). After ``max_iter`` iterations the sources are read out as the Wiener
    filters of their posterior expected powers :math:`|\\mu_{nft}|^2 + \\nu_{nft}` (so they
    sum to the mixture).
    """

    #: precision of the sources' posteriors (ComplexGaussianBins): single for float32 priors
    _sources_dtype: ClassVar[type] = np.complex64
    #: a long mixture is separated in overlapping segments, batched like mixtures: the VEM's
    #: passes run frame by frame, and a frame of 14 sequences costs 5 times a frame of one
    _segments = (SEGMENT_FRAMES, SEGMENT_OVERLAP)

    _vem_constraints: ClassVar[dict] = {
        "sample_rate": [Interval(Integral, 1, None, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _resolve_device(self) -> None:
        from mixest.dvae._training import resolve_device

        try:
            self.device_ = resolve_device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"device={self.device!r}: {exc}") from exc

    def _dynamics(self, n_mixtures: int):
        """The sources' :class:`~mixest.mixture.Dynamics` for a batch of ``n_mixtures``."""
        raise NotImplementedError

    def _initial_variances(self, obs: np.ndarray, references: np.ndarray | None):
        """Variances ``(B, T, N, F)`` the sources start from, or None for the dynamics'
        reconstruction of the mixture (``obs`` time-major ``(B, T, F)``)."""
        return None

    def _separate_spectra(self, S, references, seed):
        from mixest.separation._vem_models import ComplexGaussianBins

        obs = np.ascontiguousarray(np.moveaxis(S, -1, -2))  # time-major (B, T, F)
        # (the initialisation alone is returned in double precision: no VEM to save memory in)
        model = ComplexGaussianBins(self.epsilon, self._initial_variances(obs, references),
                                    np.complex128 if self.max_iter == 0 else self._sources_dtype)
        dynamics = self._dynamics(len(S))
        if self.max_iter == 0:  # the initialisation: Wiener filters of the start variances
            data, params = model.prepare(obs, self.n_sources_)
            sources, _ = model.initialize(data, params, self.n_sources_, dynamics, None)
        else:
            return wiener_read_out(obs, *self._posterior(obs, model, dynamics, seed))
        return np.ascontiguousarray(sources.transpose(0, 2, 3, 1))

    def _posterior(self, obs, model, dynamics, seed) -> tuple[np.ndarray, np.ndarray]:
        """The sources' posterior means and variances ``(B, T, N, F)`` after ``max_iter``
        iterations from the mixtures ``obs`` (time-major ``(B, T, F)``): by default the last
        iterate of the assignment VEM (:func:`mixest.mixture.run_vem` with ``model``)."""
        from mixest.mixture import run_vem

        # nothing reads the bound
        result = run_vem(obs, model, dynamics, n_sources=self.n_sources_,
                         max_iter=self.max_iter, tol=0, keep="last", bound=False,
                         random_state=np.random.default_rng(seed))
        return result.means, result.covs


def wiener_read_out(obs: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """The sources' STFTs ``(B, N, F, T)`` as the Wiener filters of their posterior expected
    powers :math:`|\\mu|^2 + \\nu` (``means``, ``covs``: ``(B, T, N, F)``) applied to the
    mixtures ``obs`` ``(B, T, F)``: they sum to the mixture exactly, where the assignment
    model's posterior means alone are shrunk bin by bin."""
    power = np.abs(means).astype(float) ** 2 + covs
    sources = power / power.sum(axis=2, keepdims=True) * obs[:, :, None]
    return np.ascontiguousarray(sources.transpose(0, 2, 3, 1))
