"""Synthesise the training/evaluation audio corpus of the spectral DVAE priors.

Usage (the command that produced the corpus described in ``docs/audio_data.md``)::

    nice python benchmarks/audio_corpus.py

Options: ``--out DIR`` (default ``$MIXEST_AUDIO_CORPUS``, else ``~/.cache/mixest/audio_corpus``),
``--minutes-speech 40``, ``--minutes-flute 40``, ``--minutes-eval 5``, ``--seed 0``,
``--jobs 1`` (worker processes), ``--no-install`` (never call ``apt-get``).

Three folders of 16 kHz mono 16-bit WAV files are written under ``--out``:

``speech_tts/``
    Random English sentences (a small seeded generator, :class:`SentenceGenerator`) spoken by
    ``espeak-ng`` (English voices x variants ``+f1..+f4``, ``+m1..+m7``, rate 130-200 wpm,
    pitch 25-75) and ``festival`` (every English voice installed: the HTS voice
    ``cmu_us_slt_arctic_hts`` and the diphone voices ``kal_diphone``, ``ked_diphone``; speed
    and, for diphone voices, mean pitch drawn per clip). Half the minutes go to each engine,
    split evenly across its voices.
``flute_train/``
    Melodies written as Standard MIDI Files by this script (:func:`make_melody`,
    :func:`write_midi`: random key and scale, step-wise motion with leaps, 0.1-1.2 s notes,
    legato or detached phrases, pitch-bend vibrato, velocity and CC11 dynamics) rendered by
    ``fluidsynth`` with the training soundfont ``FluidR3_GM.sf2`` (General MIDI Flute 74,
    Pan Flute 76 and Shakuhachi 78, i.e. program changes 73, 75, 77), then augmented: a slow
    random gain curve, a pitch shift by resampling (factor 0.97-1.03), and on 40% of the clips
    a synthetic room reverb (exponentially decaying noise, RT60 0.2-0.6 s).
``flute_eval/``
    The same, with other seeds and the held-out soundfont ``TimGM6mb.sf2`` only (an
    independent GM set; ``MuseScore_General`` is not used since it derives from FluidR3).

Every file is silence-trimmed and peak-normalised (``max |x| = 1``). Everything follows from
``--seed`` (and the versions of the Debian tools, recorded in ``corpus.json``). Existing files
are kept, so the script is idempotent and can be resumed; ``manifest.csv`` lists every file
of the corpus with its settings. Missing tools are installed with ``apt-get`` (as root, or via
``sudo -n``): espeak-ng, festival, festvox-us-slt-hts, festvox-kallpc16k, festvox-kdlpc16k,
fluidsynth, fluid-soundfont-gm, timgm6mb-soundfont.

Load the result with :func:`mixest.datasets.load_audio_folder` and
:func:`mixest.datasets.make_spectral_sequences`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
DEFAULT_OUT = Path("~/.cache/mixest/audio_corpus")
MANIFEST_FIELDS = [
    "file",
    "kind",
    "split",
    "engine",
    "soundfont",
    "voice",
    "program",
    "duration_s",
    "settings",
]

# ----------------------------------------------------------------------------------------------
# Tools (Debian packages)
# ----------------------------------------------------------------------------------------------

FESTIVAL_VOICE_ROOT = Path("/usr/share/festival/voices")
SF2_ROOT = Path("/usr/share/sounds/sf2")
# package -> a command or file it provides (checked before calling apt-get)
PACKAGES = {
    "espeak-ng": "espeak-ng",
    "festival": "text2wave",
    "festvox-us-slt-hts": FESTIVAL_VOICE_ROOT / "us" / "cmu_us_slt_arctic_hts",
    "festvox-kallpc16k": FESTIVAL_VOICE_ROOT / "english" / "kal_diphone",
    "festvox-kdlpc16k": FESTIVAL_VOICE_ROOT / "english" / "ked_diphone",
    "fluidsynth": "fluidsynth",
    "fluid-soundfont-gm": SF2_ROOT / "FluidR3_GM.sf2",
    "timgm6mb-soundfont": SF2_ROOT / "TimGM6mb.sf2",
}
TRAIN_SOUNDFONT = "fluid-soundfont-gm"
# Held-out soundfonts, by preference. MuseScore_General derives from FluidR3 (less independent).
HELD_OUT_SOUNDFONTS = ["timgm6mb-soundfont", "musescore-general-soundfont-small"]
ESPEAK_BASES = [
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
]
ESPEAK_FEMALE = ["f1", "f2", "f3", "f4"]
ESPEAK_MALE = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]


def _present(target: str | Path) -> bool:
    return Path(target).exists() if isinstance(target, Path) else shutil.which(target) is not None


def _apt(args: list[str]) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(prefix + ["apt-get", *args], capture_output=True, text=True, env=env)


def _apt_candidate(package: str) -> bool:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    return "Candidate:" in out.stdout and "Candidate: (none)" not in out.stdout


def _extra_english_hts_voices() -> list[str]:
    """Other English HTS voices Debian ships (``festvox-{us,en,uk}-*-hts``), if any."""
    if shutil.which("apt-cache") is None:
        return []
    out = subprocess.run(["apt-cache", "search", "festvox"], capture_output=True, text=True)
    names = [line.split(" - ")[0].strip() for line in out.stdout.splitlines()]
    return sorted(
        n
        for n in names
        if n.endswith("-hts") and n.split("-")[1] in ("us", "en", "uk", "gb") and n not in PACKAGES
    )


def ensure_tools(install: bool = True) -> dict:
    """Install what is missing with apt-get (once), then report what can be used."""
    wanted = dict(PACKAGES)
    missing = [p for p, target in wanted.items() if not _present(target)]
    extra = _extra_english_hts_voices() if install else []
    missing += [p for p in extra if not _dpkg_installed(p)]
    notes = []
    if missing and install:
        if shutil.which("apt-get") is None or (os.geteuid() != 0 and not shutil.which("sudo")):
            notes.append(f"cannot install {missing}: no apt-get or no root rights")
        else:
            print(f"apt-get update (missing: {' '.join(missing)}) ...", flush=True)
            update = _apt(["update"])
            if update.returncode != 0:
                notes.append(f"apt-get update failed: {update.stderr.strip()[-300:]}")
            available = [p for p in missing if _apt_candidate(p)]
            absent = [p for p in missing if p not in available]
            if absent:
                notes.append(f"not in the Debian repositories: {absent}")
            if "timgm6mb-soundfont" in absent:  # fall back on the next held-out soundfont
                available += [
                    p
                    for p in HELD_OUT_SOUNDFONTS[1:]
                    if not _dpkg_installed(p) and _apt_candidate(p)
                ]
            if available:
                print(f"apt-get install -y {' '.join(available)} ...", flush=True)
                result = _apt(["install", "-y", "--no-install-recommends", *available])
                if result.returncode != 0:
                    notes.append(f"apt-get install failed: {result.stderr.strip()[-500:]}")
    elif missing:
        notes.append(f"missing (not installed, --no-install): {missing}")
    for note in notes:
        print("warning:", note, file=sys.stderr)

    if not shutil.which("fluidsynth"):
        raise SystemExit("fluidsynth is required (apt-get install fluidsynth).")
    train_sf = _soundfont_of(TRAIN_SOUNDFONT)
    if train_sf is None:
        raise SystemExit("the training soundfont is required (apt-get install fluid-soundfont-gm).")
    held_out = next(
        ((p, sf) for p in HELD_OUT_SOUNDFONTS if (sf := _soundfont_of(p)) is not None), None
    )
    if held_out is None:
        raise SystemExit(
            "a held-out soundfont is required (apt-get install timgm6mb-soundfont or "
            "musescore-general-soundfont-small)."
        )
    voices = _festival_voices() if shutil.which("text2wave") else []
    if not shutil.which("espeak-ng") and not voices:
        raise SystemExit("espeak-ng or festival (with an English voice) is required.")
    return {
        "espeak": bool(shutil.which("espeak-ng")),
        "festival_voices": voices,
        "train_soundfont": str(train_sf),
        "eval_soundfont": str(held_out[1]),
        "eval_soundfont_package": held_out[0],
        "notes": notes,
    }


def _dpkg_installed(package: str) -> bool:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return out.returncode == 0 and "install ok installed" in out.stdout


def _soundfont_of(package: str) -> Path | None:
    """The .sf2/.sf3 file a soundfont package installed (None when not installed)."""
    target = PACKAGES.get(package)
    if isinstance(target, Path) and target.is_file():
        return target
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    files = [Path(f) for f in out.stdout.split() if f.endswith((".sf2", ".sf3"))]
    files = [f for f in files if f.is_file() and not f.is_symlink()] or [
        f for f in files if f.is_file()
    ]
    return files[0] if files else None


def _festival_voices() -> list[str]:
    """Installed English festival voices (directory names, e.g. ``kal_diphone``)."""
    voices = []
    for lang in ("us", "english", "british"):
        folder = FESTIVAL_VOICE_ROOT / lang
        if folder.is_dir():
            voices += [d.name for d in folder.iterdir() if (d / "festvox").is_dir()]
    return sorted(voices)


def tool_versions() -> dict:
    versions = {}
    for name, cmd in (
        ("espeak-ng", ["espeak-ng", "--version"]),
        ("festival", ["festival", "--version"]),
        ("fluidsynth", ["fluidsynth", "--version"]),
    ):
        if shutil.which(cmd[0]):
            out = subprocess.run(cmd, capture_output=True, text=True)
            versions[name] = (out.stdout or out.stderr).strip().splitlines()[0]
    return versions


# ----------------------------------------------------------------------------------------------
# Random English sentences
# ----------------------------------------------------------------------------------------------

NAMES = (
    "Anna Ben Clara David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nathan Olivia Peter "
    "Rachel Sam Tom Uma Victor Wendy"
).split()
NOUNS = (
    "boat garden letter window river table kitchen doctor teacher farmer market village "
    "bridge mountain forest candle picture basket engine station ticket morning evening "
    "storm lantern blanket bottle carpet castle harbour island library museum orchard "
    "painter pilot sailor student violin whistle wagon coat chair cloud"
).split()
ADJECTIVES = (
    "old small bright quiet heavy narrow yellow wooden broken gentle cold warm ancient "
    "empty crowded distant famous hidden lucky modern muddy noisy polite rusty silver "
    "simple strange tall tired young"
).split()
VERBS_PAST = (
    "found painted carried opened cleaned watched repaired followed noticed borrowed "
    "described visited covered dropped lifted pushed pulled measured counted remembered"
).split()
VERBS = (
    "find paint carry open clean watch repair follow notice borrow describe visit cover "
    "lift push measure count remember"
).split()
ADVERBS = (
    "slowly quickly carefully quietly happily suddenly easily gently nearly finally rarely often"
).split()
PLACES = (
    "the station|the old harbour|the village square|the top of the hill|the river bank|"
    "the kitchen table|the corner shop|the north road|the school yard|the empty museum"
).split("|")
TIMES = (
    "yesterday|last night|this morning|on Sunday|after lunch|before dawn|in the spring|"
    "every evening|at noon|next week"
).split("|")
NUMBERS = "two three four five six seven eight nine ten twelve twenty forty".split()


class SentenceGenerator:
    """Seeded generator of simple English sentences (a few templates over word lists)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def _pick(self, words):
        return words[int(self.rng.integers(len(words)))]

    def _np(self) -> str:
        if self.rng.random() < 0.5:
            return f"the {self._pick(ADJECTIVES)} {self._pick(NOUNS)}"
        return f"the {self._pick(NOUNS)}"

    def sentence(self) -> str:
        p = self._pick
        templates = [
            lambda: f"{p(NAMES)} {p(VERBS_PAST)} {self._np()} near {p(PLACES)} {p(TIMES)}.",
            lambda: f"{self._np().capitalize()} was {p(ADJECTIVES)} and {p(ADJECTIVES)}.",
            lambda: f"Did you {p(VERBS)} {self._np()} at {p(PLACES)}?",
            lambda: f"We will {p(VERBS)} {self._np()} {p(TIMES)}, if the weather is good.",
            lambda: f"There were {p(NUMBERS)} {p(NOUNS)}s on {p(PLACES)}.",
            lambda: f"{p(NAMES)} {p(ADVERBS)} {p(VERBS_PAST)} {self._np()} for {p(NAMES)}.",
            lambda: f"Please {p(VERBS)} {self._np()} before {p(NAMES)} comes back.",
            lambda: (
                f"{p(TIMES).capitalize()}, {p(NAMES)} and {p(NAMES)} {p(VERBS_PAST)} {self._np()}."
            ),
            lambda: f"Why is {self._np()} so {p(ADJECTIVES)} today?",
            lambda: (
                f"The {p(NOUNS)} that {p(NAMES)} {p(VERBS_PAST)} is {p(ADVERBS)} {p(ADJECTIVES)}."
            ),
            lambda: f"It took {p(NUMBERS)} hours to {p(VERBS)} {self._np()}.",
            lambda: f"{p(NAMES)} said that {self._np()} had been {p(VERBS_PAST)} {p(TIMES)}.",
        ]
        return templates[int(self.rng.integers(len(templates)))]()

    def paragraph(self, n_sentences: int) -> str:
        return " ".join(self.sentence() for _ in range(n_sentences))


# ----------------------------------------------------------------------------------------------
# Standard MIDI File writer and melody generator
# ----------------------------------------------------------------------------------------------

TICKS_PER_QUARTER = 500
TEMPO_US = 500_000  # 500 ticks per 0.5 s: one tick is one millisecond


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, high bit set on all but the last)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: list[tuple[float, int, bytes]]) -> None:
    """Write a format-0 Standard MIDI File.

    ``events`` are ``(time_s, order, message)`` with ``message`` a complete channel message
    (status byte first); ``order`` breaks ties at equal times (note-offs before note-ons).
    A tempo meta event opens the track; an end-of-track meta event closes it.
    """
    track = bytearray()
    track += _vlq(0) + b"\xff\x51\x03" + TEMPO_US.to_bytes(3, "big")
    now = 0
    for t, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        tick = max(0, int(round(t * 1000)))
        track += _vlq(tick - now) + message
        now = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    Path(path).write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


# General MIDI programs (0-based program-change values) and MIDI note ranges.
INSTRUMENTS = {
    "flute": {"program": 73, "range": (60, 96)},  # GM 74, C4-C7
    "pan_flute": {"program": 75, "range": (62, 88)},  # GM 76, D4-E6
    "shakuhachi": {"program": 77, "range": (62, 86)},  # GM 78, D4-D6
}
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "natural_minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "in": (0, 1, 5, 7, 8),  # Japanese miyako-bushi scale
}
NOTE_NAMES = "C C# D D# E F F# G G# A A# B".split()


def _cc(number: int, value: int) -> bytes:
    return bytes([0xB0, number, int(np.clip(value, 0, 127))])


def _bend(cents: float, bend_range_cents: float = 200.0) -> bytes:
    value = int(np.clip(round(8192 + cents / bend_range_cents * 8192), 0, 16383))
    return bytes([0xE0, value & 0x7F, value >> 7])


def make_melody(rng: np.random.Generator, instrument: str, duration_s: float):
    """Random monophonic melody as MIDI events, with its settings.

    Returns ``(events, settings)``; events as in :func:`write_midi`, times in seconds.
    """
    lo, hi = INSTRUMENTS[instrument]["range"]
    program = INSTRUMENTS[instrument]["program"]
    scale_name = str(rng.choice(sorted(SCALES)))
    key = int(rng.integers(12))
    pitches = [p for p in range(lo, hi + 1) if (p - key) % 12 in SCALES[scale_name]]
    bpm = float(rng.uniform(60, 140))
    beat = 60.0 / bpm
    p_vibrato = float(rng.uniform(0.2, 0.9))
    p_legato = float(rng.uniform(0.2, 0.9))
    idx = int(rng.integers(len(pitches) // 4, 3 * len(pitches) // 4 + 1))

    notes = []  # [onset, offset, pitch, velocity]
    t = float(rng.uniform(0.05, 0.3))
    while t < duration_s:
        n_notes = int(rng.integers(4, 13))
        legato = rng.random() < p_legato
        v0, v1 = rng.uniform(45, 115, size=2)
        for k in range(n_notes):
            dur = float(np.clip(beat * rng.choice([0.25, 0.5, 0.5, 0.75, 1, 1, 1.5, 2]), 0.1, 1.2))
            r = rng.random()
            if r < 0.55:
                move = int(rng.choice([-1, 1]))
            elif r < 0.75:
                move = int(rng.choice([-2, 2]))
            elif r < 0.82:
                move = 0
            else:
                move = int(rng.choice([-1, 1]) * rng.integers(3, 8))
            idx += move
            while idx < 0 or idx >= len(pitches):  # reflect at the ends of the range
                idx = -idx if idx < 0 else 2 * (len(pitches) - 1) - idx
            velocity = int(
                np.clip(v0 + (v1 - v0) * k / max(n_notes - 1, 1) + rng.normal(0, 6), 25, 127)
            )
            if legato:
                off = t + dur + float(rng.uniform(0.0, 0.03))  # adjacent or slightly overlapping
            else:
                off = t + dur * float(rng.uniform(0.5, 0.9))
            notes.append([t, off, pitches[idx], velocity])
            t += dur
            if t >= duration_s:
                break
        t += float(rng.uniform(0.15, 1.0))  # breath between phrases
        notes[-1][1] = min(notes[-1][1], notes[-1][0] + 1.2)
    # A repeated pitch must end before it starts again (a late note-off would cut the new note).
    for a, b in zip(notes[:-1], notes[1:], strict=False):
        if a[2] == b[2] and a[1] > b[0] - 0.01:
            a[1] = max(a[0] + 0.05, b[0] - 0.01)
    end = max(n[1] for n in notes)

    events = [
        (0.0, 0, bytes([0xC0, program])),
        # pitch-bend range: RPN 0 = 2 semitones
        (0.0, 1, _cc(101, 0)),
        (0.0, 1, _cc(100, 0)),
        (0.0, 1, _cc(6, 2)),
        (0.0, 1, _cc(38, 0)),
        (0.0, 1, _cc(7, 100)),
        (0.0, 1, _cc(91, 0)),  # no built-in reverb or chorus send
        (0.0, 1, _cc(93, 0)),
    ]
    # Expression (CC11): a slow random curve every 50 ms.
    f1, f2 = rng.uniform(0.05, 0.4, size=2)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, size=2)
    depth = float(rng.uniform(0.05, 0.3))
    for ts in np.arange(0.0, end, 0.05):
        level = 0.8 + depth * 0.5 * (
            np.sin(2 * np.pi * f1 * ts + ph1) + np.sin(2 * np.pi * f2 * ts + ph2)
        )
        events.append((float(ts), 1, _cc(11, int(round(127 * min(level, 1.0))))))
    n_vibrato = 0
    for i, (on, off, pitch, velocity) in enumerate(notes):
        events.append((on, 1, _bend(0.0)))
        events.append((on, 2, bytes([0x90, pitch, velocity])))
        events.append((off, 0, bytes([0x80, pitch, 64])))
        stop = min(off, notes[i + 1][0]) if i + 1 < len(notes) else off
        if stop - on > 0.35 and rng.random() < p_vibrato:
            n_vibrato += 1
            rate = float(rng.uniform(4.0, 7.0))
            cents = float(rng.uniform(8.0, 35.0))
            delay = float(rng.uniform(0.1, 0.25))
            for ts in np.arange(on + delay, stop - 0.01, 0.01):
                fade = min(1.0, (ts - on - delay) / 0.2)
                events.append(
                    (
                        float(ts),
                        1,
                        _bend(fade * cents * np.sin(2 * np.pi * rate * (ts - on - delay))),
                    )
                )
            events.append((stop, 0, _bend(0.0)))
    # Keep the player running for the release tail.
    events.append((end + 1.0, 1, _cc(11, 0)))
    settings = {
        "key": NOTE_NAMES[key],
        "scale": scale_name,
        "bpm": round(bpm, 1),
        "n_notes": len(notes),
        "n_vibrato": n_vibrato,
        "p_legato": round(p_legato, 2),
        "pitch_range": [int(min(n[2] for n in notes)), int(max(n[2] for n in notes))],
    }
    return events, settings


# ----------------------------------------------------------------------------------------------
# Clips: specification (deterministic from the seed) and rendering
# ----------------------------------------------------------------------------------------------


@dataclass
class Stream:
    """A sequence of clips of one voice/program, generated until ``quota_s`` seconds."""

    folder: str
    name: str
    kind: str
    split: str
    engine: str
    voice: str
    quota_s: float
    soundfont: str = ""
    program: int | str = ""
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _clip_rng(stream: Stream, index: int) -> np.random.Generator:
    key = zlib.crc32(f"{stream.folder}/{stream.name}".encode())
    return np.random.default_rng([stream.seed, key, index])


def _speech_spec(stream: Stream, index: int) -> dict:
    rng = _clip_rng(stream, index)
    text = SentenceGenerator(rng).paragraph(int(rng.integers(2, 6)))
    if stream.engine == "espeak-ng":
        variant = str(rng.choice(ESPEAK_FEMALE if rng.random() < 0.5 else ESPEAK_MALE))
        return {
            "text": text,
            "voice": f"{stream.voice}+{variant}",
            "rate_wpm": int(rng.integers(130, 201)),
            "pitch": int(rng.integers(25, 76)),
            "word_gap_10ms": int(rng.integers(0, 3)),
        }
    if "hts" in stream.voice:
        return {
            "text": text,
            "voice": stream.voice,
            "hts_speed": round(float(rng.uniform(0.85, 1.2)), 3),
        }
    return {
        "text": text,
        "voice": stream.voice,
        "duration_stretch": round(float(rng.uniform(0.9, 1.25)), 3),
        "f0_mean_hz": int(rng.integers(85, 150)),
        "f0_std_hz": int(rng.integers(10, 26)),
    }


def _synth_speech(spec: dict, engine: str, tmp: Path) -> np.ndarray:
    from mixest.separation import read_audio

    text_file, wav = tmp / "text.txt", tmp / "speech.wav"
    text_file.write_text(spec["text"] + "\n")
    if engine == "espeak-ng":
        cmd = [
            "espeak-ng",
            "-v",
            spec["voice"],
            "-s",
            str(spec["rate_wpm"]),
            "-p",
            str(spec["pitch"]),
            "-g",
            str(spec["word_gap_10ms"]),
            "-w",
            str(wav),
            "-f",
            str(text_file),
        ]
    else:
        evals = [f"(voice_{spec['voice']})"]
        if "hts_speed" in spec:
            evals.append(
                f'(set! hts_engine_params (append hts_engine_params \'(("-r" '
                f"{spec['hts_speed']}))))"
            )
        else:
            evals.append(f"(Parameter.set 'Duration_Stretch {spec['duration_stretch']})")
            evals.append(
                f"(set! int_lr_params '((target_f0_mean {spec['f0_mean_hz']}) (target_f0_std "
                f"{spec['f0_std_hz']}) (model_f0_mean 170) (model_f0_std 34)))"
            )
        cmd = ["text2wave"]
        for e in evals:
            cmd += ["-eval", e]
        cmd += ["-o", str(wav), str(text_file)]
    subprocess.run(cmd, check=True, capture_output=True)
    x, _ = read_audio(wav, sample_rate=SAMPLE_RATE)
    return x


def _flute_spec(stream: Stream, index: int) -> dict:
    rng = _clip_rng(stream, index)
    duration = float(rng.uniform(5.0, 20.0))
    events, melody = make_melody(rng, stream.voice, duration)
    reverb = bool(rng.random() < 0.4)
    spec = {
        "events": events,
        "melody": melody,
        "target_s": round(duration, 2),
        "pitch_factor": round(float(rng.uniform(0.97, 1.03)) * 400) / 400,  # 40 Hz steps
        "gain_curve_db": round(float(rng.uniform(0.0, 4.0)), 2),
        "gain_curve_hz": round(float(rng.uniform(0.05, 0.3)), 3),
        "gain_curve_phase": round(float(rng.uniform(0, 2 * np.pi)), 3),
        "synth_gain": round(float(rng.uniform(0.3, 0.8)), 2),
        "reverb": reverb,
        "reverb_seed": int(rng.integers(2**31)),
    }
    if reverb:
        spec["rt60_s"] = round(float(rng.uniform(0.2, 0.6)), 3)
        spec["drr_db"] = round(float(rng.uniform(0.0, 10.0)), 2)
        spec["predelay_ms"] = round(float(rng.uniform(3.0, 15.0)), 1)
    return spec


def room_impulse_response(rt60: float, drr_db: float, predelay_ms: float, seed: int):
    """Direct path plus an exponentially decaying noise tail (energy -60 dB after ``rt60``)."""
    rng = np.random.default_rng(seed)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    delay = int(predelay_ms * SAMPLE_RATE / 1000)
    ir = np.zeros(delay + n)
    ir[0] = 1.0
    ir[delay:] += tail
    return ir


def _render_flute(spec: dict, soundfont: str, tmp: Path) -> np.ndarray:
    from scipy.signal import fftconvolve

    from mixest.separation import read_audio, resample

    mid, wav = tmp / "melody.mid", tmp / "flute.wav"
    write_midi(mid, spec["events"])
    cmd = [
        "fluidsynth",
        "-ni",
        "-q",
        "-R",
        "0",
        "-C",
        "0",
        "-g",
        str(spec["synth_gain"]),
        "-r",
        str(SAMPLE_RATE),
        "-T",
        "wav",
        "-O",
        "float",
        "-F",
        str(wav),
        soundfont,
        str(mid),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    x, _ = read_audio(wav, sample_rate=SAMPLE_RATE)
    # Pitch shift by `pitch_factor`: read the samples as if taken at SAMPLE_RATE * factor.
    x = resample(x, int(round(SAMPLE_RATE * spec["pitch_factor"])), SAMPLE_RATE)
    t = np.arange(x.shape[0]) / SAMPLE_RATE
    gain_db = spec["gain_curve_db"] * np.sin(
        2 * np.pi * spec["gain_curve_hz"] * t + spec["gain_curve_phase"]
    )
    x = x * 10.0 ** (gain_db / 20.0)
    if spec["reverb"]:
        ir = room_impulse_response(
            spec["rt60_s"], spec["drr_db"], spec["predelay_ms"], spec["reverb_seed"]
        )
        x = fftconvolve(x, ir)
    return x


def _finish(x: np.ndarray) -> np.ndarray:
    from mixest.datasets import trim_silence

    x = trim_silence(x, top_db=40.0)
    return x / np.max(np.abs(x))


def _clip_name(stream: Stream, index: int) -> str:
    return f"{stream.folder}/{stream.name}_{index:04d}.wav"


def run_stream(stream: Stream, out: str) -> list[dict]:
    """Make (or find) the clips of one stream until its quota; return their manifest rows."""
    import soundfile as sf

    out = Path(out)
    (out / stream.folder).mkdir(parents=True, exist_ok=True)
    rows, total, index = [], 0.0, 0
    with tempfile.TemporaryDirectory(prefix="mixest_corpus_") as tmp:
        tmp = Path(tmp)
        while total < stream.quota_s:
            name = _clip_name(stream, index)
            path = out / name
            if stream.kind == "speech":
                spec = _speech_spec(stream, index)
            else:
                spec = _flute_spec(stream, index)
            if not path.is_file():
                if stream.kind == "speech":
                    x = _synth_speech(spec, stream.engine, tmp)
                else:
                    x = _render_flute(spec, stream.soundfont, tmp)
                x = _finish(x)
                # Write under a name the loaders skip, then rename: an interrupted run leaves
                # no truncated .wav behind.
                part = path.with_name(path.name + ".part")
                sf.write(str(part), x, SAMPLE_RATE, format="WAV", subtype="PCM_16")
                os.replace(part, path)
            info = sf.info(str(path))
            duration = info.frames / info.samplerate
            total += duration
            settings = {k: v for k, v in spec.items() if k not in ("events",)}
            rows.append(
                {
                    "file": name,
                    "kind": stream.kind,
                    "split": stream.split,
                    "engine": stream.engine,
                    "soundfont": Path(stream.soundfont).name if stream.soundfont else "",
                    "voice": settings.pop("voice", stream.voice),
                    "program": stream.program,
                    "duration_s": f"{duration:.3f}",
                    "settings": json.dumps(settings, sort_keys=True),
                }
            )
            index += 1
    return rows


def plan_streams(args, tools: dict) -> list[Stream]:
    streams = []
    speech_s = 60.0 * args.minutes_speech
    engines = []
    if tools["espeak"]:
        engines.append(("espeak-ng", list(ESPEAK_BASES)))
    if tools["festival_voices"]:
        engines.append(("festival", list(tools["festival_voices"])))
    for engine, voices in engines:
        for voice in voices:
            streams.append(
                Stream(
                    "speech_tts",
                    f"{engine}_{voice}",
                    "speech",
                    "train",
                    engine,
                    voice,
                    speech_s / len(engines) / len(voices),
                    seed=args.seed,
                )
            )
    for folder, split, minutes, soundfont, seed_offset in (
        ("flute_train", "train", args.minutes_flute, tools["train_soundfont"], 0),
        ("flute_eval", "eval", args.minutes_eval, tools["eval_soundfont"], 1_000_003),
    ):
        for instrument, spec in INSTRUMENTS.items():
            streams.append(
                Stream(
                    folder,
                    instrument,
                    "flute",
                    split,
                    "fluidsynth",
                    instrument,
                    60.0 * minutes / len(INSTRUMENTS),
                    soundfont=soundfont,
                    program=spec["program"],
                    seed=args.seed + seed_offset,
                )
            )
    return [s for s in streams if s.quota_s > 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = os.environ.get("MIXEST_AUDIO_CORPUS") or str(DEFAULT_OUT)
    parser.add_argument(
        "--out",
        default=default_out,
        help="output folder (default: $MIXEST_AUDIO_CORPUS or %(default)s)",
    )
    parser.add_argument("--minutes-speech", type=float, default=40.0)
    parser.add_argument("--minutes-flute", type=float, default=40.0)
    parser.add_argument(
        "--minutes-eval",
        type=float,
        default=5.0,
        help="minutes of held-out-soundfont flute (flute_eval/)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--no-install", action="store_true", help="never call apt-get")
    args = parser.parse_args(argv)
    for name in ("minutes_speech", "minutes_flute", "minutes_eval"):
        if not getattr(args, name) >= 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    tools = ensure_tools(install=not args.no_install)
    config_path = out / "corpus.json"
    config = {"seed": args.seed, "sample_rate": SAMPLE_RATE}
    if config_path.is_file():
        old = json.loads(config_path.read_text())
        if old.get("seed") != args.seed:
            raise SystemExit(
                f"{out} holds a corpus made with --seed {old.get('seed')}; use another --out "
                f"for --seed {args.seed} (files of two seeds would mix)."
            )
    config.update(
        {
            "minutes": {
                "speech_tts": args.minutes_speech,
                "flute_train": args.minutes_flute,
                "flute_eval": args.minutes_eval,
            },
            "tools": tool_versions(),
            "festival_voices": tools["festival_voices"],
            "train_soundfont": tools["train_soundfont"],
            "eval_soundfont": tools["eval_soundfont"],
        }
    )
    config_path.write_text(json.dumps(config, indent=2) + "\n")

    streams = plan_streams(args, tools)
    print(f"writing {len(streams)} streams to {out} with {args.jobs} process(es) ...", flush=True)
    if args.jobs == 1:
        results = [run_stream(s, str(out)) for s in streams]
    else:
        # Longest quotas first, so that the processes finish together.
        order = sorted(range(len(streams)), key=lambda i: -streams[i].quota_s)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {i: pool.submit(run_stream, streams[i], str(out)) for i in order}
            results = [futures[i].result() for i in range(len(streams))]
    rows = [row for stream_rows in results for row in stream_rows]

    with (out / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    listed = {row["file"] for row in rows}
    stray = (
        sorted(
            p.relative_to(out).as_posix()
            for folder in ("speech_tts", "flute_train", "flute_eval")
            for p in (out / folder).glob("*.wav")
            if p.relative_to(out).as_posix() not in listed
        )
        if out.is_dir()
        else []
    )

    print(f"\ncorpus in {out} ({time.perf_counter() - start:.0f} s)")
    print(f"{'folder':<13}{'files':>7}{'minutes':>9}   by voice/program")
    for folder in ("speech_tts", "flute_train", "flute_eval"):
        sel = [r for r in rows if r["file"].startswith(folder + "/")]
        if not sel:
            continue
        minutes = sum(float(r["duration_s"]) for r in sel) / 60
        by = {}
        for r in sel:
            key = (
                r["file"].split("/")[1].rsplit("_", 1)[0]
                if r["kind"] == "speech"
                else f"{Path(r['soundfont']).stem}:{r['voice']}"
            )
            by[key] = by.get(key, 0.0) + float(r["duration_s"]) / 60
        detail = ", ".join(f"{k} {v:.1f}" for k, v in sorted(by.items()))
        print(f"{folder:<13}{len(sel):>7}{minutes:>9.1f}   {detail}")
    if stray:
        print(
            f"\nwarning: {len(stray)} WAV file(s) in the corpus folders are not in the manifest "
            f"(left by a run with larger --minutes?), e.g. {stray[0]}; delete them or they "
            "will be loaded too.",
            file=sys.stderr,
        )
    for note in tools["notes"]:
        print("note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
