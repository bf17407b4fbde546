"""Table 3 (separation): every separator on the same speech + music mixtures."""

from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = ["ROWS", "authors_priors", "table3"]

#: Row labels in table order; ``{priors}`` rows repeat once per prior set, ``[oracle]`` rows
#: read the true sources.
ROWS = ("mixture", "oracle ratio mask [oracle]", "DVAE-init ({priors} priors)",
        "VKF (DVAE-init)", "VKF (oracle init) [oracle]", "Deep AR", "NMF", "temporal NMF",
        "MixDVAE ({priors} priors)")
#: The rows that learn from isolated training audio (``y_train``).
TRAINED = ("VKF (DVAE-init)", "VKF (oracle init) [oracle]", "NMF", "temporal NMF")


def authors_priors(folder) -> list:
    """The MixDVAE authors' released speech (WSJ0) and flute priors, read where they are:
    ``model_scass_{wsj,cbf}.pt`` with ``cfg_dvae_single_scass_{wsj,cbf}.ini``."""
    from pathlib import Path

    from mixest.dvae import DVAE

    d = Path(folder)
    return [DVAE.from_checkpoint(d / f"model_scass_{n}.pt", d / f"cfg_dvae_single_scass_{n}.ini")
            for n in ("wsj", "cbf")]


def scores(Y: np.ndarray, est: np.ndarray) -> dict[str, np.ndarray]:
    """Per-source means over mixtures of SI-SDR, PESQ (wide-band), ESTOI and RMSE."""
    from mixest.separation import pesq_score, scale_optimal_rmse, si_sdr

    out = {"SI-SDR": si_sdr(Y, est).mean(0), "RMSE": scale_optimal_rmse(Y, est).mean(0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["PESQ"] = np.nanmean(pesq_score(Y, est, 16000, mode="wb", on_error="nan"), 0)
        out["ESTOI"] = np.nanmean([[_estoi(y, e) for y, e in zip(ys, es, strict=True)]
                                   for ys, es in zip(Y, est, strict=True)], 0)
    return out


def _estoi(reference: np.ndarray, estimate: np.ndarray) -> float:
    """ESTOI, NaN where the reference is too short once its silences are removed (T = 50)."""
    from mixest.separation import estoi_score

    try:
        return float(estoi_score(reference, estimate, 16000))
    except ValueError:
        return float("nan")


def separators(prior_sets: dict, max_iter: int, n_jobs: int | None,
               seed: int, mixdvae: dict | None = None) -> list[tuple[str, object]]:
    """Every separator row, unfitted: ``(label, estimator)``; ``mixdvae``: parameters of the
    MixDVAE rows other than their defaults, named in their labels."""
    from mixest.baselines import (
        DeepARSeparator,
        NMFSeparator,
        TemporalNMFSeparator,
        VKFSeparator,
    )
    from mixest.separation import MixDVAESeparator

    common = {"random_state": seed, "n_jobs": n_jobs}
    rows = [(f"DVAE-init ({name} priors)", MixDVAESeparator(priors=priors, max_iter=0, **common))
            for name, priors in prior_sets.items()]
    rows += [
        ("VKF (DVAE-init)", VKFSeparator(priors=next(iter(prior_sets.values())),
                                         max_iter=max_iter, **common)),
        ("VKF (oracle init) [oracle]", VKFSeparator(init="oracle", max_iter=max_iter, **common)),
        ("Deep AR", DeepARSeparator(max_iter=max_iter, **common)),
        ("NMF", NMFSeparator(**common)),
        ("temporal NMF", TemporalNMFSeparator(**common)),
    ]
    mixdvae = dict(mixdvae or {})
    variant = "".join(f", {key}={value!r}" for key, value in mixdvae.items())
    rows += [(f"MixDVAE ({name} priors{variant})",
              MixDVAESeparator(priors=priors, max_iter=max_iter, **mixdvae, **common))
             for name, priors in prior_sets.items()]
    return rows


def selected(label: str, methods: tuple[str, ...] | None) -> bool:
    """Whether a row is run: every row without ``methods``, else those starting with one."""
    return methods is None or any(label.startswith(m) for m in methods)


def table3(speech: list[np.ndarray], music: list[np.ndarray], y_train: np.ndarray | None, *,
           prior_sets: dict, labels: tuple[str, str] = ("speech", "music"),
           lengths: tuple[int, ...] = (50, 100, 300),
           ratios: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0), n_mixtures: int = 24,
           max_iter: int = 70, methods: tuple[str, ...] | None = None,
           n_jobs: int | None = None, seed: int = 0, verbose: bool = True,
           mixdvae: dict | None = None) -> list[dict]:
    """Separate the same held-out mixtures with every row.

    Parameters
    ----------
    speech, music : list of ndarray
        Held-out recordings at 16 kHz, each scaled to max |x| = 1; music clips shorter than a
        mixture are joined into one recording.
    y_train : ndarray of shape (1, 2, n_samples) or None
        Isolated training audio of both types for the rows of :data:`TRAINED` (None: those rows
        must not be selected).
    prior_sets : dict
        Name -> the two priors (names, files or fitted DVAEs) of a MixDVAE and DVAE-init row;
        the first set also starts the VKF.
    labels : (str, str)
        Names of the two sources in the columns.
    lengths, ratios, n_mixtures
        STFT frames per mixture (T * 256 samples), speech-to-music ratios in dB, mixtures per
        setting.
    max_iter : int
        VEM iterations of the VEM rows (the last iterate is scored).
    methods : tuple of str, optional
        Only the separator rows whose label starts with one of these (the mixture and the
        oracle mask, the references, are always there).
    n_jobs, seed, verbose
        Processes per separator, the seed of the mixtures and separators, a progress bar.
    mixdvae : dict, optional
        Parameters of the MixDVAE rows' :class:`~mixest.separation.MixDVAESeparator` other
        than their defaults (e.g. ``{"feed": "sample", "epsilon": 0.03}``), named in the rows'
        labels.

    Returns
    -------
    records : list of dict
        One per (T, ratio, row): SI-SDR, PESQ, ESTOI and RMSE per source, the real-time factor
        and a Markdown row.
    """
    from mixest.datasets import make_audio_mixtures
    from mixest.separation._base import oracle_ratio_mask

    rows = [(label, sep) for label, sep in separators(prior_sets, max_iter, n_jobs, seed, mixdvae)
            if selected(label, methods)]
    if y_train is None and any(label in TRAINED for label, _ in rows):
        raise ValueError(f"the rows {list(TRAINED)} learn from isolated training audio: give "
                         "y_train or leave them out of methods")
    # the MixDVAE and Deep AR rows only load their priors: any mixture will do for fit
    fit_X = speech[0][None] if y_train is None else y_train.sum(1)
    for _, sep in rows:
        sep.fit(fit_X, y_train)
    cells = [(T, r) for T in lengths for r in ratios]
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(cells, desc="table3", unit="setting")
    records = []
    for T, ratio in cells:
        pool = music
        if max(len(m) for m in music) < T * 256:  # short clips: join them
            pool = [np.concatenate(music)]
        X, Y = make_audio_mixtures(speech, pool, n_mixtures=n_mixtures, n_frames=T,
                                   ratio_db=ratio, random_state=seed + T)
        runs = [("mixture", lambda X=X: np.repeat(X[:, None], 2, 1)),
                ("oracle ratio mask [oracle]", lambda X=X, Y=Y: oracle_ratio_mask(X, Y))]
        for label, sep in rows:
            oracle = label.endswith("[oracle]")
            runs.append((label, lambda X=X, Y=Y, sep=sep, oracle=oracle:
                         sep.transform(X, Y) if oracle else sep.transform(X)))
        audio_seconds = X.size / 16000
        for label, run in runs:
            t0 = time.perf_counter()
            est = run()
            rtf = (time.perf_counter() - t0) / audio_seconds
            s = scores(Y, est)
            cells_md = [" / ".join(f"{v:.2f}" for v in s[k])
                        for k in ("SI-SDR", "PESQ", "ESTOI", "RMSE")]
            line = f"| {T} | {ratio:+.0f} | {label} | " + " | ".join(cells_md) + f" | {rtf:.3f} |"
            records.append({"T": T, "ratio_db": ratio, "method": label, "rtf": rtf,
                            "markdown": line,
                            **{f"{k} {src}": float(v) for k in s
                               for src, v in zip(labels, s[k], strict=True)}})
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return records


def header(labels: tuple[str, str]) -> str:
    """The Markdown header of :func:`table3`'s rows."""
    return (f"| T | ratio | method | SI-SDR {labels[0]} / {labels[1]} | PESQ | ESTOI | RMSE "
            "| RTF |\n|---|---|---|---|---|---|---|---|")
