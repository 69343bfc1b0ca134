"""Round trip audio → image → audio on the real clips in ../shared/corpus/.

Prints, per clip: the time of ``audio_to_image`` and of ``image_to_audio`` (default settings, a
warm converter), the real-time factor of decoding, the spectral convergence between the image's
mel magnitudes and those of the decoded audio, and the mean absolute pixel difference when the
decoded audio is encoded again. Mono clips are encoded mono, stereo clips stereo.

Also the numbers of issue 9 for the round trip: the image's columns (Riffusion's convention:
``samples // hop + 1``), the decoded length (``(columns − 1) · hop``) and whether encoding the
decode gives the same number of columns again; the first and last 10-ms peak of the decode over
its median 10-ms peak (source in brackets); and the decode's loudness minus the source's at equal
peak (LU). ``bench/decode.py`` compares the decoders with each other.

Usage: python bench/roundtrip.py [--corpus PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from riffusion import Audio, SpectrogramParams, audio_to_image, image_to_audio
from riffusion.image import image_to_mel
from riffusion.spectrogram import get_converter, spectral_convergence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import edge_ratios, loudness_lufs  # bench/decode.py's definitions
from machine import machine_line

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def best_time(function, repeats: int):
    """(result of the last call, fastest wall time in seconds) over ``repeats`` calls."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    print(machine_line(), flush=True)
    clips = sorted(arguments.corpus.glob("*.wav"))
    if not clips:
        raise SystemExit(f"no .wav clips in {arguments.corpus}")

    # Warm the converters (filterbanks, inverse operators) so the table shows steady-state cost.
    for stereo in (False, True):
        params = SpectrogramParams(stereo=stereo)
        warm = Audio(np.zeros((params.num_channels, 44100), np.float32) + 0.01, 44100)
        image_to_audio(audio_to_image(warm, params))

    header = (
        f"{'clip':<58} {'ch':>2} {'encode s':>9} {'decode s':>9} {'RTF':>6} "
        f"{'spec.conv':>9} {'re-encode Δpx':>13} | {'cols':>5} {'samples':>8} {'stable':>6} "
        f"{'edges (source)':>24} {'LU-src':>6}"
    )
    print(header)
    print("-" * len(header))
    convergences = []
    for path in clips:
        audio = Audio.load(path)
        params = SpectrogramParams(stereo=audio.num_channels == 2)
        image, encode_s = best_time(
            lambda audio=audio, params=params: audio_to_image(audio, params), arguments.repeats
        )
        decoded, decode_s = best_time(lambda image=image: image_to_audio(image), arguments.repeats)
        target = image_to_mel(image, params)
        rebuilt = get_converter(params).waveform_to_mel(decoded.to_tensor())
        convergence = spectral_convergence(target, rebuilt)
        convergences.append(convergence)
        again = np.asarray(audio_to_image(decoded, params)).astype(int)
        pixel_error = np.abs(again - np.asarray(image).astype(int)).mean()
        sr = audio.sample_rate
        stable = again.shape[1] == image.width
        first, last = edge_ratios(decoded.waveform, sr)
        source_first, source_last = edge_ratios(audio.waveform, sr)
        loudness = loudness_lufs(decoded.waveform, sr) - loudness_lufs(audio.waveform, sr)
        print(
            f"{path.name:<58} {audio.num_channels:>2} {encode_s:>9.3f} {decode_s:>9.3f} "
            f"{audio.duration_s / decode_s:>6.1f} {convergence:>9.4f} {pixel_error:>13.2f} | "
            f"{image.width:>5} {decoded.num_samples:>8} {'yes' if stable else 'NO':>6} "
            f"{first:5.2f}/{last:<5.2f} ({source_first:5.2f}/{source_last:<5.2f}) "
            f"{loudness:+6.2f}"
        )
    print(f"median spectral convergence: {statistics.median(convergences):.4f}")


if __name__ == "__main__":
    main()
