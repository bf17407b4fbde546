"""The ``mixest`` command line: ``mixest track``, ``mixest separate`` and ``mixest demo``.

``mixest track det.txt --n-sources 3 --frames 1:60 --output result.txt [--plot [tracks.png]]``
reads a MOTChallenge detection file (and the ``seqinfo.ini`` next to it or its parent folder for
the image size), tracks ``N`` objects over the frame range and writes a MOTChallenge result file.

``mixest separate mix.wav --out-dir sources --priors speech,flute [--plot [spectrograms.png]]``
separates a single-channel recording with :class:`~mixest.separation.MixDVAESeparator`, one
spectral DVAE prior per source, and writes one WAV file per source at the recording's rate.

``mixest demo`` tracks a few synthetic 3-object sequences with the bundled prior and prints MOTA,
IDF1 and ID switches next to the greedy floor.

Tracking methods are looked up in :data:`METHODS` (name -> ``"module:factory"``); a factory takes
the parsed arguments and returns an unfitted tracker, so new methods are one line each. The
options ``--prior``, ``--max-iter`` and ``--seed`` a method takes, and their defaults, are in
:data:`METHOD_OPTIONS`; the command refuses the others rather than ignoring them.

Errors are one line on stderr, without a traceback: exit status 2 for a command line to fix (an
option, the frame range, the output path), 1 for an input file (or a bundled prior) that cannot
be used.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NoReturn

import numpy as np

__all__ = ["main", "METHODS", "METHOD_OPTIONS", "PRIORS", "SEPARATE_PRIORS"]

#: ``--method`` name -> ``"module:callable"``; the callable maps parsed arguments to a tracker.
#: A class is called with ``n_sources``, ``box_format``, ``image_size`` and the options of
#: :data:`METHOD_OPTIONS` it takes (``prior``, ``max_iter``, ``random_state``).
METHODS: dict[str, str] = {
    "mixdvae": "mixest.cli:_make_mixdvae",
    "greedy": "mixest.cli:_make_greedy",
    "vkf": "mixest.baselines:VKFTracker",
    "deep-ar": "mixest.baselines:DeepARTracker",
    "sort": "mixest.baselines:SORTTracker",
}

#: ``--method`` name -> the options ``prior``, ``max_iter``, ``seed`` it takes, with defaults.
#: An option a method does not take is refused when given, never ignored. ``--seed`` goes to
#: the methods with random draws (the variational EM trackers); SORT and greedy are
#: deterministic, so a seed would change nothing and is refused.
METHOD_OPTIONS: dict[str, dict[str, object]] = {
    "mixdvae": {"prior": "pretrained:mot", "max_iter": 70, "seed": 0},
    "vkf": {"max_iter": 30, "seed": 0},
    "deep-ar": {"prior": "pretrained:mot-ar", "max_iter": 30, "seed": 0},
    "sort": {},
    "greedy": {},
}

#: ``--method`` name -> its ``--prior`` choices; ``"FILE.pt"`` stands for a DVAE saved with
#: :meth:`mixest.dvae.DVAE.save`.
PRIORS: dict[str, tuple[str, ...]] = {
    "mixdvae": ("pretrained:mot", "constant-velocity", "FILE.pt"),
    "deep-ar": ("pretrained:mot-ar", "train"),
}

_FLAGS = {"prior": "--prior", "max_iter": "--max-iter", "seed": "--seed"}
_WHY_NOT = {
    "prior": "it has no learned dynamics prior",
    "max_iter": "it runs no variational EM iterations",
    "seed": "it is deterministic",
}


def _fail(message: object, status: int = 2) -> NoReturn:
    """Exit with a one-line message: 2 for the command line, 1 for an unusable input file."""
    print(f"mixest: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(status)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _make_mixdvae(args: argparse.Namespace, image_size: tuple[float, float]):
    from mixest.tracking._tracker import MixDVAETracker

    return MixDVAETracker(n_sources=args.n_sources, prior=_load_prior(args.prior),
                          max_iter=args.max_iter, box_format="xywh", image_size=image_size,
                          random_state=args.seed)


def _make_greedy(args: argparse.Namespace, image_size: tuple[float, float]):
    from mixest.baselines import GreedyTracker

    return GreedyTracker(n_sources=args.n_sources, box_format="xywh")


def make_tracker(method: str, args: argparse.Namespace, image_size: tuple[float, float]):
    """Build the tracker registered under ``method`` in :data:`METHODS`.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    args : argparse.Namespace
        Parsed ``mixest track`` arguments, with the method's options resolved (see
        :data:`METHOD_OPTIONS`).
    image_size : tuple of float
        ``(width, height)`` of the images in pixels.

    Returns
    -------
    tracker : estimator
        An unfitted tracker working on ``"xywh"`` pixel boxes.
    """
    if method not in METHODS:
        _fail(f"unknown --method {method!r}; choose from {', '.join(sorted(METHODS))}")
    module, name = METHODS[method].split(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        _fail(f"method {method!r} is not available in this installation ({exc})", 1)
    if isinstance(factory, type):  # an estimator class: common keyword arguments
        takes = METHOD_OPTIONS.get(method, {})
        options = {"prior": "prior", "max_iter": "max_iter", "seed": "random_state"}
        kwargs = {options[k]: getattr(args, k) for k in takes}
        return factory(n_sources=args.n_sources, box_format="xywh", image_size=image_size,
                       **kwargs)
    return factory(args, image_size)


def _resolve_options(args: argparse.Namespace) -> None:
    """Refuse the options ``args.method`` does not take; fill in its defaults for the others."""
    if args.method not in METHODS:
        _fail(f"unknown --method {args.method!r}; choose from {', '.join(sorted(METHODS))}")
    takes = METHOD_OPTIONS.get(args.method, {})
    for name, flag in _FLAGS.items():
        given = getattr(args, name)
        if name not in takes:
            if given is not None:
                users = [m for m in sorted(METHOD_OPTIONS) if name in METHOD_OPTIONS[m]]
                _fail(f"{flag} does not apply to --method {args.method}: {_WHY_NOT[name]} "
                      f"({flag} applies to {', '.join(users)})")
        elif given is None:
            setattr(args, name, takes[name])
    if "prior" in takes:
        args.prior = _check_prior(args.method, args.prior)
    if "max_iter" in takes and args.max_iter < 1:
        _fail(f"--max-iter must be at least 1, got {args.max_iter}")
    if "seed" in takes and not 0 <= args.seed < 2**32:
        _fail(f"--seed must be an integer in [0, 2**32), got {args.seed}")


def _check_prior(method: str, prior: str) -> str:
    """Check ``--prior`` against :data:`PRIORS` before any file is read or model trained."""
    choices = PRIORS.get(method)
    if choices is None:  # a method registered without a list: its tracker checks the prior
        return prior
    if prior in choices and prior != "FILE.pt":  # FILE.pt is a placeholder, not a name
        return prior
    if "FILE.pt" in choices and prior.endswith(".pt"):
        if not Path(prior).is_file():
            _fail(f"--prior {prior}: file not found", 1)
        return prior
    if method == "mixdvae" and prior == "train":
        _fail("--prior train needs ground-truth tracks, which mixest track does not read; train "
              "a mixest.dvae.DVAE in Python, save() it and pass the .pt file as --prior")
    _fail(f"--prior {prior!r} is not a prior of --method {method}; choose from "
          f"{', '.join(choices)}")


def _load_prior(prior: str) -> object:
    """A ``.pt`` prior becomes a fitted DVAE; the named priors go to the tracker as they are."""
    if not prior.endswith(".pt"):
        return prior
    from mixest.dvae import DVAE

    try:
        return DVAE.load(prior)
    except (OSError, ValueError) as exc:
        _fail(f"--prior {prior}: {exc}", 1)


def _parse_targets(texts: list[str] | None) -> np.ndarray | None:
    """``--targets`` as an ``(N, 4)`` array of ``xywh`` boxes (finite, positive sizes)."""
    if texts is None:
        return None
    boxes = []
    for text in texts:
        try:
            box = [float(v) for v in text.split(",")]
        except ValueError:
            box = []
        if len(box) != 4 or not np.all(np.isfinite(box)) or min(box[2:]) <= 0:
            _fail(f"--targets: each box must look like X,Y,W,H (pixels, finite, W and H > 0), "
                  f"got {text!r}")
        boxes.append(box)
    return np.array(boxes)


def _parse_frames(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        _fail(f"--frames must look like FIRST:LAST (1-based, inclusive), got {text!r}")
    if first < 1:
        _fail(f"--frames: frames are 1-based, got FIRST = {first}")
    if last < first:
        _fail(f"--frames: LAST must be >= FIRST, got {text!r}")
    return first, last


def _frame_range(
    frames: tuple[int, int] | None, table, det: Path
) -> tuple[int, int]:
    """The frames to track: ``--frames`` clipped to the file's first and last detection.

    Frames without detections inside the range are tracked (missing detections are valid
    input); a range with no detection at all is refused rather than filled with guesses.
    """
    first_det, last_det = int(table["frame"].min()), int(table["frame"].max())
    if frames is None:
        return first_det, last_det
    first, last = frames
    in_range = (table["frame"] >= first) & (table["frame"] <= last)
    if not in_range.any():
        _fail(f"--frames {first}:{last}: {det} has no detections in these frames (its "
              f"detections span frames {first_det}-{last_det})")
    clipped = max(first, first_det), min(last, last_det)
    if clipped != (first, last):
        print(f"mixest: note: --frames {first}:{last} clipped to {clipped[0]}:{clipped[1]}, the "
              f"first and last frames with detections in {det}", file=sys.stderr)
    return clipped


def _find_seqinfo(det: Path, given: str | None) -> Path | None:
    if given is not None:
        return Path(given)
    for folder in (det.parent, det.parent.parent):
        if (folder / "seqinfo.ini").is_file():
            return folder / "seqinfo.ini"
    return None


def _image_size(det: Path, args: argparse.Namespace) -> tuple[float, float]:
    """``(width, height)`` from the seqinfo.ini, else from ``--image-size``."""
    from mixest.tracking._motchallenge import read_seqinfo

    seqinfo = _find_seqinfo(det, args.seqinfo)
    if seqinfo is None:
        size = tuple(float(v) for v in args.image_size)
        if not all(math.isfinite(v) and v > 0 for v in size):
            _fail(f"--image-size must be two positive numbers, got {args.image_size}")
        return size
    try:
        info = read_seqinfo(seqinfo)
    except (OSError, ValueError) as exc:
        _fail(exc, 1)
    size = []
    for key, field in (("im_width", "imWidth"), ("im_height", "imHeight")):
        if key not in info:
            _fail(f"{seqinfo}: [Sequence] has no {field} (the image size in pixels)", 1)
        value = info[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= 0:
            _fail(f"{seqinfo}: {field} must be a positive number of pixels, got {value!r}", 1)
        size.append(float(value))
    return size[0], size[1]


def _check_output(text: str, flag: str) -> Path:
    """Fail before any tracking if ``text`` cannot become a file; creates its folder."""
    path = Path(text)
    if path.is_dir():
        _fail(f"{flag} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"{flag} {path}: cannot create the folder {path.parent} ({exc.strerror})")
    if not os.access(path.parent, os.W_OK):
        _fail(f"{flag} {path}: the folder {path.parent} is not writable")
    return path


def _check_plot(text: str) -> Path:
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:  # pragma: no cover - matplotlib is a dependency of mixest
        _fail("--plot needs matplotlib; install it with `pip install matplotlib`", 1)
    path = _check_output(text, "--plot")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        what = f"{path.suffix!r} files" if path.suffix else "a file without an extension"
        _fail(f"--plot {path}: matplotlib cannot write {what}; use one of "
              f"{', '.join('.' + e for e in sorted(formats))}")
    return path


def _track(args: argparse.Namespace) -> int:
    from mixest.tracking._motchallenge import (
        detections_to_array,
        read_mot,
        tracks_to_table,
        write_mot,
    )

    # Everything the command line can get wrong is checked before the (possibly long) tracking.
    targets = _parse_targets(args.targets)
    if targets is not None and args.n_sources not in (None, len(targets)):
        _fail(f"--targets gives {len(targets)} box{'es' * (len(targets) != 1)} but "
              f"--n-sources is {args.n_sources}")
    args.n_sources = len(targets) if targets is not None else args.n_sources or 3
    _resolve_options(args)
    frames = _parse_frames(args.frames)
    out = _check_output(args.output, "--output")
    plot = None if args.plot is None else _check_plot(args.plot or str(out.with_suffix(".png")))
    if plot is not None and plot.resolve() == out.resolve():
        _fail(f"--plot {plot} is the --output file; give the plot another name")
    det = Path(args.detections)
    if not det.is_file():
        _fail(f"detection file not found: {det}", 1)
    if out.resolve() == det.resolve():
        _fail(f"--output {out} is the detection file; writing there would overwrite it")
    try:
        table = read_mot(det)
    except (OSError, ValueError) as exc:
        _fail(exc, 1)
    image_size = _image_size(det, args)
    first, last = _frame_range(frames, table, det)
    X = detections_to_array(table, frames=np.arange(first, last + 1))[None]
    if targets is not None:  # the first frame holds the objects to track, alone
        K = max(X.shape[2], len(targets))
        X = np.concatenate([X, np.full(X.shape[:2] + (K - X.shape[2], 4), np.nan)], 2)
        X[0, 0] = np.nan
        X[0, 0, :len(targets)] = targets
    tracker = make_tracker(args.method, args, image_size)
    training = getattr(args, "prior", None) == "train" and not args.quiet
    if training:  # the one long step, training a network before tracking: a progress bar
        print(f"training the {args.method} network on synthetic trajectories first "
              "(about a minute)", file=sys.stderr)
    tic = time.perf_counter()
    try:
        has_bar = "verbose" in tracker.get_params()
        if has_bar:
            tracker.set_params(verbose=training)
        tracker.fit(X)
        if has_bar:  # the VEM's own verbose output is a bound per iteration: not for users
            tracker.set_params(verbose=False)
        tracks = tracker.predict(X)[0]
    except ValueError as exc:  # input the tracker cannot use, e.g. too few frames
        _fail(f"--method {args.method} cannot track {det} frames {first}-{last}: {exc}", 1)
    seconds = time.perf_counter() - tic
    write_mot(out, tracks_to_table(tracks, frame_offset=first))
    say = (lambda *a: None) if args.quiet else print
    say(f"tracked {_plural(args.n_sources, 'object')} over frames {first}-{last} with "
        f"{args.method} in {seconds:.2f} s -> {out}")
    if plot is not None:
        _plot(X[0], tracks, first, plot)
        say(f"plot -> {plot}")
    return 0


def _plot(X: np.ndarray, tracks: np.ndarray, first_frame: int, path: Path,
          box_format: str = "xywh") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixest.tracking._plot import plot_tracks

    fig = plot_tracks(X, tracks, box_format=box_format, first_frame=first_frame)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: ``--priors`` of ``mixest separate``: the bundled spectral priors, one per source.
SEPARATE_PRIORS = "speech,flute"


def _is_prior_path(item: str) -> bool:
    """A ``--priors`` item is a file when it holds a path separator or ends with ``.pt``."""
    seps = {"/", os.sep, os.altsep} - {None}
    return item.endswith(".pt") or any(sep in item for sep in seps)


def _parse_priors(text: str, method: str = "mixdvae") -> tuple[list[str], list[str]]:
    """``--priors`` as separator priors and source names, checked before any work.

    A name must be a bundled prior whose weights are installed; a path must be a file (it is
    read, and checked to be an Itakura-Saito prior on 513 bins, by the separator's ``fit``).
    ``--method deep-ar`` takes the names of bundled Deep AR networks only.
    """
    from mixest.pretrained._registry import weight_path

    items = [item.strip() for item in text.split(",")]
    if not all(items):
        _fail(f"--priors {text!r} has an empty item; give comma-separated bundled prior names or "
              f"DVAE files, one per source, e.g. {SEPARATE_PRIORS}")
    if len(items) < 2:
        _fail(f"--priors {text!r} names {_plural(len(items), 'prior')}; give at least two, one "
              f"per source, e.g. {SEPARATE_PRIORS}")
    specs, names = [], []
    for item in items:
        if method == "deep-ar":
            from mixest.baselines._deep_ar_separator import PRETRAINED_SPECTRAL_AR

            name = item.removeprefix("pretrained:")
            if name not in PRETRAINED_SPECTRAL_AR:
                _fail(f"--priors {item}: --method deep-ar takes the bundled Deep AR networks "
                      f"({', '.join(PRETRAINED_SPECTRAL_AR)}), or --train to train its own", 1)
            specs.append(f"pretrained:{name}")
            names.append(name.removesuffix("-ar"))
            continue
        if _is_prior_path(item):
            path = Path(item)
            if not path.is_file():
                _fail(f"--priors {item}: file not found", 1)
            specs.append(str(path))
            names.append(path.stem)
            continue
        name = item.removeprefix("pretrained:")
        try:
            weight_path(name)
        except ValueError as exc:  # not a bundled name: the registry lists the available ones
            _fail(f"--priors {item}: {exc} A DVAE saved with DVAE.save can be given by its path "
                  "(FILE.pt) instead.", 1)
        except FileNotFoundError as exc:  # a bundled name whose weights are not installed
            _fail(f"--priors {item}: {exc}", 1)
        specs.append(f"pretrained:{name}")
        names.append(name)
    return specs, _source_labels(names)


def _source_labels(names: list[str]) -> list[str]:
    """The names, with ``_1``, ``_2``, ... after those that occur more than once."""
    counts = Counter(names)
    used: set[str] = set()
    labels = []
    for name in names:
        label, k = name, 0
        while counts[name] > 1 and (label in used or label in counts):
            k += 1
            label = f"{name}_{k}"
        used.add(label)
        labels.append(label)
    return labels


def _check_out_dir(text: str, stem: str, labels: list[str]) -> list[Path]:
    """The source files ``DIR/<stem>_<label>.wav``; fails before any work, creates ``DIR``."""
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        _fail(f"--out-dir {folder} is a file; give a folder (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"--out-dir {folder}: cannot create the folder ({exc.strerror})")
    if not os.access(folder, os.W_OK):
        _fail(f"--out-dir {folder}: the folder is not writable")
    paths = [folder / f"{stem}_{label}.wav" for label in labels]
    for path in paths:
        if path.is_dir():
            _fail(f"--out-dir {folder}: {path.name} is a folder there; the source cannot be "
                  "written")
    return paths


def _read_mixture(text: str) -> tuple[np.ndarray, int]:
    from mixest.separation import read_audio

    try:
        x, rate = read_audio(text)
    except FileNotFoundError:
        _fail(f"mixture file not found: {text}", 1)
    except (ValueError, TypeError, RuntimeError, ImportError) as exc:
        _fail(f"cannot read the mixture {text}: {exc}", 1)
    if not np.any(x):
        _fail(f"the mixture {text} is silent (every sample is zero): nothing to separate", 1)
    return x, rate


def _check_device(device: str) -> None:
    from mixest.dvae._training import resolve_device

    try:
        resolve_device(device)
    except RuntimeError as exc:
        _fail(f"--device {device}: {exc} Use --device cpu or auto.")


#: ``mixest separate --method`` name -> separator class (``"module:name"``).
SEPARATE_METHODS: dict[str, str] = {
    "mixdvae": "mixest.separation:MixDVAESeparator",
    "vkf": "mixest.baselines:VKFSeparator",
    "deep-ar": "mixest.baselines:DeepARSeparator",
    "nmf": "mixest.baselines:NMFSeparator",
    "tnmf": "mixest.baselines:TemporalNMFSeparator",
}

#: ``mixest separate --method`` name -> the options it takes, with their defaults (None: the
#: separator's own default). ``train`` is True where ``--train`` is required, False where it is
#: optional. An option a method does not take is refused when given, never ignored.
SEPARATE_OPTIONS: dict[str, dict[str, object]] = {
    "mixdvae": {"priors": SEPARATE_PRIORS, "max_iter": 70, "device": "cpu", "seed": 0,
                "epsilon": None, "observation": "assignment", "n_jobs": None},
    "vkf": {"priors": SEPARATE_PRIORS, "train": True, "max_iter": 70, "device": "cpu",
            "seed": 0, "epsilon": None, "n_jobs": None},
    "deep-ar": {"priors": "speech-ar,flute-ar", "train": False, "max_iter": 70,
                "device": "cpu", "seed": 0, "epsilon": None, "n_jobs": None},
    "nmf": {"train": True, "max_iter": None, "seed": 0},
    "tnmf": {"train": True, "max_iter": None, "seed": 0},
}
_SEPARATE_FLAGS = {"priors": "--priors", "train": "--train", "max_iter": "--max-iter",
                   "device": "--device", "epsilon": "--epsilon", "observation": "--observation",
                   "n_jobs": "--n-jobs"}
_SEPARATE_WHY_NOT = {
    "priors": "it learns its source models from --train",
    "device": "it runs on the CPU only (NumPy)",
    "epsilon": "it has no observation noise",
    "observation": "the additive model is MixDVAE's",
    "n_jobs": "it separates a recording in one batch, on one worker",
}
#: isolated audio read per source from ``--train`` folders (beyond it, files are left out)
TRAIN_MINUTES = 10.0


def _separate_options(args: argparse.Namespace) -> dict[str, object]:
    """The options of ``args.method``: refuse those it does not take, fill in defaults."""
    takes = SEPARATE_OPTIONS[args.method]
    for name, flag in _SEPARATE_FLAGS.items():
        if getattr(args, name) is not None and name not in takes:
            _fail(f"{flag} does not apply to --method {args.method}: "
                  f"{_SEPARATE_WHY_NOT.get(name, 'it has no such setting')}")
    if takes.get("train") is True and args.train is None:
        _fail(f"--method {args.method} learns its source models from isolated recordings: give "
              "--train DIR1,DIR2 (one folder per source)")
    if args.method == "deep-ar" and args.train is not None and args.priors is not None:
        _fail("--method deep-ar takes --priors (bundled networks) or --train (networks trained "
              "on your recordings), not both")
    return {name: getattr(args, name) if getattr(args, name) is not None else default
            for name, default in takes.items()}


def _parse_train(text: str) -> tuple[list[Path], list[str]]:
    """``--train`` folders, one per source, checked before any work."""
    items = [item.strip() for item in text.split(",")]
    if not all(items) or len(items) < 2:
        _fail(f"--train {text!r}: give at least two comma-separated folders of isolated "
              "recordings, one per source")
    folders = [Path(item) for item in items]
    for folder in folders:
        if not folder.is_dir():
            _fail(f"--train {folder}: not a folder", 1)
    return folders, _source_labels([f.name for f in folders])


def _read_training_audio(folders: list[Path]) -> np.ndarray:
    """Isolated sources ``(1, N, n_samples)`` at 16 kHz: each folder's files joined (sorted
    by name), all cut to the shortest and to :data:`TRAIN_MINUTES`."""
    from mixest.datasets import load_audio_folder

    signals = []
    for folder in folders:
        try:
            signals.append(np.concatenate(load_audio_folder(folder, 16000)))
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            _fail(f"--train {folder}: {exc}", 1)
    n = min(int(TRAIN_MINUTES * 60 * 16000), *(len(x) for x in signals))
    return np.stack([x[:n] for x in signals])[None]


def _make_separator(method: str, options: dict, specs: list[str] | None, n_sources: int,
                    rate: int, quiet: bool):
    """The unfitted separator of ``--method`` with the options it takes."""
    import importlib

    module, name = SEPARATE_METHODS[method].split(":")
    cls = getattr(importlib.import_module(module), name)
    params = {"sample_rate": rate, "random_state": options["seed"], "verbose": not quiet}
    if "device" in options:
        params["device"] = options["device"]
    for name in ("max_iter", "epsilon", "observation", "n_jobs"):
        if options.get(name) is not None:
            params[name] = options[name]
    if method == "deep-ar" and specs is None:
        specs = ["train"] * n_sources
    if specs is not None:
        params["priors"] = specs
    return cls(**params)


def _separate(args: argparse.Namespace) -> int:
    from mixest.separation import write_audio

    # Everything the command line can get wrong is checked before the (possibly long) separation.
    options = _separate_options(args)
    specs = labels = None
    if "priors" in options and not (args.method == "deep-ar" and args.train is not None):
        specs, labels = _parse_priors(options["priors"], args.method)
    folders = None
    if args.train is not None:
        folders, train_labels = _parse_train(args.train)
        if specs is not None and len(specs) != len(folders):
            _fail(f"--priors names {len(specs)} sources, --train {len(folders)}")
        labels = labels or train_labels
    least = 1 if args.method in ("nmf", "tnmf") else 0  # NMF has no initialisation-only run
    if args.max_iter is not None and args.max_iter < least:
        _fail(f"--max-iter must be at least {least}, got {args.max_iter}")
    if args.epsilon is not None and not (np.isfinite(args.epsilon) and args.epsilon > 0):
        _fail(f"--epsilon must be a positive number, got {args.epsilon}")
    if args.n_jobs == 0:
        _fail("--n-jobs must be a positive number of workers or negative (-1: all cores), "
              "got 0")
    mixture = Path(args.mixture)
    x, rate = _read_mixture(args.mixture)
    outputs = _check_out_dir(args.out_dir, mixture.stem, labels)
    default_plot = str(Path(args.out_dir) / f"{mixture.stem}.png")
    plot = None if args.plot is None else _check_plot(args.plot or default_plot)
    if "device" in options:
        _check_device(options["device"])
    separator = _make_separator(args.method, options, specs, len(labels), rate, args.quiet)
    y = None
    if folders is not None:
        y = _read_training_audio(folders)
        if rate != 16000:  # the separator takes y at the mixture's rate
            from mixest.separation._base import _resample_rows

            y = _resample_rows(y, 16000, rate)
    try:
        separator.fit(x[None] if y is None else y.sum(1), y)
    except (OSError, ValueError) as exc:  # an unreadable file, or not a spectral prior
        items = [item.strip() for item in (options.get("priors") or "").split(",")]
        message = re.sub(r"priors\[(\d+)\]", lambda m: f"prior {items[int(m[1])]}", str(exc))
        flag = "--priors " + options["priors"] if specs is not None else "--train " + args.train
        _fail(f"{flag}: {message}", 1)
    try:
        sources = separator.transform(x[None])[0]
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        _fail(f"cannot separate {mixture}: {exc}", 1)
    if not np.all(np.isfinite(sources)):
        _fail(f"separating {mixture} gave non-finite samples (is the recording silent?)", 1)
    energy = np.sum(sources**2, axis=1)
    share = energy / energy.sum() if energy.sum() > 0 else np.full(len(energy), 1 / len(energy))
    for n, (label, path, signal) in enumerate(zip(labels, outputs, sources, strict=True)):
        try:
            write_audio(path, signal, rate, subtype="FLOAT")
        except (ValueError, OSError) as exc:
            _fail(exc, 1)
        if not args.quiet:
            print(f"source {n + 1}/{len(labels)} ({label}, {share[n]:.0%} of the energy) -> "
                  f"{path} ({x.size / rate:.2f} s at {rate} Hz)")
    if plot is not None:
        _plot_separation(x, sources, rate, labels, plot)
        if not args.quiet:
            print(f"plot -> {plot}")
    return 0


def _plot_separation(x: np.ndarray, sources: np.ndarray, rate: int, labels: list[str],
                     path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixest.separation import plot_separation

    fig = plot_separation(x, sources, rate, labels=labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _demo(args: argparse.Namespace) -> int:
    from mixest.baselines import GreedyTracker, SORTTracker, VKFTracker
    from mixest.datasets import make_tracking_mixture
    from mixest.tracking._metrics import mot_metrics
    from mixest.tracking._tracker import MixDVAETracker

    prior = _load_prior(_check_prior("mixdvae", args.prior))
    if args.max_iter < 1:
        _fail(f"--max-iter must be at least 1, got {args.max_iter}")
    if args.n_sequences < 1 or args.n_frames < 2:
        _fail("--n-sequences must be at least 1 and --n-frames at least 2")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out-dir {out_dir} is a file; give a folder (it is created if missing)")
    X, y = make_tracking_mixture(args.n_sequences, 3, args.n_frames, jitter=args.jitter,
                                 miss_prob=args.miss_prob, shuffle=args.shuffle,
                                 random_state=args.seed, box_format="xyxy", image_size=None)
    unit = {"box_format": "xyxy", "image_size": (1.0, 1.0)}
    common = {"max_iter": args.max_iter, "obs_noise": args.jitter, "random_state": args.seed,
              **unit}
    rows, shown = [], None
    for name, est in (
        ("greedy", GreedyTracker(3, box_format="xyxy")),
        ("sort", SORTTracker(3, **unit)),
        ("vkf", VKFTracker(3, **common)),
        ("vem+cv", MixDVAETracker(3, prior="constant-velocity", **common)),
        ("mixdvae", MixDVAETracker(3, prior=prior, **common)),
    ):
        tic = time.perf_counter()
        tracks = est.fit(X).predict(X)
        seconds = time.perf_counter() - tic
        m = mot_metrics(y, tracks, box_format="xyxy").loc["OVERALL"]
        rows.append((name, m["MOTA"], m["IDF1"], int(m["IDs"]), m["MOTP"], seconds))
        shown = tracks
    order = "shuffled" if args.shuffle else "ordered"
    print(f"Tracking: {args.n_sequences} synthetic 3-object sequences, T={args.n_frames}, "
          f"jitter {args.jitter} of the box size, {args.miss_prob:.0%} misses, {order} "
          "detections")
    print("greedy: Hungarian matching to the last positions (the floor); sort: SORT; vkf: "
          "variational Kalman filter; vem+cv: MixDVAE's VEM with constant-velocity dynamics; "
          f"mixdvae: the {args.prior} prior")
    print(f"{'method':<10}{'MOTA':>8}{'IDF1':>8}{'IDs':>6}{'MOTP':>8}{'seconds':>9}")
    for name, mota, idf1, ids, motp, sec in rows:
        print(f"{name:<10}{mota:>8.3f}{idf1:>8.3f}{ids:>6d}{motp:>8.3f}{sec:>9.2f}")
    _plot(X[0], shown[0], 1, out_dir / "tracks.png", box_format="xyxy")

    from mixest.separation._demo import separation_demo

    rows = separation_demo(out_dir, seed=args.seed, max_iter=args.max_iter)
    print("\nSeparation: 3 mixtures (0.8 s, 0 dB) of two built-in source types, a harmonic tone "
          "and bursts of hiss at 0.5-6 kHz;\nevery model trained on 20 s of other draws (the "
          "oracle mask uses the true sources)")
    print(f"{'method':<12}{'SI-SDR tone':>12}{'SI-SDR hiss':>12}{'seconds':>9}")
    for name, tone, hiss, sec in rows:
        print(f"{name:<12}{tone:>12.1f}{hiss:>12.1f}{sec:>9.2f}")
    print(f"\nwrote {out_dir}/: tracks.png (the first sequence, MixDVAE), mixture.wav, "
          "mixdvae_tone.wav, mixdvae_hiss.wav, separation.png")
    return 0


class _HelpFormatter(
    argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter
):
    """Shows defaults, keeps the epilog's line breaks.

    Options whose default depends on ``--method`` have ``None`` defaults: not shown.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like the command's own errors."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see {self.prog} --help)")


_DESCRIPTION = "Multi-object tracking and single-channel source separation with MixDVAE."
_TRACK_EPILOG = f"""\
options per method (an option a method does not take is refused, never ignored):
  mixdvae  --prior {{{', '.join(PRIORS['mixdvae'])}}} (default pretrained:mot),
           --max-iter (default 70), --seed (default 0)
  deep-ar  --prior {{{', '.join(PRIORS['deep-ar'])}}} (default pretrained:mot-ar; train
           retrains the network, about a minute), --max-iter (default 30), --seed (default 0)
  vkf      --max-iter (default 30), --seed (default 0)
  sort, greedy: deterministic, none of the three

--targets names the objects to track by their boxes in the first frame of the range (which
replace that frame's detections); without it, the first N boxes of the first frame with N.
--frames is clipped to the first and last frames with detections in the file (with a note);
a range with no detection at all is an error. Frames without detections inside the range are
tracked. Errors exit with status 2 (command line) or 1 (unusable input file).
"""


_SEPARATE_EPILOG = """\
A --priors item holding a path separator or ending with .pt is a DVAE file (an Itakura-Saito
prior on 513 bins, 16 kHz STFT frames); any other item names a bundled prior (mixest.pretrained).
The recording is resampled to 16 kHz for the priors and the sources back to its own rate; they
sum to the recording (up to the resampling). Files of the same name are overwritten.
Errors exit with status 2 (command line) or 1 (unusable recording or prior).
"""


#: ``mixest benchmark table2`` names -> the benchmark's protocols and methods
_TABLE2_PROTOCOLS = {"real": "real", "real-clutter": "real + clutter", "mild": "mild",
                     "hard": "hard", "occlusion": "occlusion"}
_TABLE2_METHODS = {"mixdvae": "MixDVAE", "cv": "VEM + constant velocity", "vkf": "VKF",
                   "deep-ar": "Deep AR", "sort": "SORT", "greedy": "greedy (floor)",
                   "oracle": "detection oracle"}


def _benchmark_out_dir(args: argparse.Namespace) -> Path:
    """``--out-dir``, checked before any work."""
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"--out-dir {out_dir} is a file; give a folder (it is created if missing)")
    return out_dir


def _write_benchmark(args: argparse.Namespace, name: str, records: list[dict], header: str,
                     footer: str, plot=None) -> None:
    """``NAME.md/.csv/.json`` (every record carries its Markdown row) with the command, the plot
    ``plot(path)`` as ``NAME.png``, and the table on stdout unless ``--quiet``."""
    import shlex

    from mixest.benchmark._results import write_results

    out_dir = Path(args.out_dir)
    command = "mixest benchmark " + shlex.join(args.argv)
    paths = write_results(out_dir, name, records, header, footer, command=command)
    if plot is not None:
        paths.append(plot(out_dir / f"{name}.png"))
    if not args.quiet:
        print(header)
        print("\n".join(r["markdown"] for r in records))
        print("wrote " + ", ".join(str(p) for p in paths))


def _add_benchmark_output(parser: argparse.ArgumentParser, name: str, files: str) -> None:
    parser.add_argument("-o", "--out-dir", default="mixest-results", metavar="DIR",
                        help=f"folder of {name}.{{{files}}} (created)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing but errors (no table, no progress bar)")


def _benchmark_table2(args: argparse.Namespace) -> int:
    from mixest.benchmark._table2 import markdown, plot, sequences, table2

    prior = _load_prior(_check_prior("mixdvae", args.prior))
    default_lengths = (60,) if args.quick else (60, 120, 300)
    lengths = tuple(args.lengths or default_lengths)
    stride = args.stride or (60 if args.quick else 20)
    if min(lengths) < 2 or stride < 1:
        _fail("--lengths must be at least 2 frames and --stride at least 1")
    protocols = tuple(_TABLE2_PROTOCOLS[p] for p in args.protocols)
    methods = tuple(_TABLE2_METHODS[m] for m in args.methods)
    try:
        sequences(Path(args.mot_root), protocols)
    except FileNotFoundError as exc:
        _fail(f"--mot-root: {exc}", 1)
    _benchmark_out_dir(args)
    records = table2(args.mot_root, lengths=lengths, protocols=protocols, methods=methods,
                     half=args.half, stride=stride, prior=prior, n_jobs=args.n_jobs,
                     seed=args.seed, verbose=not args.quiet)
    if not records:
        _fail(f"no window of {lengths} frames with 3 targets in {args.mot_root}", 1)
    header, rows = markdown(records)
    for r, row in zip(records, rows, strict=True):
        r["markdown"] = row
    frames = "the second half of each sequence" if args.half == "second" else "whole sequences"
    footer = (f"3 targets per window, windows every {stride} frames of {frames} (4 groups of "
              f"targets per window at most), seed {args.seed}; every tracker with its defaults "
              "on image-normalised boxes. MOTA, MOTP (mean IoU), IDF1, IDs, MT, ML, FP, FN from "
              "py-motmetrics at IoU 0.5 (% columns: share of the true boxes); HOTA, DetA, AssA "
              "from TrackEval.")
    _write_benchmark(args, "table2", records, header, footer,
                     plot=lambda path: plot(records, path))
    return 0


#: ``mixest benchmark table3 --methods`` names -> the rows' label prefixes
_TABLE3_METHODS = {"dvae-init": "DVAE-init", "vkf": "VKF (DVAE-init)",
                   "vkf-oracle": "VKF (oracle init)", "deep-ar": "Deep AR", "nmf": "NMF",
                   "tnmf": "temporal NMF", "mixdvae": "MixDVAE"}


def _benchmark_table3(args: argparse.Namespace) -> int:
    from mixest.benchmark._table3 import TRAINED, authors_priors, header, table3
    from mixest.datasets import load_audio_folder

    specs, _ = _parse_priors(args.priors)
    if len(specs) != 2:
        _fail(f"--priors {args.priors!r}: table3 separates two sources, give two priors")
    lengths = tuple(args.lengths or ((50,) if args.quick else (50, 100, 300)))
    ratios = tuple(args.ratios or ((0.0,) if args.quick else (-10.0, -5.0, 0.0, 5.0)))
    n_mixtures = args.n_mixtures or (4 if args.quick else 24)
    if min(lengths) < 1 or n_mixtures < 1 or args.max_iter < 0:
        _fail("--lengths and --n-mixtures must be at least 1, --max-iter at least 0")
    methods = tuple(_TABLE3_METHODS[m] for m in (args.methods or _TABLE3_METHODS))
    trained = [m for m in methods if any(t.startswith(m) for t in TRAINED)]
    if trained and args.train is None:
        if args.methods:
            _fail(f"--methods {', '.join(trained)} learn from isolated recordings: give --train "
                  "SPEECH_DIR,MUSIC_DIR")
        methods = tuple(m for m in methods if m not in trained)
        if not args.quiet:
            print("note: without --train, the rows that learn from isolated recordings "
                  f"({', '.join(trained)}) are left out", file=sys.stderr)
    y_train = None
    if args.train is not None:
        folders, _ = _parse_train(args.train)
        if len(folders) != 2:
            _fail(f"--train {args.train!r}: give two folders, speech then music")
        y_train = _read_training_audio(folders)
    _benchmark_out_dir(args)
    audio = []
    for flag, folder in (("--speech-dir", args.speech_dir), ("--music-dir", args.music_dir)):
        try:
            audio.append(load_audio_folder(folder, 16000, trim_db=None))
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            _fail(f"{flag} {folder}: {exc}", 1)
    prior_sets = {"mixest": specs}  # names or DVAE files, as the separators take them
    if args.authors_dir is not None:
        try:
            prior_sets["authors'"] = authors_priors(args.authors_dir)
        except (OSError, ValueError) as exc:
            _fail(f"--authors-dir {args.authors_dir}: {exc}", 1)
    labels = ("speech", "music")
    records = table3(*audio, y_train, prior_sets=prior_sets, labels=labels, lengths=lengths,
                     ratios=ratios, n_mixtures=n_mixtures, max_iter=args.max_iter,
                     methods=methods, n_jobs=args.n_jobs, seed=args.seed,
                     verbose=not args.quiet)
    footer = (f"{n_mixtures} mixtures per setting from {args.speech_dir} and "
              f"{args.music_dir} (16 kHz, each file scaled to max |x| = 1); seed {args.seed}; "
              f"{args.max_iter} VEM iterations, last iterate; RTF: processing seconds per second "
              f"of audio with n_jobs={args.n_jobs}. [oracle] rows use the true sources.")
    _write_benchmark(args, "table3", records, header(labels), footer,
                     plot=lambda path: _plot_table3(records, labels, path))
    return 0


def _plot_table3(records: list[dict], labels: tuple[str, str], path: Path) -> Path:
    """SI-SDR of each source against T per row, one column of panels per ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = sorted({r["ratio_db"] for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records))
    fig, axes = plt.subplots(2, len(ratios), squeeze=False, figsize=(3.4 * len(ratios), 5.6))
    for j, ratio in enumerate(ratios):
        for i, source in enumerate(labels):
            ax = axes[i, j]
            for k, method in enumerate(methods):
                rows = [r for r in records if r["ratio_db"] == ratio and r["method"] == method]
                ax.plot([r["T"] for r in rows], [r[f"SI-SDR {source}"] for r in rows],
                        marker="o", linestyle="-" if k % 2 == 0 else "--", label=method)
            ax.set_xticks(sorted({r["T"] for r in records}))
            ax.set_title(f"{ratio:+.0f} dB" if i == 0 else "")
            ax.set_xlabel("T (frames)")
            ax.set_ylabel(f"SI-SDR {source} (dB)")
            ax.grid(alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(methods), 4), fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _describe_version(folder: Path) -> str:
    """``folder``, with its git commit when it is a git checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(folder), "log", "-1", "--format=%h (%cs)"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return str(folder)
    commit = out.stdout.strip()
    return f"{folder}, commit {commit}" if out.returncode == 0 and commit else str(folder)


def _benchmark_perf(args: argparse.Namespace) -> int:
    from mixest.benchmark._perf import markdown, perf

    quick = args.quick
    tracking = tuple(args.tracking_lengths or ((60,) if quick else (60, 120, 300)))
    separation = tuple(args.separation_lengths or ((50,) if quick else (300,)))
    n_sequences = tuple(args.n_sequences or ((32,) if quick else (128,)))
    n_mixtures = tuple(args.n_mixtures or ((4,) if quick else (24,)))
    max_iter = args.max_iter or (10 if quick else 70)
    if min(tracking + separation) < 2 or min(args.n_jobs + list(n_sequences + n_mixtures)) < 1:
        _fail("lengths must be at least 2, --n-jobs, --n-sequences and --n-mixtures at least 1")
    baseline = None
    if args.baseline is not None:
        baseline = Path(args.baseline).resolve()
        if not (baseline / "mixest" / "benchmark" / "_perf.py").is_file():
            _fail(f"--baseline {args.baseline}: not the folder of a mixest version (expected "
                  "mixest/benchmark/_perf.py inside it, e.g. a git worktree of an earlier "
                  "commit)")
    _benchmark_out_dir(args)
    import torch

    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    records = perf(tracking_lengths=tracking, n_sequences=n_sequences,
                   separation_lengths=separation, n_mixtures=n_mixtures, max_iter=max_iter,
                   n_jobs=tuple(args.n_jobs), devices=devices,
                   observations=tuple(dict.fromkeys(args.observations)),
                   baseline=None if baseline is None else str(baseline),
                   verbose=not args.quiet)
    header, rows = markdown(records)
    for r, row in zip(records, rows, strict=True):
        r["markdown"] = row
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "none"
    footer = (f"Tracking: synthetic hard-protocol sequences (3 objects), {max_iter} forced VEM "
              "iterations (tol=0), then the default stopping rule. Separation: mixtures of T "
              f"STFT frames (T x 256 samples at 16 kHz), {max_iter} iterations, the bundled "
              "speech and flute priors; RTF = processing seconds per second of audio. Each run "
              f"in a fresh process, 2 BLAS/Numba threads; {os.cpu_count()} CPU cores, GPU: "
              f"{gpu}; torch {torch.__version__}.")
    if baseline is not None:
        footer += (f" Baseline: the mixest of {_describe_version(baseline)}, run just before "
                   "this version in every configuration; ratios are this version's figure over "
                   "the baseline's.")
    _write_benchmark(args, "perf", records, header, footer)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mixest`` argument parser."""
    from mixest import __version__

    parser = _Parser(prog="mixest", description=_DESCRIPTION, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"mixest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{track,separate,demo,benchmark}")

    track = sub.add_parser(
        "track", help="track N objects in a MOTChallenge det.txt",
        description="Track N objects in a MOTChallenge det.txt and write a MOTChallenge "
        "result file.", epilog=_TRACK_EPILOG, formatter_class=_HelpFormatter,
    )
    track.add_argument("detections", help="MOTChallenge detection file (det.txt)")
    track.add_argument("-n", "--n-sources", type=int,
                       help="objects to track (default: 3, or the number of --targets)")
    track.add_argument("--targets", nargs="+", metavar="X,Y,W,H",
                       help="boxes (pixels, MOTChallenge left,top,width,height) of the objects "
                       "to track in the first frame of the range: they replace that frame's "
                       "detections, so the trackers follow these objects and no others")
    track.add_argument("--frames", metavar="FIRST:LAST",
                       help="frame range, 1-based inclusive (default: the file's first to last "
                       "frame with detections; clipped to them)")
    track.add_argument("-o", "--output", required=True,
                       help="MOTChallenge result file (its folder is created)")
    track.add_argument("--seqinfo", help="seqinfo.ini (default: next to det.txt or one up)")
    track.add_argument("--image-size", nargs=2, type=float, default=(1920, 1080),
                       metavar=("WIDTH", "HEIGHT"), help="used without a seqinfo.ini")
    track.add_argument("--method", default="mixdvae", help=f"one of {', '.join(METHODS)}")
    track.add_argument("--prior", help="dynamics prior; mixdvae: "
                       f"{', '.join(PRIORS['mixdvae'])} (default pretrained:mot); deep-ar: "
                       f"{', '.join(PRIORS['deep-ar'])} (default pretrained:mot-ar)")
    track.add_argument("--max-iter", type=int, metavar="N",
                       help="variational EM iterations of mixdvae (default 70), vkf and deep-ar "
                       "(default 30)")
    track.add_argument("--seed", type=int, help="random seed of mixdvae, vkf and deep-ar "
                       "(default 0): the same seed gives the same result file")
    track.add_argument("-q", "--quiet", action="store_true",
                       help="print nothing but errors (no summary, no progress bar)")
    track.add_argument("--plot", metavar="FILE", nargs="?", const="",
                       help="also draw the tracks into FILE (.png, .pdf, .svg, ...; without "
                       "FILE: the --output path with .png)")
    track.set_defaults(func=_track)

    separate = sub.add_parser(
        "separate", help="separate the sources of a single-channel recording",
        description="Separate a single-channel recording with MixDVAE (one spectral DVAE prior "
        "per source)\nor a baseline (--method), and write one WAV file per source, at the "
        "recording's sample rate.",
        epilog=_SEPARATE_EPILOG, formatter_class=_HelpFormatter,
    )
    separate.add_argument("mixture", metavar="MIXTURE", help="the recording (WAV, FLAC, ...; "
                          "any rate; several channels are averaged)")
    separate.add_argument("-o", "--out-dir", required=True, metavar="DIR",
                          help="folder of the source files MIXTURE-STEM_LABEL.wav (created)")
    separate.add_argument("--method", choices=tuple(SEPARATE_METHODS), default="mixdvae",
                          help="mixdvae: MixDVAE; vkf: variational Kalman filter (AR(1) per "
                          "bin, DVAE-init); deep-ar: Deep AR networks in the same VEM; nmf, "
                          "tnmf: supervised NMF, temporal NMF")
    separate.add_argument("--priors", metavar="P1,P2[,...]",
                          help="one prior per source, comma-separated: a bundled prior name or "
                          "the path of a DVAE file saved with DVAE.save (FILE.pt) (default: "
                          f"{SEPARATE_PRIORS}; --method deep-ar: its bundled networks "
                          "speech-ar,flute-ar; nmf, tnmf: none)")
    separate.add_argument("--train", metavar="DIR1,DIR2[,...]",
                          help="one folder of isolated recordings per source (the first "
                          f"{TRAIN_MINUTES:g} min of each): what --method nmf, tnmf and vkf "
                          "learn from (required), deep-ar trains its networks on (instead of "
                          "--priors); not taken by mixdvae")
    separate.add_argument("--max-iter", type=int, metavar="N",
                          help="variational EM iterations (0: the initialisation) (default: 70); "
                          "nmf, tnmf: multiplicative-update iterations (default: the "
                          "separator's)")
    separate.add_argument("--epsilon", type=float, metavar="EPS",
                          help="observation noise relative to each bin's power (default: 0.003; "
                          "vkf: 0.03; the MixDVAE authors' priors want 0.03; not taken by nmf, "
                          "tnmf)")
    separate.add_argument("--observation", choices=("assignment", "additive"),
                          help="mixdvae only: each bin assigned to one source (the paper's "
                          "model) or the sum of all of them (better with the MixDVAE authors' "
                          "priors) (default: assignment)")
    separate.add_argument("--device", choices=("cpu", "cuda", "auto"),
                          help="where the priors run (auto: CUDA when available) (default: cpu; "
                          "not taken by nmf, tnmf)")
    separate.add_argument("--n-jobs", type=int, metavar="J",
                          help="workers separating batches side by side (a recording longer "
                          "than 4.8 s is separated in segments, 16 to a batch: two workers "
                          "help from about 70 s on); -1: all cores (default: 1; not taken by "
                          "nmf, tnmf)")
    separate.add_argument("--seed", type=int, default=0, help="random seed of the separator")
    separate.add_argument("--plot", metavar="FILE", nargs="?", const="",
                          help="also draw the spectrograms and masks into FILE (.png, .pdf, "
                          ".svg, ...; without FILE: DIR/MIXTURE-STEM.png)")
    separate.add_argument("-q", "--quiet", action="store_true",
                          help="print nothing but errors (no progress bar, no summary)")
    separate.set_defaults(func=_separate)

    demo = sub.add_parser(
        "demo", help="tracking and separation on built-in data, MixDVAE against the baselines",
        description="Track synthetic 3-object sequences with MixDVAE and the baselines (greedy "
        "floor, SORT, VKF,\nthe VEM with constant-velocity dynamics); separate mixtures of two "
        "built-in source types\nwith MixDVAE, VKF, Deep AR, NMF and temporal NMF; print both "
        "tables and write the pictures\nand sounds into --out-dir.",
        formatter_class=_HelpFormatter,
    )
    demo.add_argument("--n-sequences", type=int, default=32, help="synthetic sequences")
    demo.add_argument("--n-frames", type=int, default=60, help="frames per sequence")
    demo.add_argument("--jitter", type=float, default=0.04, help="noise, fraction of box size")
    demo.add_argument("--miss-prob", type=float, default=0.1, help="probability of a miss")
    demo.add_argument("--shuffle", action="store_true", help="shuffle detections per frame")
    demo.add_argument("--prior", default="pretrained:mot",
                      help=f"MixDVAE prior: {', '.join(PRIORS['mixdvae'])}")
    demo.add_argument("--max-iter", type=int, default=30, metavar="N",
                      help="variational EM iterations (tracking and separation)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data and the models")
    demo.add_argument("-o", "--out-dir", default="mixest-demo", metavar="DIR",
                      help="folder of the pictures and sounds (created)")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser(
        "benchmark", help="the paper's result tables on your data",
        description="Reproduce the paper's result tables: every method on the same data, "
        "written as Markdown,\nCSV and JSON (with the command and the mixest version) and a "
        "plot.", formatter_class=_HelpFormatter)
    tables = bench.add_subparsers(dest="table", required=True,
                                  metavar="{table2,table3,perf}")
    t2 = tables.add_parser(
        "table2", help="tracking: every tracker on 3-target windows of MOTChallenge sequences",
        description="Tracking (the paper's Table 2): 3-target windows of every sequence of a "
        "MOTChallenge-layout\nfolder, real and simulated detections, every tracker with its "
        "defaults on the same windows;\nMOTA, MOTP, IDF1, IDs, MT, ML, FP, FN and HOTA, DetA, "
        "AssA.", formatter_class=_HelpFormatter)
    t2.add_argument("--mot-root", required=True, metavar="DIR",
                    help="MOTChallenge-layout folder: SEQ/gt/gt.txt, SEQ/seqinfo.ini and, for "
                    "the real protocols, SEQ/det/det.txt")
    t2.add_argument("--lengths", type=int, nargs="+", metavar="T",
                    help="window lengths (default: 60 120 300; --quick: 60)")
    t2.add_argument("--protocols", nargs="+", choices=tuple(_TABLE2_PROTOCOLS),
                    default=tuple(_TABLE2_PROTOCOLS), metavar="P",
                    help=f"detections: {', '.join(_TABLE2_PROTOCOLS)} (real: det.txt matched "
                    "to the targets; real-clutter: plus the other detections near them; mild, "
                    "hard, occlusion: simulated from gt.txt)")
    t2.add_argument("--methods", nargs="+", choices=tuple(_TABLE2_METHODS),
                    default=tuple(_TABLE2_METHODS), metavar="M",
                    help=f"trackers: {', '.join(_TABLE2_METHODS)} (cv: MixDVAE's VEM with "
                    "constant-velocity dynamics; oracle: a reference in which each target "
                    "follows the detections overlapping its true box most)")
    t2.add_argument("--half", choices=("second", "first", "all"), default="second",
                    help="frames the windows are cut from (the bundled MOT17 detector was "
                    "trained on the first halves, where the trackers' settings were chosen)")
    t2.add_argument("--stride", type=int, metavar="N",
                    help="frames between window starts (default: 20; --quick: 60)")
    t2.add_argument("--prior", default="pretrained:mot",
                    help=f"MixDVAE prior: {', '.join(PRIORS['mixdvae'])}")
    t2.add_argument("--n-jobs", type=int, default=None, help="processes of the VEM trackers")
    t2.add_argument("--seed", type=int, default=0, help="seed of the detections and trackers")
    t2.add_argument("--quick", action="store_true", help="T = 60 only, windows every 60 frames")
    _add_benchmark_output(t2, "table2", "md,csv,json,png")
    t2.set_defaults(func=_benchmark_table2)

    t3 = tables.add_parser(
        "table3", help="separation: every separator on the same speech + music mixtures",
        description="Separation (the paper's Table 3): mixtures of your speech and music "
        "recordings at several\nspeech-to-music ratios and lengths, every separator on the "
        "same mixtures; SI-SDR, PESQ,\nESTOI and RMSE per source and the real-time factor.",
        formatter_class=_HelpFormatter)
    t3.add_argument("--speech-dir", required=True, metavar="DIR",
                    help="held-out speech recordings (WAV, FLAC, OGG; any rate)")
    t3.add_argument("--music-dir", required=True, metavar="DIR",
                    help="held-out music recordings (short clips are joined)")
    t3.add_argument("--train", metavar="SPEECH_DIR,MUSIC_DIR",
                    help="isolated training recordings (the first "
                    f"{TRAIN_MINUTES:g} min of each) for the rows that learn from them: vkf, "
                    "vkf-oracle, nmf, tnmf (left out without it)")
    t3.add_argument("--priors", default=SEPARATE_PRIORS, metavar="P1,P2",
                    help="the speech and music priors of the MixDVAE, DVAE-init and VKF rows: "
                    "bundled names or DVAE files")
    t3.add_argument("--authors-dir", metavar="DIR",
                    help="also rows with the MixDVAE authors' released priors "
                    "(model_scass_{wsj,cbf}.pt and their .ini files, read where they are)")
    t3.add_argument("--methods", nargs="+", choices=tuple(_TABLE3_METHODS), metavar="M",
                    help=f"rows: {', '.join(_TABLE3_METHODS)} (default: all; the mixture and "
                    "the oracle ratio mask are always there)")
    t3.add_argument("--lengths", type=int, nargs="+", metavar="T",
                    help="STFT frames per mixture, 256 samples each (default: 50 100 300; "
                    "--quick: 50)")
    t3.add_argument("--ratios", type=float, nargs="+", metavar="DB",
                    help="speech-to-music ratios in dB (default: -10 -5 0 5; --quick: 0)")
    t3.add_argument("--n-mixtures", type=int, metavar="N",
                    help="mixtures per setting (default: 24; --quick: 4)")
    t3.add_argument("--max-iter", type=int, default=70, metavar="N",
                    help="VEM iterations of the VEM rows")
    t3.add_argument("--n-jobs", type=int, default=None, help="processes per separator")
    t3.add_argument("--seed", type=int, default=0, help="seed of the mixtures and separators")
    t3.add_argument("--quick", action="store_true",
                    help="T = 50, 0 dB, 4 mixtures (a few minutes)")
    _add_benchmark_output(t3, "table3", "md,csv,json,png")
    t3.set_defaults(func=_benchmark_table3)

    pf = tables.add_parser(
        "perf", help="speed and memory: tracking, separation, kernels (and GPU when present)",
        description="Seconds per tracked sequence and the separation real-time factor against "
        "T, batch and\nprocesses, the share of each VEM step, peak memory, the E-W Numba "
        "kernel against its\nNumPy twin, and the same runs on CUDA when a GPU is present.",
        formatter_class=_HelpFormatter)
    pf.add_argument("--tracking-lengths", type=int, nargs="+", metavar="T",
                    help="tracking sequence lengths (default: 60 120 300; --quick: 60)")
    pf.add_argument("--n-sequences", type=int, nargs="+", metavar="N",
                    help="tracking batch sizes (default: 128; --quick: 32)")
    pf.add_argument("--separation-lengths", type=int, nargs="+", metavar="T",
                    help="separation mixture lengths in STFT frames (default: 300; --quick: 50)")
    pf.add_argument("--n-mixtures", type=int, nargs="+", metavar="N",
                    help="separation batch sizes (default: 24; --quick: 4)")
    pf.add_argument("--max-iter", type=int, metavar="N",
                    help="forced VEM iterations (default: 70; --quick: 10)")
    pf.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2], metavar="J",
                    help="processes sharing a batch (CPU runs)")
    pf.add_argument("--observations", nargs="+", default=["assignment"],
                    choices=["assignment", "additive"],
                    help="the separator's observation models to time (default: the paper's "
                    "assignment model)")
    pf.add_argument("--quick", action="store_true", help="small runs (about a minute)")
    pf.add_argument("--baseline", metavar="DIR",
                    help="another mixest version's folder (e.g. `git worktree add DIR v0.1`), "
                    "run before this one in every configuration: both figures and their ratio")
    _add_benchmark_output(pf, "perf", "md,csv,json")
    pf.set_defaults(func=_benchmark_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixest`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success. Errors raise ``SystemExit`` after a one-line message on stderr: status 2
        for the command line, 1 for an input file that cannot be used.
    """
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])  # what a benchmark records
    if getattr(args, "n_sources", None) is not None and args.n_sources < 1:
        _fail("--n-sources must be at least 1")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
