"""Single-channel source separation: audio I/O, STFT transformer, separation metrics, separators."""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
        "read_audio": "._audio_io",
        "write_audio": "._audio_io",
        "resample": "._audio_io",
        "MixDVAESeparator": "._separator",
        "STFTTransformer": "._stft",
        "stft": "._stft",
        "istft": "._stft",
        "plot_separation": "._plot",
        "si_sdr": "._metrics",
        "si_sdr_improvement": "._metrics",
        "scale_optimal_rmse": "._metrics",
        "pesq_score": "._metrics",
        "estoi_score": "._metrics",
        "si_sdr_scorer": "._metrics",
        "si_sdri_scorer": "._metrics",
        "pesq_scorer": "._metrics",
        "estoi_scorer": "._metrics",
    },
)
