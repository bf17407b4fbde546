"""Train the bundled DVAE priors and write them to mixest/pretrained/.

Usage (the exact command that produced the committed ``mixest/pretrained/dvae_mot.pt``)::

    nohup nice python benchmarks/train_priors.py --prior mot > train_mot.log 2>&1 &

``--prior mot``: an SRNN on synthetic single-source box trajectories (20,000 sequences of 60
frames from :func:`mixest.datasets.make_trajectories`, boxes (x1, y1, x2, y2) in
image-normalised units, y down) trained by ``DVAE(recipe="mot")``: the paper's recipe (Adam,
batch 256, KL warm-up, the best validation epoch kept) with the epoch count shrunk to the CPU
budget (100 epochs, about 26-30 min of one core beside other jobs), scheduled sampling off, a
gated first-order residual, denoising training told the noise level (30% of the sequences
exact, the others jittered by up to 0.1 of the box size, clean targets) so that the prior
handles the VEM's posterior means whatever their noise, and an auxiliary absolute-error term on
the causal one-step prediction from exact boxes; see ``docs/dvae.md``.

``--prior mot-ar``: the Deep AR baseline's LSTM (:class:`mixest.baselines.DeepARTracker`) on
the same kind of data, trained by ``benchmarks/train_deep_ar.py`` (options after ``--prior
mot-ar`` are passed on to it)::

    nohup nice python benchmarks/train_priors.py --prior mot-ar > train_mot_ar.log 2>&1 &

The script prints the validation objective of the kept weights and the command to reproduce
them. ``--param KEY=VALUE`` overrides one DVAE parameter of the recipe, or one field of its
grouped settings as ``network.FIELD``, ``noise.FIELD`` or ``scheduled_sampling.FIELD``
(candidate search, with ``--out`` elsewhere than the bundled file), e.g. a larger network
trained with less jitter::

    nice python benchmarks/train_priors.py --out /tmp/c.pt --param network.rnn_dim=32
    --param noise.std=0.05

(one command line). Other priors can be added to ``PRIORS`` below (and to
``mixest/pretrained/_registry.py``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> data builder, DVAE keyword arguments, output file
PRIORS: dict[str, dict] = {
    "mot": {
        "n_sequences": 20_000,
        "n_frames": 60,
        "data_seed": 0,
        "file": "dvae_mot.pt",
        "params": {
            # The "mot" recipe (mixest.dvae.RECIPES["mot"]):
            # - network: an SRNN (z 4, LSTM 16, dense 32/16, backward encoder LSTM) with a
            #   first-order residual and gated extrapolation: the decoder weighs the last
            #   velocity and acceleration (exact kinematics on lines and parabolas) and adds its
            #   own correction; the gates start near constant velocity (gate_init 4). Decoder
            #   std floor 1e-5 (0.02 px of a 1920-px frame).
            # - noise: denoising training told the noise level: 30% of the sequences are read
            #   exactly (level 0), the others jittered by u x 0.1 of the box size (u ~ U[0, 1],
            #   level u), and the decoder must predict the clean next box. Inside the VEM the
            #   prior reads posterior means whose noise ranges from none to the detections' own;
            #   the tracker tells it their level (1 by default), predictions from exact boxes
            #   use 0. Standardised by the clean data (jittered scales cap the precision from
            #   exact boxes).
            # - predictive_weight 100: trained on the causal one-step prediction from exact
            #   boxes too (its absolute error, in units of the first differences' scale): the
            #   ELBO alone trains that prediction only through the KL term and settles on
            #   constant acceleration.
            "recipe": "mot",
            # The paper's schedule (KL warm-up, Adam, early stopping on the validation
            # objective) shrunk to the CPU budget: 100 epochs (about 26-30 min of one core
            # beside other jobs), the step size annealed on a half cosine from 3e-3 to 3e-5,
            # the best epoch kept (no patience), warm-up 5, scheduled sampling off (it compounds
            # errors with a residual decoder). These are DVAE's defaults, spelled out.
            "n_epochs": 100,
            "batch_size": 256,
            "learning_rate": 3e-3,
            "final_learning_rate": 3e-5,
            "beta": 1.0,
            "kl_warmup": 5,
            "scheduled_sampling": None,
            "validation_fraction": 0.1,
            "patience": None,
            "grad_clip": 5.0,
            "device": "cpu",
            "random_state": 0,
        },
    },
}

# "mot-real" (an experiment, not bundled: docs/dvae.md): the "mot" recipe on real pedestrian
# motion as well as synthetic paths: 10,000 windows of 60 frames of the ETH/UCY ground-plane
# tracks seen by a random camera (benchmarks/eth_ucy_boxes.py says how) and 10,000 synthetic
# trajectories. It never sees MOT17, on which it is evaluated. Needs --out.
PRIORS["mot-real"] = {**PRIORS["mot"], "file": None, "n_real": 10_000}

# The spectral priors (DVAE.from_pretrained("speech") and ("flute")): the MixDVAE paper's SRNN
# (z 16, LSTM 128, dense 256 for the frame blocks and 64/32 for the latent blocks, Fraccaro's
# encoder reading [h_t, x_t]) on 513-bin power spectra (16 kHz, 1024-sample sine window, hop 256)
# of waveforms trimmed at 30 dB and scaled to max |x| = 1, cut into sequences of 50 frames; the
# network reads standardised log-power. Its training recipe (beta 0.01, Adam 2e-3) with the
# epoch count shrunk to one CPU core (80 epochs, about half an hour beside another job).
# Data: see _audio_sources below and docs/separation.md.
_SPECTRAL = {
    "likelihood": "itakura_saito",
    "recipe": "plain",
    "network": "spectral",  # built in _spectral_network (a Network, not plain data)
    "noise": None,
    "n_epochs": 80,
    "batch_size": 256,
    "learning_rate": 2e-3,
    "final_learning_rate": 2e-5,
    "beta": 0.01,
    "kl_warmup": 5,
    "scheduled_sampling": None,
    "validation_fraction": 0.05,
    "patience": None,
    "grad_clip": 5.0,
    "device": "cpu",
    "random_state": 0,
}
# Second stage of the spectral priors: denoising against the other source type. Inside the
# separator's VEM a prior reads its source's current estimate, which still holds some of the
# other source; trained on clean spectra only, the flute prior reproduced speech as readily as
# flute and the VEM made the separation worse (docs/separation.md). So each prior is then
# trained for 10 more epochs to reconstruct its clean spectra from inputs to which a random
# spectrum of the other type is added, at -25 to -5 dB of the sequence's energy (half of the
# sequences stay clean), at a constant step size of 2e-4. Stronger versions are recorded in
# docs/separation.md (benchmarks/validate_separation_priors.py scored them).
_INTERFERENCE = {"n_epochs": 10, "learning_rate": 2e-4, "ratio_db": (-25.0, -5.0),
                 "clean_fraction": 0.5, "seed": 1}
# Both are saved with their parameters in float16 (DVAE.save(half_precision=True)): 1.7 MB
# instead of 3.6, and the validation SI-SDR moves by at most 0.01 dB.
PRIORS["speech"] = {"file": "dvae_speech.pt", "max_sequences": 4000, "data_seed": 0,
                    "params": _SPECTRAL, "interference": {**_INTERFERENCE, "from": "flute"},
                    "half_precision": True}
PRIORS["flute"] = {"file": "dvae_flute.pt", "max_sequences": 4000, "data_seed": 0,
                   "params": _SPECTRAL, "interference": {**_INTERFERENCE, "from": "speech"},
                   "half_precision": True}

SHARED = REPO.parent / "shared" / "data" / "audio"


def _spectral_network():
    from mixest.dvae import Network

    return Network(z_dim=16, rnn_dim=128, dense_dims=(256,), latent_dims=(64, 32),
                   encoder_input="hx")


def _audio_sources(name: str) -> list[tuple[Path, tuple[str, ...]]]:
    """(folder, excluded sub-paths) of every training source of a spectral prior.

    Speech: all open speech of ../shared/data/audio/speech except SiSEC dev1 (held out for
    evaluation) and the TTS speech of benchmarks/audio_corpus.py (the 8 kHz spoken digits are
    left out: band-limited speech would teach that speech has nothing above 4 kHz). The NOIZEUS
    sentences are 8 kHz recordings too (65 dB less energy above 4 kHz than below once
    resampled), 80 of the 145 s of real speech; a prior retrained without them separated no
    better (docs/separation.md), so the bundled one keeps them. Flute: the
    10 Medley-solos-DB training clips (test and validation held out) and the flute melodies
    rendered with the training soundfont by benchmarks/audio_corpus.py.
    """
    import os

    corpus = Path(os.environ.get("MIXEST_AUDIO_CORPUS",
                                 Path.home() / ".cache" / "mixest" / "audio_corpus"))
    if name == "speech":
        return [(SHARED / "speech", ("sisec2011_dev1",)), (corpus / "speech_tts", ())]
    medley_held_out = tuple(p.name for p in (SHARED / "flute").glob("*.flac")
                            if "training" not in p.name)
    return [(SHARED / "flute", medley_held_out), (corpus / "flute_train", ())]


def _spectral_data(name: str, spec: dict, n_sequences: int | None) -> np.ndarray:
    from mixest.datasets import load_audio_folder, make_spectral_sequences

    parts = []
    for folder, exclude in _audio_sources(name):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing (run benchmarks/audio_corpus.py for "
                                    "the synthetic audio; ../shared/data for the real files).")
        signals = load_audio_folder(folder, 16000, exclude=exclude)
        seconds = sum(len(x) for x in signals) / 16000
        seqs = make_spectral_sequences(signals, 50, min_level_db=40.0)
        print(f"  {folder}: {len(signals)} files, {seconds / 60:.1f} min, "
              f"{len(seqs)} sequences of 50 frames", flush=True)
        parts.append(seqs)
    X = np.concatenate(parts)
    limit = n_sequences or spec["max_sequences"]
    if len(X) > limit:  # a seeded subset keeps one epoch within the time budget
        keep = np.random.default_rng(spec["data_seed"]).choice(len(X), limit, replace=False)
        X = X[np.sort(keep)]
    return X


def _interference_stage(model, X: np.ndarray, other: np.ndarray, spec: dict) -> list[float]:
    """Train ``model`` further to reconstruct ``X`` from inputs with the other type added.

    Each batch: every sequence gets a random sequence of ``other`` scaled to a ratio drawn
    uniformly in ``spec["ratio_db"]`` of its own mean power (a share ``clean_fraction`` is left
    clean); the ELBO of the clean sequence given the mixed input (``x_cond``) is maximised.
    Returns the mean training loss per epoch.
    """
    import torch

    module = model.module_.train()
    gen = torch.Generator().manual_seed(spec["seed"])
    Xt = torch.as_tensor(X, dtype=torch.float32)
    Ot = torch.as_tensor(other, dtype=torch.float32)
    opt = torch.optim.Adam(module.parameters(), lr=spec["learning_rate"])
    low, high = spec["ratio_db"]
    losses = []
    for _ in range(spec["n_epochs"]):
        perm, total = torch.randperm(len(Xt), generator=gen), 0.0
        for i in range(0, len(Xt), model.batch_size):
            xb = Xt[perm[i:i + model.batch_size]]
            ob = Ot[torch.randint(len(Ot), (len(xb),), generator=gen)]
            ratio = torch.rand(len(xb), 1, 1, generator=gen) * (high - low) + low
            gain = (xb.mean((1, 2), keepdim=True) / ob.mean((1, 2), keepdim=True).clamp_min(1e-12)
                    * 10 ** (ratio / 10))
            clean = torch.rand(len(xb), 1, 1, generator=gen) < spec["clean_fraction"]
            loss = -module.elbo(xb, model.beta, x_cond=torch.where(clean, xb, xb + gain * ob),
                                generator=gen).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), model.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(xb)
        losses.append(total / len(Xt))
        print(f"  interference epoch {len(losses) - 1}: loss {losses[-1]:.2f}", flush=True)
    module.eval()
    return losses


def _override(params: dict, key: str, value: object) -> None:
    """Set ``key`` (a DVAE parameter, or ``group.field`` of a grouped setting) in ``params``."""
    from mixest.dvae import DVAE, RECIPES, Network, ScheduledSampling, TrainingNoise

    group, dot, name = key.partition(".")
    if not dot:
        params[key] = value
        DVAE(**params)  # (a misspelt parameter fails here, before the data are built)
        return
    classes = {"network": Network, "noise": TrainingNoise, "scheduled_sampling": ScheduledSampling}
    if group not in classes:
        raise ValueError(f"{key!r}: only network.*, noise.* and scheduled_sampling.* have fields")
    current = params.get(group, "recipe" if group != "scheduled_sampling" else None)
    if current == "recipe":  # start from the recipe's setting
        recipe = params.get("recipe", "auto")
        if recipe == "auto":
            gaussian = params.get("likelihood", "gaussian") == "gaussian"
            recipe = "mot" if gaussian else "plain"
        current = RECIPES[recipe][group]
    if current is None:  # no such setting yet: build it from this field
        params[group] = classes[group](**{name: value})
    else:
        params[group] = dataclasses.replace(current, **{name: value})


def _make_data(name: str, spec: dict, n_sequences: int | None) -> np.ndarray:
    if name in ("speech", "flute"):
        return _spectral_data(name, spec, n_sequences)
    if name in ("mot", "mot-real"):
        from mixest.datasets import make_trajectories

        n_real = spec.get("n_real", 0)
        n_synthetic = (n_sequences or spec["n_sequences"]) - n_real
        X = make_trajectories(n_synthetic, n_frames=spec["n_frames"],
                              random_state=spec["data_seed"])
        if not n_real:
            return X
        sys.path.insert(0, str(REPO / "benchmarks"))
        from eth_ucy_boxes import eth_ucy_boxes

        real = eth_ucy_boxes(spec["n_frames"], random_state=spec["data_seed"])
        rng = np.random.default_rng(spec["data_seed"])
        real = real[rng.choice(len(real), size=min(n_real, len(real)), replace=False)]
        return rng.permutation(np.concatenate([X, real]))
    raise ValueError(f"no data builder for prior {name!r}")


#: the audio Deep AR baseline's networks (mixest.baselines.DeepARSeparator): name -> (data of
#: the DVAE prior of the same source type, bundled file)
SPECTRAL_AR = {"speech-ar": ("speech", "deep_ar_speech.pt"),
               "flute-ar": ("flute", "deep_ar_flute.pt")}
_SPECTRAL_AR_TRAINING = {"hidden_size": 128, "max_epochs": 100, "batch_size": 64,
                         "learning_rate": 1e-3, "patience": 10, "seed": 0}


def _train_spectral_ar(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Train a spectral Deep AR network on the single-source data of the DVAE prior of its
    source type (the same sequences, the same seeded subset) and bundle it."""
    import torch

    from mixest.baselines._deep_ar_separator import save_spectral_ar, train_spectral_ar

    torch.set_num_threads(args.threads)
    data_name, file = SPECTRAL_AR[args.prior]
    X = _make_data(data_name, PRIORS[data_name], args.n_sequences)
    cfg = dict(_SPECTRAL_AR_TRAINING)
    if args.n_epochs is not None:
        cfg["max_epochs"] = args.n_epochs
    print(f"{args.prior}: {X.shape[0]} sequences of {X.shape[1]} frames; {cfg}", flush=True)
    seed = cfg.pop("seed")
    weights, history = train_spectral_ar(X, **cfg, random_state=seed, verbose=not args.quiet)
    print(f"trained {len(history['val_nll'])} epochs in {history['seconds']:.1f} s; best epoch "
          f"{history['best_epoch']}: validation IS divergence {history['best_val_nll']:.4f} "
          "per bin")
    print("validation per epoch:", " ".join(f"{v:.4f}" for v in history["val_nll"]))
    out = args.out or REPO / "mixest" / "pretrained" / file
    cmd = "python benchmarks/train_priors.py " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))
    meta = {"command": cmd.strip(), "best_epoch": history["best_epoch"],
            "best_val_is": history["best_val_nll"], "seconds": history["seconds"],
            "n_sequences": int(X.shape[0]), "torch": str(torch.__version__)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_spectral_ar(weights, out, meta)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    print(f"reproduce with: {cmd.strip()}  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s))")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", choices=sorted([*PRIORS, "mot-ar", *SPECTRAL_AR]),
                        default="mot")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: bundled)")
    parser.add_argument("--n-sequences", type=int, default=None, help="override (quick tests)")
    parser.add_argument("--n-epochs", type=int, default=None, help="override (quick tests)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto (default: recipe's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume-from", type=Path, default=None,
                        help="spectral priors: a file written by the first stage with the same "
                        "settings; skip it and run the interference stage only")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override one DVAE parameter of the recipe, or one field of a "
                        "grouped setting (candidate search), e.g. --param network.rnn_dim=32 "
                        "--param noise.std=0.06 --param predictive_weight=10")
    args, rest = parser.parse_known_args(argv)
    if args.prior == "mot-ar":  # the Deep AR baseline has its own training script
        sys.path.insert(0, str(REPO / "benchmarks"))
        from train_deep_ar import main as train_deep_ar_main

        return train_deep_ar_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.prior in SPECTRAL_AR:
        if args.param or args.resume_from or args.device:
            parser.error("--param, --resume-from and --device apply to the DVAE priors only")
        return _train_spectral_ar(args, argv)

    import torch

    from mixest.dvae import DVAE

    torch.set_num_threads(args.threads)
    spec = PRIORS[args.prior]
    params = dict(spec["params"])
    if params.get("network") == "spectral":
        params["network"] = _spectral_network()
    if args.n_epochs is not None:
        params["n_epochs"] = args.n_epochs
    if args.device is not None:
        params["device"] = args.device
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param expects KEY=VALUE (a DVAE parameter), got {item!r}")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        try:
            _override(params, key, value)
        except (TypeError, ValueError) as exc:
            parser.error(f"--param {item}: {exc}")
    if args.out is None and spec["file"] is None:
        parser.error(f"--prior {args.prior} is not bundled: give --out FILE")
    out = args.out or REPO / "mixest" / "pretrained" / spec["file"]

    X = _make_data(args.prior, spec, args.n_sequences)
    print(f"prior {args.prior!r}: {X.shape[0]} sequences of {X.shape[1]} frames, D={X.shape[2]}")
    print("params:", params, flush=True)
    t0 = time.perf_counter()
    if args.resume_from is not None:
        model = DVAE.load(args.resume_from)
        if model.get_params() != DVAE(**params).get_params():
            parser.error(f"--resume-from {args.resume_from} was trained with other settings")
    else:
        model = DVAE(**params, verbose=not args.quiet).fit(X)
    dt = time.perf_counter() - t0
    h = model.history_
    n_params = sum(p.numel() for p in model.module_.parameters())
    print(f"trained {model.n_epochs_} epochs in {dt:.1f} s "
          f"({h.n_sequences_seen / h.seconds:.0f} sequences/s), {n_params} parameters")
    print("validation objective per epoch:", " ".join(f"{v:.3f}" for v in h.val_elbo))
    print(f"best epoch {h.best_epoch}: validation objective {h.best_val_elbo:.4f} nats/frame "
          f"(under the final scheduled-sampling rate)")
    print(f"network: {model.network_}\nnoise: {model.noise_}\n"
          f"predictive weight: {model.predictive_weight_}")
    if "interference" in spec:
        stage = spec["interference"]
        print(f"interference stage: {stage}", flush=True)
        other = _make_data(stage["from"], PRIORS[stage["from"]], args.n_sequences)
        t1 = time.perf_counter()
        _interference_stage(model, X, other, stage)
        print(f"interference stage: {time.perf_counter() - t1:.1f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, half_precision=spec.get("half_precision", False))
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    cmd = "python benchmarks/train_priors.py " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))
    print(f"reproduce with: {cmd.strip()}  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
