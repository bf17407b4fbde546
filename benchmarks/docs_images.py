"""The pictures of the docs: ``docs/images/tracks.png`` (the ``--plot`` of ``mixest track``) and
``docs/images/separation.png`` (the ``--plot`` of ``mixest separate``).

    python benchmarks/docs_images.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def tracks_picture(path: Path) -> None:
    """MixDVAE on one synthetic 300-frame sequence of the hard protocol, in 1920x1080 pixels."""
    import matplotlib

    matplotlib.use("Agg")
    from mixest import MixDVAETracker
    from mixest.datasets import make_tracking_mixture
    from mixest.tracking import plot_tracks

    X, _ = make_tracking_mixture(1, 3, 300, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=3, box_format="xyxy", image_size=None)
    X = X * np.array([1920.0, 1080.0, 1920.0, 1080.0])
    tracker = MixDVAETracker(3, box_format="xyxy", obs_noise=0.08, random_state=0)
    fig = plot_tracks(X[0], tracker.fit(X).predict(X)[0], box_format="xyxy")
    fig.savefig(path, dpi=80)


def separation_picture(path: Path) -> None:
    """The bundled priors on one held-out speech + flute mixture (0 dB, 2.9 s)."""
    import matplotlib

    matplotlib.use("Agg")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from table_separation import AUDIO, held_out

    from mixest.datasets import make_audio_mixtures
    from mixest.separation import MixDVAESeparator, plot_separation

    speech, flute = held_out(AUDIO)
    X, _ = make_audio_mixtures(speech, flute, n_mixtures=1, n_frames=180, random_state=2)
    sources = MixDVAESeparator(random_state=0).fit(X).transform(X)
    fig = plot_separation(X[0], sources[0], 16000, labels=["speech", "flute"])
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    tracks_picture(REPO / "docs" / "images" / "tracks.png")
    separation_picture(REPO / "docs" / "images" / "separation.png")
