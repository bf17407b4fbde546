"""Speed and memory: tracking seconds per sequence, separation real-time factor, kernels.

Every configuration runs in a fresh process (this file run as a script, also for a baseline
version: both are timed by the same code), so its peak resident memory is its own; with
``n_jobs`` > 1 it is the peak of its and its worker processes' memory together (sampled).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["ew_ratio", "perf", "run_isolated", "separation_run", "tracking_run"]

_STEPS = ("init", "e_w", "e_z", "e_s", "m", "bound")


def _rss_mib(pid: int | str) -> float:
    """A process's current resident memory (``/proc`` status ``VmRSS``), MiB; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children() -> list[str]:
    return [pid for tasks in Path(f"/proc/{os.getpid()}/task").glob("*/children")
            for pid in tasks.read_text().split()]


class _TreePeak:
    """Peak resident memory of this process and its child processes together (Linux).

    A thread sums their current RSS every 20 ms: the workers' own peaks cannot be read at the
    end, because joblib's worker processes may be replaced between batches (and their peaks
    lost). Short spikes between two samples can be missed; :attr:`peak_mib` is at least this
    process's own peak.
    """

    def __enter__(self) -> _TreePeak:
        import threading

        self._peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = _rss_mib("self") + sum(_rss_mib(p) for p in _children())
            self._peak = max(self._peak, total)
            self._stop.wait(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return max(self._peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _prior(spec: str):
    """A prior argument: a saved DVAE file becomes the DVAE, names pass through."""
    if spec.endswith(".pt"):
        from mixest.dvae import DVAE

        return DVAE.load(spec)
    return spec


def _spectral_prior(spec: str):
    """A bundled name, a saved DVAE file, or an authors' checkpoint ``model.pt:config.ini``."""
    from mixest.dvae import DVAE

    if spec.endswith(".ini"):
        pt, ini = spec.rsplit(":", 1)
        return DVAE.from_checkpoint(pt, ini)
    return DVAE.load(spec) if spec.endswith(".pt") else DVAE.from_pretrained(spec)


def tracking_run(T: int, n: int, max_iter: int, prior: str = "pretrained:mot",
                 finetune_steps: int = 0, n_jobs: int = 1, device: str = "cpu",
                 seed: int = 0, repeat: int = 3) -> dict:
    """Track ``n`` synthetic hard-protocol sequences of ``T`` frames with ``max_iter`` forced
    iterations (``tol=0``), then with the default stopping rule; timings (the median of
    ``repeat`` runs each) and peak memory (one more run: the thread that samples it takes time
    from the workers on a small machine)."""
    if int(repeat) < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat!r}.")
    import torch

    torch.set_num_threads(2)
    from mixest import MixDVAETracker
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(n, 3, T, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=seed, box_format="xyxy", image_size=None)
    est = MixDVAETracker(3, prior=_prior(prior), max_iter=max_iter, tol=0.0, batch_size=n,
                         finetune_steps=finetune_steps, box_format="xyxy", image_size=(1, 1),
                         n_jobs=n_jobs, device=device, random_state=seed).fit(X)
    est.predict(X[:2 * n_jobs])  # warm-up: Numba cache, torch kernels, worker processes

    def median_seconds():
        times = []
        for _ in range(repeat):
            tic = time.perf_counter()
            est.predict(X)
            times.append(time.perf_counter() - tic)
        return float(np.median(times))

    total = median_seconds()
    steps = dict(est.timings_)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with _TreePeak() as memory:
        est.predict(X)
    rss = 1024 * memory.peak_mib
    est.set_params(tol=1e-4)  # the default stopping rule (converged sequences frozen)
    default = median_seconds()
    return {"T": T, "n": n, "n_jobs": n_jobs, "device": device,
            "iterations": max_iter, "ms_per_sequence": 1e3 * total / n,
            "steps": {k: steps.get(k, 0.0) for k in _STEPS},
            "default_ms_per_sequence": 1e3 * default / n,
            "default_iterations": int(est.n_iter_.max()),
            "peak_rss_mib": rss / 1024, "rss_before_mib": rss0 / 1024}


def separation_run(T: int, n: int, max_iter: int, priors: tuple[str, ...] = ("speech", "flute"),
                   n_jobs: int = 1, device: str = "cpu", backend: str | None = None,
                   observation: str = "assignment") -> dict:
    """Separate ``n`` mixtures of ``T`` STFT frames with ``max_iter`` VEM iterations: the
    real-time factor, peak memory and (one process, the assignment model) the seconds per VEM
    step. ``priors``: bundled names, DVAE files or the authors' ``model.pt:config.ini``
    checkpoints; ``backend``: the ``n_jobs`` workers are the separator's own choice (None:
    threads for SRNN priors, else processes), or "processes" or "threads" whatever the priors;
    ``observation``: the separator's observation model."""
    import joblib
    import torch

    from mixest.separation import MixDVAESeparator

    if backend not in (None, "processes", "threads"):
        raise ValueError(f"backend must be None, 'processes' or 'threads', got {backend!r}.")
    torch.set_num_threads(1)
    models = [_spectral_prior(p) for p in priors]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, T * 256)) * 0.1  # the cost does not depend on the signal
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sep = MixDVAESeparator(priors=models, max_iter=max_iter, batch_size=-(-n // n_jobs),
                           n_jobs=n_jobs, device=device, observation=observation,
                           random_state=0).fit(X)
    if backend is None:
        backend = sep._workers()
    with joblib.parallel_config(backend="threading" if backend == "threads" else "loky"):
        # warm-up on short mixtures: Numba cache, torch kernels, the worker processes
        sep.set_params(batch_size=1).transform(X[:n_jobs, :8 * 256])
        sep.set_params(batch_size=-(-n // n_jobs))
        with _TreePeak() as memory:
            tic = time.perf_counter()
            sep.transform(X)
            seconds = time.perf_counter() - tic
    peak = 1024 * memory.peak_mib
    steps = {}
    if n_jobs == 1 and device == "cpu" and observation == "assignment":
        # per-step seconds of one batch, through the engine
        from mixest.mixture import run_vem
        from mixest.separation import stft
        from mixest.separation._vem_models import ComplexGaussianBins, SpectralDVAEDynamics

        S = np.ascontiguousarray(np.moveaxis(stft(X[: min(8, n)]), -1, -2))
        res = run_vem(S, ComplexGaussianBins(), SpectralDVAEDynamics([m.module_ for m in models]),
                      n_sources=len(models), max_iter=5, tol=0, keep="last", bound=False)
        steps = {k: v / 5 for k, v in res.timings.items() if k != "init"}
    audio = n * T * 256 / 16000
    return {"T": T, "n": n, "n_jobs": n_jobs, "device": device, "backend": backend,
            "observation": observation, "seconds": seconds,
            "audio_seconds": audio, "rtf": seconds / audio, "peak_rss_mib": peak / 1024,
            "rss_before_mib": base_rss / 1024, "steps": steps}


def ew_ratio(n: int = 128, T: int = 60, K: int = 3, N: int = 3, D: int = 4,
             repeat: int = 20) -> dict:
    """Seconds of the tracking E-W kernel, Numba and its NumPy twin, on random inputs."""
    from mixest._kernels._estep_w import e_w_numba, e_w_numpy

    rng = np.random.default_rng(0)
    obs = rng.random((n, T, K, D))
    valid = rng.random((n, T, K)) > 0.3
    phi = rng.uniform(1e-5, 1e-3, (n, T, K, D))
    means, covs = rng.random((n, T, N, D)), rng.uniform(1e-6, 1e-4, (n, T, N, D))
    lp = np.full((n, N + 1), -np.log(N + 1))
    args = (obs, valid, phi, means, covs, lp, 0.0, 1.0)
    e_w_numba(*args)  # compile
    times = {}
    for name, fn in (("numba", e_w_numba), ("numpy", e_w_numpy)):
        tic = time.perf_counter()
        for _ in range(repeat):
            fn(*args)
        times[name] = (time.perf_counter() - tic) / repeat
    return {"shape": [n, T, K, N], **times}


def version_run() -> dict:
    """Which mixest a run imports (the one first on its path)."""
    import mixest

    return {"file": mixest.__file__, "version": getattr(mixest, "__version__", None)}


_RUNS = {"tracking": tracking_run, "separation": separation_run, "version": version_run}


def run_isolated(kind: str, source: str | None = None, **params) -> dict:
    """``tracking_run`` or ``separation_run`` in a fresh Python process (its own peak memory,
    two BLAS/Numba threads); ``source``: the folder of another mixest version to run instead
    (its ``mixest`` package comes first on the path; this file's runs time it)."""
    import mixest

    # the version's folder first on the path and as the working directory: ``python -m`` puts
    # the working directory before everything, so a run started inside another checkout
    # would import that one
    root = str(source or Path(mixest.__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", NUMBA_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")]
                                                    if p]))
    # this file as the script, whichever version runs: both are timed the same way
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), kind,
                          json.dumps(params)], env=env, cwd=root, capture_output=True, text=True)
    if out.returncode != 0:
        who = "" if source is None else f" of the baseline {source}"
        raise RuntimeError(f"the {kind} run {params}{who} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def perf(*, tracking_lengths: tuple[int, ...] = (60, 120, 300),
         n_sequences: tuple[int, ...] = (128,), separation_lengths: tuple[int, ...] = (300,),
         n_mixtures: tuple[int, ...] = (24,), max_iter: int = 70,
         n_jobs: tuple[int, ...] = (1, 2), devices: tuple[str, ...] = ("cpu",),
         observations: tuple[str, ...] = ("assignment",), baseline: str | None = None,
         verbose: bool = True) -> list[dict]:
    """Every configuration (length x batch x device x processes; one process on CUDA), one
    fresh process each: records of tracking and separation runs and of the E-W kernel pair.

    ``observations``: the separator's observation models to time (``"assignment"``, the
    paper's, and ``"additive"``), each in every separation configuration.

    ``baseline``: the folder of another mixest version (a checkout of an earlier release or
    commit), run just before this one in every configuration, so that both figures come from
    the same stretch of the machine's time; its record is the ``"baseline"`` entry of each.
    """

    unknown = set(observations) - {"assignment", "additive"}
    if unknown or not observations:
        raise ValueError("observations must be a non-empty selection of 'assignment' and "
                         f"'additive', got {observations!r}.")

    def grid(kind, lengths, batches, extra=({},)):
        return [(kind, {"T": T, "n": n, "max_iter": max_iter, "n_jobs": j, "device": d, **e})
                for T in lengths for n in batches for d in devices
                for j in (n_jobs if d == "cpu" else (1,)) for e in extra]

    configs = (grid("tracking", tracking_lengths, n_sequences)
               + grid("separation", separation_lengths, n_mixtures,
                      [{"observation": o} for o in observations]))
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(configs) + 1, desc="perf", unit="configuration")
    records = []
    for kind, params in configs:
        if bar is not None:
            bar.set_postfix_str(f"{kind} T={params['T']} n_jobs={params['n_jobs']} "
                                f"{params['device']} {params.get('observation', '')}")
        before = None if baseline is None else run_isolated(kind, baseline, **params)
        records.append({"kind": kind, **run_isolated(kind, **params)})
        if before is not None:
            records[-1]["baseline"] = before
        if bar is not None:
            bar.update()
    records.append({"kind": "kernel", "name": "tracking E-W", **ew_ratio(n=max(n_sequences))})
    if bar is not None:
        bar.update()
        bar.close()
    return records


def _workers(record: dict) -> str:
    """", threads" or ", processes" for a separation run with several workers (older versions
    recorded no worker kind: nothing)."""
    return f", {record['backend']}" if record["n_jobs"] > 1 and "backend" in record else ""


def markdown(records: list[dict]) -> tuple[str, list[str]]:
    """One table for every kind of record: header and rows."""
    header = ("| run | T | batch | n_jobs | device | figure | per VEM step (share) | "
              "peak RSS MiB |\n|---|---|---|---|---|---|---|---|")
    rows = []
    for r in records:
        if r["kind"] == "kernel":
            rows.append(f"| {r['name']} {tuple(r['shape'])} | | | | cpu | Numba "
                        f"{1e3 * r['numba']:.2f} ms, NumPy {1e3 * r['numpy']:.2f} ms "
                        f"({r['numpy'] / r['numba']:.1f}x) | | |")
            continue
        steps = r["steps"]
        total = sum(steps.values()) or 1.0
        share = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in steps.items())
        base = r.get("baseline")
        if r["kind"] == "tracking":
            figure = (f"{r['ms_per_sequence']:.1f} ms/sequence ({r['iterations']} iterations); "
                      f"{r['default_ms_per_sequence']:.1f} ms with tol=1e-4 "
                      f"({r['default_iterations']} at most)")
            if base is not None:
                forced, default = (r[k] / base[k] for k in ("ms_per_sequence",
                                                            "default_ms_per_sequence"))
                figure += (f"; baseline {base['ms_per_sequence']:.1f} / "
                           f"{base['default_ms_per_sequence']:.1f} ms "
                           f"({forced:.2f}x / {default:.2f}x)")
        else:
            figure = (f"RTF {r['rtf']:.3f} ({r['seconds']:.1f} s for {r['audio_seconds']:.1f} s"
                      f"{_workers(r)})")
            if base is not None:
                figure += (f"; baseline RTF {base['rtf']:.3f}{_workers(base)} "
                           f"({r['rtf'] / base['rtf']:.2f}x)")
        memory = f"{r['peak_rss_mib']:.0f}"
        if base is not None:
            memory += f" (baseline {base['peak_rss_mib']:.0f})"
        run = r["kind"]
        if r.get("observation", "assignment") != "assignment":
            run += f" ({r['observation']})"
        rows.append(f"| {run} | {r['T']} | {r['n']} | {r['n_jobs']} | {r['device']} | "
                    f"{figure} | {share} | {memory} |")
    return header, rows


if __name__ == "__main__":  # one isolated run: python .../mixest/benchmark/_perf.py KIND JSON
    print(json.dumps(_RUNS[sys.argv[1]](**json.loads(sys.argv[2]))))
