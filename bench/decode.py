"""Benchmark: spectrogram image → audio (and audio → image), fast default vs reference.

Builds Riffusion images (512 columns = 5.12 s) from the real clips in ``../shared/corpus`` and
from synthetic material, then in one process, alternately:

- decode: ``image_to_audio(image)`` (default, ``method="fast"``) vs ``method="reference"``
  (torchaudio InverseMelScale + GriffinLim, Riffusion's algorithm). Reports per image the time
  ratio and both spectral convergences (image mel vs mel of the decoded audio, each normalised
  by its maximum, Riffusion parameters), and the median ratio over the mono images, and the
  stereo/mono cost of the fast path.
- encode: ``SpectrogramConverter.waveform_to_mel`` fast vs ``method="reference"`` (torchaudio
  Spectrogram + MelScale), both through the same image encoding: time ratio and the largest
  pixel difference.

The reference decode runs once per image (it takes seconds); the fast one takes the median of
five runs right before it. Timings on a shared 2-core machine are noisy: rerun when a line
looks off (the SC columns are deterministic). Cold start (first decode in a process: building
the cached operators) is reported separately.

Run: ``.venv/bin/python bench/decode.py [--corpus DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from riffusion import Audio, SpectrogramParams, audio_to_image, image_to_audio  # noqa: E402
from riffusion.image import image_to_mel, mel_to_image  # noqa: E402
from riffusion.spectrogram import (  # noqa: E402
    INT16_SCALE,
    SpectrogramConverter,
    spectral_convergence,
)

SR = 44100
SAMPLES = 512 * 441


def _synthetic(kind: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    time_s = np.arange(SAMPLES) / SR
    signal = np.zeros(SAMPLES)
    if kind == "synthetic tune":  # plucked notes with harmonics, a held chord, hi-hat bursts
        for start in np.arange(0, 5.12, 0.25):
            begin = int(start * SR)
            f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
            local = time_s[begin:] - start
            for harmonic in range(1, 9):
                if f0 * harmonic < 9000:
                    signal[begin:] += (
                        np.exp(-4 * local) * np.sin(2 * np.pi * f0 * harmonic * local) / harmonic
                    )
        for frequency in (261.63, 329.63, 392.0):
            signal += 0.3 * np.sin(2 * np.pi * frequency * time_s)
        for start in np.arange(0.125, 5.0, 0.25):
            begin = int(start * SR)
            length = int(0.03 * SR)
            signal[begin : begin + length] += (
                0.5 * rng.standard_normal(length) * np.exp(-np.arange(length) / 300)
            )
    elif kind == "synthetic noise+bass":  # noise bursts over a gated bass line
        for start in np.arange(0.05, 5.0, 0.2):
            begin = int(start * SR)
            length = int(0.08 * SR)
            signal[begin : begin + length] += rng.standard_normal(length) * np.exp(
                -np.arange(length) / (0.02 * SR)
            )
        signal += 0.3 * np.sin(2 * np.pi * 55 * time_s) * (np.sin(2 * np.pi * 2 * time_s) > 0)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def _images(corpus: Path) -> list[tuple[str, object, SpectrogramParams]]:
    images = []
    for path in sorted(corpus.glob("*.wav")):
        audio = Audio.load(path)
        stereo = audio.num_channels == 2
        params = SpectrogramParams(stereo=stereo)
        label = path.stem[:28] + (" [stereo]" if stereo else "")
        images.append((label, audio_to_image(audio.fit_length(SAMPLES), params), params))
        if stereo:  # the same music as a mono image, for the stereo/mono cost
            mono_params = SpectrogramParams()
            images.append(
                (
                    path.stem[:28] + " [mono mix]",
                    audio_to_image(audio.to_mono(), mono_params),
                    mono_params,
                )
            )
    for kind in ("synthetic tune", "synthetic noise+bass"):
        params = SpectrogramParams()
        images.append((kind, audio_to_image(Audio(_synthetic(kind), SR), params), params))
    return images


def _convergence(image, audio: Audio, params: SpectrogramParams) -> float:
    target = image_to_mel(image, params)
    converter = SpectrogramConverter(params)
    waveform = torch.from_numpy(audio.waveform.copy()) * INT16_SCALE
    return spectral_convergence(target, converter.waveform_to_mel(waveform))


def _timed(repeats: int, function, *args, **kwargs):
    """Median wall time of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    images = _images(args.corpus)
    # Cold start: the first fast decode in this process builds the cached operators.
    cold, _ = _timed(1, image_to_audio, images[0][1], images[0][2])
    warm, _ = _timed(3, image_to_audio, images[0][1], images[0][2])
    print(f"cold start (first fast decode, operators built): {cold:.3f} s; warm {warm:.3f} s\n")

    print("DECODE image → audio (512 columns = 5.12 s)")
    header = f"{'image':<40} {'ref s':>7} {'fast s':>7} {'ratio':>6} {'SC ref':>7} {'SC fast':>8}"
    print(header)
    print("-" * len(header))
    mono_ratios, fast_times = [], {}
    for label, image, params in images:
        fast_time, fast_audio = _timed(5, image_to_audio, image, params)
        reference_time, reference_audio = _timed(
            1, image_to_audio, image, params, method="reference"
        )
        ratio = reference_time / fast_time
        if not params.stereo:
            mono_ratios.append(ratio)
        fast_times[label] = fast_time
        sc_reference = _convergence(image, reference_audio, params)
        sc_fast = _convergence(image, fast_audio, params)
        flag = "" if sc_fast <= sc_reference else "  <- fast less faithful"
        print(
            f"{label:<40} {reference_time:7.2f} {fast_time:7.3f} {ratio:6.1f} "
            f"{sc_reference:7.4f} {sc_fast:8.4f}{flag}",
            flush=True,
        )

    print("\nENCODE audio → image (waveform_to_mel + 8-bit encoding)")
    header = (
        f"{'clip':<40} {'ref ms':>7} {'fast ms':>8} {'ratio':>6} "
        f"{'max px diff':>12} {'px differ':>10}"
    )
    print(header)
    print("-" * len(header))
    forward_ratios, max_difference = [], 0
    for path in sorted(args.corpus.glob("*.wav")):
        audio = Audio.load(path).fit_length(SAMPLES)
        params = SpectrogramParams(stereo=audio.num_channels == 2)
        converter = SpectrogramConverter(params)
        waveform = torch.from_numpy(audio.waveform.copy()) * INT16_SCALE
        converter.waveform_to_mel(waveform)
        converter.waveform_to_mel(waveform, method="reference")
        fast_times_ms, reference_times_ms = [], []
        for _ in range(10):  # alternate
            t, fast_mel = _timed(1, converter.waveform_to_mel, waveform)
            fast_times_ms.append(t * 1000)
            t, reference_mel = _timed(1, converter.waveform_to_mel, waveform, method="reference")
            reference_times_ms.append(t * 1000)
        fast_ms, reference_ms = (
            statistics.median(fast_times_ms),
            statistics.median(reference_times_ms),
        )
        pixels_fast = np.asarray(mel_to_image(fast_mel, params)).astype(int)
        pixels_reference = np.asarray(mel_to_image(reference_mel, params)).astype(int)
        difference = np.abs(pixels_fast - pixels_reference).max(axis=-1)
        max_difference = max(max_difference, int(difference.max()))
        forward_ratios.append(reference_ms / fast_ms)
        print(
            f"{path.stem[:40]:<40} {reference_ms:7.1f} {fast_ms:8.1f} "
            f"{reference_ms / fast_ms:6.1f} "
            f"{int(difference.max()):12d} {int((difference > 0).sum()):10d}",
            flush=True,
        )

    stereo_costs = [
        fast_times[label] / fast_times[label.replace("[stereo]", "[mono mix]")]
        for label in fast_times
        if label.endswith("[stereo]")
    ]
    print("\nSUMMARY")
    mono_median = statistics.median(mono_ratios)
    print(f"decode median time ratio reference/fast, mono images: {mono_median:.1f}x")
    print(
        f"decode stereo/mono cost of the fast path: {', '.join(f'{c:.2f}x' for c in stereo_costs)}"
    )
    print(f"decode cold start (operators built once per process): {cold:.3f} s")
    print(f"encode median time ratio reference/fast: {statistics.median(forward_ratios):.1f}x")
    print(f"encode largest pixel difference fast vs reference: {max_difference} level(s)")


if __name__ == "__main__":
    main()
