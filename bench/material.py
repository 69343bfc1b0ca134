"""Deterministic synthetic test material for the decoder benchmarks: percussive and bass-heavy
clips of the kinds where phase recovery is hardest (the real model's outputs are not available
here).

Every clip is rendered longer than needed and cut out of the middle of its pattern (like a
model-output window, which rarely starts on a hit), then scaled to a peak of 0.5. The same name
always gives the same samples (seeded ``numpy`` generators, no global state).

- ``808 beat``: pitch-swept sine kicks with long tails (150 → 45 Hz), layered noise claps,
  closed hi-hats, 120 BPM.
- ``metal mix``: tanh-distorted power chords (root, fifth, octave of sawtooths) chugging in
  sixteenths on E2/G2/A2, double kick, snare, crash and ride, 140 BPM.
- ``acid bass``: a sawtooth bass line through a resonant low-pass whose cutoff falls over each
  sixteenth note (accents open it further), with a kick on the beats, 128 BPM.
- ``rock kit``: an acoustic-style kit alone (kick thump + beater click, snare tone + noise
  wires, open/closed hats, toms, crash), 100 BPM.
- ``synthetic tune``, ``synthetic noise+bass``: the older tonal and noise/bass clips.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

SR = 44100

SYNTHETIC_KINDS = (
    "808 beat",
    "metal mix",
    "acid bass",
    "rock kit",
    "synthetic tune",
    "synthetic noise+bass",
)


def _time(duration_s: float) -> np.ndarray:
    return np.arange(int(duration_s * SR)) / SR


def _place(track: np.ndarray, sound: np.ndarray, start_s: float, gain: float = 1.0) -> None:
    begin = round(start_s * SR)
    if begin >= len(track):
        return
    end = min(len(track), begin + len(sound))
    track[begin:end] += gain * sound[: end - begin]


def _bandpass(noise: np.ndarray, low: float, high: float) -> np.ndarray:
    sos = sps.butter(2, [low, high], btype="bandpass", fs=SR, output="sos")
    return sps.sosfilt(sos, noise)


def _highpass(noise: np.ndarray, cutoff: float) -> np.ndarray:
    sos = sps.butter(2, cutoff, btype="highpass", fs=SR, output="sos")
    return sps.sosfilt(sos, noise)


def _kick_808(duration_s: float = 0.6) -> np.ndarray:
    t = _time(duration_s)
    frequency = 45 + 105 * np.exp(-t / 0.04)
    phase = 2 * np.pi * np.cumsum(frequency) / SR
    return np.sin(phase) * np.exp(-t / 0.25)


def _clap(rng: np.random.Generator) -> np.ndarray:
    t = _time(0.25)
    noise = _bandpass(rng.standard_normal(len(t)), 900, 5000)
    envelope = np.exp(-t / 0.06)
    for delay in (0.0, 0.011, 0.022):  # the three hands of a clap
        envelope += 0.8 * np.exp(-np.clip(t - delay, 0, None) / 0.004) * (t >= delay)
    return noise * envelope / 3


def _hat(rng: np.random.Generator, decay_s: float) -> np.ndarray:
    t = _time(max(0.05, 6 * decay_s))
    return _highpass(rng.standard_normal(len(t)), 7000) * np.exp(-t / decay_s)


def _rock_kick(rng: np.random.Generator) -> np.ndarray:
    t = _time(0.4)
    frequency = 55 + 60 * np.exp(-t / 0.02)
    body = np.sin(2 * np.pi * np.cumsum(frequency) / SR) * np.exp(-t / 0.12)
    click = _bandpass(rng.standard_normal(len(t)), 2000, 6000) * np.exp(-t / 0.003)
    return body + 0.4 * click


def _snare(rng: np.random.Generator) -> np.ndarray:
    t = _time(0.3)
    tone = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
    wires = _bandpass(rng.standard_normal(len(t)), 1500, 9000) * np.exp(-t / 0.08)
    return 0.6 * tone + 0.7 * wires


def _tom(frequency: float) -> np.ndarray:
    t = _time(0.5)
    pitch = frequency * (1 + 0.3 * np.exp(-t / 0.03))
    return np.sin(2 * np.pi * np.cumsum(pitch) / SR) * np.exp(-t / 0.18)


def _crash(rng: np.random.Generator, decay_s: float = 1.2) -> np.ndarray:
    t = _time(3 * decay_s)
    return _highpass(rng.standard_normal(len(t)), 3000) * np.exp(-t / decay_s)


def _saw(frequency: float, duration_s: float, max_hz: float = 12000.0) -> np.ndarray:
    t = _time(duration_s)
    harmonics = np.arange(1, int(max_hz // frequency) + 1)
    return (np.sin(2 * np.pi * frequency * np.outer(t, harmonics)) / harmonics).sum(axis=1)


def _render(kind: str, total_s: float, rng: np.random.Generator) -> np.ndarray:
    track = np.zeros(int(total_s * SR))
    if kind == "808 beat":
        beat = 60 / 120
        kick, hat = _kick_808(), _hat(rng, 0.02)
        for bar in np.arange(0, total_s, 4 * beat):
            for position in (0, 1.5, 2.5):
                _place(track, kick, bar + position * beat, 1.0)
            for position in (1, 3):
                _place(track, _clap(rng), bar + position * beat, 0.8)
            for step in range(8):
                _place(track, hat, bar + step * beat / 2, 0.15)
    elif kind == "metal mix":
        beat = 60 / 140
        sixteenth = beat / 4
        roots = (82.41, 82.41, 98.0, 110.0)
        chords = {
            root: sum(_saw(root * ratio, sixteenth * 1.02) for ratio in (1.0, 1.5, 2.0))
            for root in set(roots)
        }
        gate = np.exp(-_time(sixteenth * 1.02) / (sixteenth * 0.6))
        kick, snare = _rock_kick(rng), _snare(rng)
        for index, start in enumerate(np.arange(0, total_s, sixteenth)):
            root = roots[(index // 16) % len(roots)]
            chug = np.tanh(4 * chords[root] * gate)
            _place(track, chug, start, 0.35)
            _place(track, kick, start, 0.5)  # double kick on every sixteenth
            if index % 8 == 4:
                _place(track, snare, start, 0.8)
            if index % 2 == 0:
                _place(track, _hat(rng, 0.08), start, 0.1)
        for start in np.arange(0, total_s, 16 * sixteenth):
            _place(track, _crash(rng), start, 0.3)
    elif kind == "acid bass":
        beat = 60 / 128
        sixteenth = beat / 4
        notes = (0, 0, 12, 0, 3, 0, 15, 0, 0, 7, 0, 10, 0, 12, 5, 0)
        accents = (1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0)
        t = _time(sixteenth)
        for index, start in enumerate(np.arange(0, total_s, sixteenth)):
            frequency = 55 * 2 ** (notes[index % 16] / 12)
            harmonics = np.arange(1, int(10000 // frequency) + 1)
            peak_cutoff = 2500 if accents[index % 16] else 1200
            cutoff = 150 + peak_cutoff * np.exp(-t / (sixteenth * 0.35))  # (samples,)
            ratio = (frequency * harmonics)[None, :] / cutoff[:, None]
            # Resonant 2-pole low-pass magnitude response at each harmonic, per sample.
            response = 1 / np.sqrt((1 - ratio**2) ** 2 + (ratio / 4.0) ** 2)
            tone = (
                np.sin(2 * np.pi * frequency * np.outer(t, harmonics)) * response / harmonics
            ).sum(axis=1)
            envelope = np.minimum(1, t / 0.002) * np.exp(-t / (sixteenth * 0.8))
            _place(track, tone * envelope, start, 1.0 + 0.5 * accents[index % 16])
        kick = _kick_808(0.3)
        for start in np.arange(0, total_s, beat):
            _place(track, kick, start, 1.5)
    elif kind == "rock kit":
        beat = 60 / 100
        kick, snare = _rock_kick(rng), _snare(rng)
        for bar_index, bar in enumerate(np.arange(0, total_s, 4 * beat)):
            for position in (0, 1.5, 2):
                _place(track, kick, bar + position * beat, 1.0)
            for position in (1, 3):
                _place(track, snare, bar + position * beat, 0.9)
            for step in range(8):
                decay = 0.25 if step == 7 else 0.03
                _place(track, _hat(rng, decay), bar + step * beat / 2, 0.25)
            if bar_index % 2 == 1:  # a fill into the next bar
                for step, frequency in enumerate((200, 160, 120, 90)):
                    _place(track, _tom(frequency), bar + (3 + step / 4) * beat, 0.7)
            else:
                _place(track, _crash(rng), bar, 0.35)
    elif kind == "synthetic tune":  # plucked notes with harmonics, a held chord, hi-hat bursts
        time_s = _time(total_s)
        for start in np.arange(0, total_s, 0.25):
            begin = int(start * SR)
            f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
            local = time_s[begin:] - start
            for harmonic in range(1, 9):
                if f0 * harmonic < 9000:
                    track[begin:] += (
                        np.exp(-4 * local) * np.sin(2 * np.pi * f0 * harmonic * local) / harmonic
                    )
        for frequency in (261.63, 329.63, 392.0):
            track += 0.3 * np.sin(2 * np.pi * frequency * time_s)
        for start in np.arange(0.125, total_s, 0.25):
            _place(track, 0.5 * rng.standard_normal(1323) * np.exp(-np.arange(1323) / 300), start)
    elif kind == "synthetic noise+bass":  # noise bursts over a gated bass line
        time_s = _time(total_s)
        for start in np.arange(0.05, total_s, 0.2):
            length = int(0.08 * SR)
            burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.02 * SR))
            _place(track, burst, start)
        track += 0.3 * np.sin(2 * np.pi * 55 * time_s) * (np.sin(2 * np.pi * 2 * time_s) > 0)
    else:
        raise ValueError(f"unknown material {kind!r}; known: {', '.join(SYNTHETIC_KINDS)}")
    return track


def synthetic(kind: str, num_samples: int, *, offset_s: float = 0.37) -> np.ndarray:
    """``num_samples`` float32 mono samples (peak 0.5) of the named material, cut ``offset_s``
    seconds into its pattern."""
    rng = np.random.default_rng(sum(map(ord, kind)))
    total_s = offset_s + num_samples / SR + 0.1
    track = _render(kind, total_s, rng)
    begin = round(offset_s * SR)
    clip = track[begin : begin + num_samples]
    return (0.5 * clip / np.abs(clip).max()).astype(np.float32)
