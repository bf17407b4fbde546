"""What the spectral priors learned: held-out ELBO, source-type discrimination, a picture.

Usage (also ``python benchmarks/eval_priors.py audio ...``)::

    python benchmarks/eval_audio_priors.py [--authors-dir ../shared/data/pretrained/mixdvae_authors]
        [--plot docs/images/spectral_priors.png]

Held-out clips only, none of them seen in training: SiSEC 2011 dev1 speech, the Medley-solos-DB
test and validation flute clips, and the flute melodies that ``benchmarks/audio_corpus.py``
rendered with the held-out soundfont (``flute_eval/``). Each clip is resampled to 16 kHz,
trimmed at 30 dB and scaled to max |x| = 1, then cut into 50-frame power-spectrum segments (the
segments more than 40 dB below the median are dropped as silence). For every prior and source
type it prints the per-frame negative ELBO (Itakura-Saito, nats per frame of 513 bins) and the
share of segments that the matching prior scores better than the other one (source-type
discrimination). A second table gives each prior's Itakura-Saito reconstruction error on its own
type (posterior means, nats per frame, bins of digital silence left out; over all frames and
over the quietest fifth) and how far its reconstruction rises, in dB, in the bins where the
other type dominates once a segment of the other type is added at -20 and -10 dB of the
segment's power (what a prior does with the other source left in its estimate). ``--plot``
draws a held-out speech and flute segment next to each prior's reconstruction and next to a
``sample()`` of each prior.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
AUDIO = REPO.parent / "shared" / "data" / "audio"
CORPUS = Path(os.environ.get("MIXEST_AUDIO_CORPUS",
                             Path.home() / ".cache" / "mixest" / "audio_corpus"))


def held_out_segments(audio: Path, corpus: Path) -> dict[str, np.ndarray]:
    """50-frame power spectra of each held-out set."""
    from mixest.datasets import load_audio_folder, make_spectral_sequences

    medley_train = tuple(p.name for p in (audio / "flute").glob("*training*"))
    sets = {"speech (SiSEC dev1)": (audio / "speech" / "sisec2011_dev1", ()),
            "flute (Medley test/val)": (audio / "flute", medley_train),
            "flute (held-out soundfont)": (corpus / "flute_eval", ())}
    out = {}
    for name, (folder, exclude) in sets.items():
        if not folder.is_dir():
            print(f"skipped {name}: {folder} not found")
            continue
        signals = load_audio_folder(folder, 16000, exclude=exclude)
        out[name] = make_spectral_sequences(signals, 50, min_level_db=40.0)
    return out


def load_priors(args) -> dict[str, dict[str, object]]:
    from mixest.dvae import DVAE

    def load(spec):
        return DVAE.load(spec) if Path(spec).is_file() else DVAE.from_pretrained(spec)

    sets = {"mixest": {"speech": load(args.speech), "flute": load(args.flute)}}
    if args.authors_dir is not None:
        d = args.authors_dir
        sets["authors'"] = {
            kind: DVAE.from_checkpoint(d / f"model_scass_{n}.pt",
                                       d / f"cfg_dvae_single_scass_{n}.ini")
            for kind, n in (("speech", "wsj"), ("flute", "cbf"))}
    return sets


def _reconstruction(prior, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return prior.module_.run(torch.as_tensor(X, dtype=torch.float32),
                                 sample=False)["x_var"].double().numpy()


def reconstruction_rows(set_name: str, priors: dict, segments: dict[str, np.ndarray]) -> list:
    """Markdown rows: the matching prior's reconstruction error, overall and on the quietest
    fifth of the frames, and its rise where the other type dominates after adding it."""
    rows = []
    for name, X in segments.items():
        kind = "speech" if name.startswith("speech") else "flute"
        other = next(seg for n, seg in segments.items() if not n.startswith(kind))
        Y = other[np.arange(len(X)) % len(other)]
        clean = _reconstruction(priors[kind], X)
        ratio = X / clean
        with np.errstate(divide="ignore"):  # Itakura-Saito per frame; bins of digital
            error = np.where(X > 0, ratio - np.log(ratio) - 1, 0.0).sum(-1)  # silence left out
        energy = X.sum(-1)
        quiet = energy <= np.quantile(energy, 0.2)
        rises = []
        for db in (-20.0, -10.0):
            gain = X.mean((1, 2), keepdims=True) / Y.mean((1, 2), keepdims=True) * 10 ** (db / 10)
            dominated = gain * Y > X
            mixed = _reconstruction(priors[kind], X + gain * Y)
            rises.append(10 * np.log10(mixed[dominated] / clean[dominated]).mean())
        rows.append(f"| {set_name} | {name} | {error.mean():.0f} | {error[quiet].mean():.0f} | "
                    f"{rises[0]:+.1f} | {rises[1]:+.1f} |")
    return rows


def plot(priors: dict, segments: dict[str, np.ndarray], path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    rows = [(name, seg[len(seg) // 2]) for name, seg in segments.items()
            if not name.endswith("soundfont)")]
    cols = ["held-out segment", "speech prior reconstruction", "flute prior reconstruction",
            "speech prior sample", "flute prior sample"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.0 * len(cols), 2.6 * len(rows)),
                             sharey=True, squeeze=False)
    samples = {k: p.sample(len(rows), 50, random_state=seed) for k, p in priors.items()}
    for i, (name, x) in enumerate(rows):
        recon = {}
        for kind, prior in priors.items():
            with torch.no_grad():
                r = prior.module_.run(torch.as_tensor(x[None], dtype=torch.float32),
                                      sample=False)
            recon[kind] = r["x_var"][0].numpy()
        images = [x, recon["speech"], recon["flute"], samples["speech"][i], samples["flute"][i]]
        vmax = 10 * np.log10(x.max())
        for j, img in enumerate(images):
            ax = axes[i, j]
            ax.imshow(10 * np.log10(np.maximum(img.T, 1e-12)), origin="lower", aspect="auto",
                      vmin=vmax - 80, vmax=vmax, extent=(0, 50 * 0.016, 0, 8), cmap="magma")
            ax.set_title(cols[j] if i else cols[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{name}\nkHz", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", default="speech", help="bundled name or DVAE file")
    parser.add_argument("--flute", default="flute", help="bundled name or DVAE file")
    parser.add_argument("--authors-dir", type=Path, default=None)
    parser.add_argument("--audio-dir", type=Path, default=AUDIO)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    segments = held_out_segments(args.audio_dir, args.corpus)
    prior_sets = load_priors(args)
    print("| priors | held-out set | segments | -ELBO speech prior | -ELBO flute prior | "
          "matching prior better |\n|---|---|---|---|---|---|")
    for set_name, priors in prior_sets.items():
        for name, X in segments.items():
            elbo = {k: p.score_samples(X) for k, p in priors.items()}
            kind = "speech" if name.startswith("speech") else "flute"
            other = "flute" if kind == "speech" else "speech"
            share = float(np.mean(elbo[kind] > elbo[other]))
            print(f"| {set_name} | {name} | {len(X)} | {-elbo['speech'].mean():.1f} | "
                  f"{-elbo['flute'].mean():.1f} | {100 * share:.1f}% |", flush=True)
    print("\n| priors | held-out set | reconstruction error | quietest fifth | other type "
          "at -20 dB | at -10 dB |\n|---|---|---|---|---|---|")
    for set_name, priors in prior_sets.items():
        print("\n".join(reconstruction_rows(set_name, priors, segments)), flush=True)
    if args.plot is not None:
        plot(prior_sets["mixest"], segments, args.plot, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
