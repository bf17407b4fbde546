"""Synthetic generators (trajectories, tracking mixtures, audio mixtures) and real-data loaders."""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
        "make_trajectories": "._trajectories",
        "make_tracking_mixture": "._trajectories",
        "make_audio_mixtures": "._audio_mixtures",
        "trim_silence": "._audio_corpus",
        "load_audio_folder": "._audio_corpus",
        "make_spectral_sequences": "._audio_corpus",
    },
)
