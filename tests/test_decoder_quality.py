"""Issue 9, items 2 and 3: the fast decoder starts and ends without a click, keeps the
reference decoder's loudness at equal peak, is at least as faithful as the reference on
percussive and bass-heavy material, and decodes with one intra-op thread in the calling thread
only. Short synthetic signals (no corpus); the corpus checks are ``slow``.

Both decoders depend on a seed (the reference draws its initial phase from it, as Riffusion's
does on every call), and so do the loudness at equal peak and the spectral convergence: on a
1 s clip the reference's loudness spans 2 LU over four seeds, because the peak is one sample.
So loudness and convergence are compared as means over :data:`SEEDS`; edges are checked on
every seed."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import torch
from scipy import signal as sps

from riffusion import Audio, SpectrogramParams, audio_to_image, image_to_audio
from riffusion.image import image_to_mel
from riffusion.spectrogram import INT16_SCALE, SpectrogramConverter, spectral_convergence

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

SR = 44100
PARAMS = SpectrogramParams()
WIDTH = 100  # columns: about one second
SEEDS = range(4)


def edge_ratios(waveform: np.ndarray) -> tuple[float, float]:
    """Peak of the first and of the last 10 ms over the median 10-ms peak."""
    magnitude = np.abs(np.atleast_2d(waveform)).max(axis=0)
    count = len(magnitude) // 441
    peaks = magnitude[: count * 441].reshape(count, 441).max(axis=1)
    median = float(np.median(peaks))
    return float(peaks[0]) / median, float(magnitude[-441:].max()) / median


def loudness(waveform: np.ndarray) -> float:
    """BS.1770 integrated loudness (LUFS) at peak 1."""
    waveform = np.atleast_2d(waveform).astype(np.float64)
    return pyloudnorm.Meter(SR).integrated_loudness((waveform / np.abs(waveform).max()).T)


def _highpass(noise: np.ndarray, cutoff: float) -> np.ndarray:
    return sps.sosfilt(sps.butter(2, cutoff, btype="highpass", fs=SR, output="sos"), noise)


def percussive(num_samples: int, offset_s: float = 0.3) -> np.ndarray:
    """808-style kicks and claps with closed hats, cut ``offset_s`` into the pattern (at 0.3 s a
    crash is still ringing at the first sample; at 0 the clip starts on a kick)."""
    rng = np.random.default_rng(1)
    total = num_samples + SR
    track = np.zeros(total)
    t = np.arange(int(0.5 * SR)) / SR
    kick = np.sin(2 * np.pi * np.cumsum(45 + 105 * np.exp(-t / 0.04)) / SR) * np.exp(-t / 0.2)
    clap = _highpass(rng.standard_normal(len(t)), 900) * np.exp(-t / 0.05)
    for start in np.arange(0, total / SR, 0.25):
        begin = int(start * SR)
        sound = kick if round(start / 0.25) % 2 == 0 else 0.6 * clap
        end = min(total, begin + len(sound))
        track[begin:end] += sound[: end - begin]
        hat = _highpass(rng.standard_normal(2000), 7000) * np.exp(-np.arange(2000) / 300)
        middle = begin + int(0.125 * SR)
        track[middle : middle + 2000] += 0.2 * hat[: max(0, min(2000, total - middle))]
    track += 0.3 * _highpass(rng.standard_normal(total), 3000) * np.exp(-np.arange(total) / SR)
    clip = track[int(offset_s * SR) : int(offset_s * SR) + num_samples]
    return (0.5 * clip / np.abs(clip).max()).astype(np.float32)


def bass_heavy(num_samples: int) -> np.ndarray:
    """A sustained bass line (55/82 Hz, 30 harmonics with fixed random phases, a slow filter
    wobble) under a held three-note pad: no onset at the first sample."""
    rng = np.random.default_rng(2)
    t = np.arange(num_samples) / SR
    track = np.zeros(num_samples)
    wobble = 0.5 + 0.5 * np.sin(2 * np.pi * 2 * t)
    for index, f0 in enumerate((55.0, 82.41)):
        part = (t >= index * t[-1] / 2) if index else (t < t[-1] / 2)
        for harmonic in range(1, 31):
            weight = np.exp(-harmonic / (2 + 8 * wobble)) / harmonic
            phase = rng.uniform(0, 2 * np.pi)
            track += part * weight * np.sin(2 * np.pi * f0 * harmonic * t + phase)
    for frequency in (220.0, 277.18, 329.63):
        for harmonic in range(1, 6):
            track += (
                0.05
                / harmonic
                * np.sin(2 * np.pi * frequency * harmonic * t + rng.uniform(0, 2 * np.pi))
            )
    return (0.5 * track / np.abs(track).max()).astype(np.float32)


def _bench_material(kind: str):
    """``bench/material.py``'s deterministic synthetic ``kind`` (the decode bench's material)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "material.py"
    spec = importlib.util.spec_from_file_location("riffusion_bench_material", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return lambda num_samples: module.synthetic(kind, num_samples)


# Edges are checked on material that starts and ends mid-sound (the source's own edges < 2x).
MATERIAL = {"percussive": percussive, "bass-heavy": bass_heavy}
# Loudness and faithfulness also on two of the bench's clips, cut to the same ~1 s.
MORE_MATERIAL = {
    **MATERIAL,
    "acid bass": _bench_material("acid bass"),
    "808 beat": _bench_material("808 beat"),
}


def kick_start(num_samples: int) -> np.ndarray:
    """The percussive material cut at 0 s: the clip starts on a kick (its own first 10 ms
    peak at 2.1x the median)."""
    return percussive(num_samples, offset_s=0.0)


@pytest.fixture(scope="module")
def decoded() -> dict[str, dict[str, object]]:
    """Per material: the image, its source audio, and per seed the fast, loop and reference
    decodes (lists indexed like :data:`SEEDS`)."""
    results: dict[str, dict[str, object]] = {}
    for name, make in {**MORE_MATERIAL, "starts on a kick": kick_start}.items():
        source = Audio(make(PARAMS.samples_for_width(WIDTH)), SR)
        image = audio_to_image(source, PARAMS)
        results[name] = {
            "image": image,
            "source": source,
            "fast": [image_to_audio(image, PARAMS, seed=seed) for seed in SEEDS],
            "loop": [image_to_audio(image, PARAMS, periodic=True, seed=seed) for seed in SEEDS],
            "reference": [
                image_to_audio(image, PARAMS, method="reference", seed=seed) for seed in SEEDS
            ],
        }
    return results


def _mean_loudness(decodes: list[Audio]) -> float:
    return float(np.mean([loudness(audio.waveform) for audio in decodes]))


def _convergences(image, decodes: list[Audio]) -> list[float]:
    return [_convergence(image, audio) for audio in decodes]


def _convergence(image, audio: Audio) -> float:
    target = image_to_mel(image, PARAMS)
    waveform = torch.from_numpy(audio.waveform.copy()) * INT16_SCALE
    mel = SpectrogramConverter(PARAMS).waveform_to_mel(waveform)
    width = min(mel.shape[-1], target.shape[-1])
    return spectral_convergence(target[..., :width], mel[..., :width])


@pytest.mark.parametrize("name", list(MATERIAL))
def test_no_click_at_either_edge(decoded, name: str) -> None:
    source_first, source_last = edge_ratios(decoded[name]["source"].waveform)
    assert source_first < 2.0 and source_last < 2.0  # the material itself starts mid-sound
    for seed, audio in zip(SEEDS, decoded[name]["fast"], strict=True):
        first, last = edge_ratios(audio.waveform)
        assert first <= 2.5, f"seed {seed}: first 10 ms peak {first:.2f}x the median 10-ms peak"
        assert last <= 2.5, f"seed {seed}: last 10 ms peak {last:.2f}x the median 10-ms peak"


@pytest.mark.parametrize("name", list(MATERIAL))
def test_no_click_at_the_edges_of_a_loop(decoded, name: str) -> None:
    for seed, audio in zip(SEEDS, decoded[name]["loop"], strict=True):
        first, last = edge_ratios(audio.waveform)
        assert first <= 2.5 and last <= 2.5, (seed, first, last)


@pytest.mark.parametrize("name", [*MORE_MATERIAL, "starts on a kick"])
def test_loudness_matches_the_reference_at_equal_peak(decoded, name: str) -> None:
    difference = _mean_loudness(decoded[name]["fast"]) - _mean_loudness(decoded[name]["reference"])
    assert abs(difference) <= 1.5, f"fast − reference = {difference:+.2f} LU (seed means)"


@pytest.mark.parametrize("name", [*MORE_MATERIAL, "starts on a kick"])
def test_at_least_as_faithful_as_the_reference(decoded, name: str) -> None:
    """The fast decode's mean convergence is below the reference's, and so is its worst seed's."""
    image = decoded[name]["image"]
    fast = _convergences(image, decoded[name]["fast"])
    reference = float(np.mean(_convergences(image, decoded[name]["reference"])))
    assert max(fast) <= reference, f"SC fast {np.round(fast, 4)} > reference mean {reference:.4f}"


def test_seed_draws_spread_the_loudness_of_both_decoders(decoded) -> None:
    """Why the loudness comparisons above use seed means: one draw is not a measurement."""
    spread = np.ptp([loudness(audio.waveform) for audio in decoded["percussive"]["reference"]])
    assert spread > 1.5, f"the reference's loudness spans only {spread:.2f} LU over the seeds"


def test_clip_starting_on_a_kick_starts_no_harder_than_the_reference(decoded) -> None:
    """The source starts at 2.1x; both decoders peak a little higher there (reflect padding
    leaves the first frame the least constrained); the fast decode on average no higher than
    the reference and within the 2.5x goal."""
    material = decoded["starts on a kick"]
    fast = [edge_ratios(audio.waveform)[0] for audio in material["fast"]]
    reference = [edge_ratios(audio.waveform)[0] for audio in material["reference"]]
    assert edge_ratios(material["source"].waveform)[0] == pytest.approx(2.11, abs=0.01)
    assert np.mean(fast) <= min(2.5, np.mean(reference)), (fast, reference)


def test_output_length_is_the_frame_convention() -> None:
    converter = SpectrogramConverter(PARAMS)
    mel = torch.rand(PARAMS.num_frequencies, 37)
    for periodic in (False, True):
        waveform = converter.mel_to_waveform(mel, num_iterations=2, periodic=periodic)
        assert waveform.shape == (PARAMS.samples_for_width(37, periodic=periodic),)


def test_fast_decode_runs_single_threaded_in_the_calling_thread_only() -> None:
    """The calling thread decodes with one intra-op thread and gets its count back; a thread
    that already uses torch keeps its own count throughout."""
    converter = SpectrogramConverter(PARAMS)
    mel = torch.rand(PARAMS.num_frequencies, 20)
    seen: list[int] = []
    original = converter._fast_mel_to_waveform

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    converter._fast_mel_to_waveform = spy  # type: ignore[method-assign]
    previous = torch.get_num_threads()
    ready, decoded_event, other = threading.Event(), threading.Event(), []

    def bystander() -> None:
        torch.ones(1).add_(1)  # uses torch before the decode starts
        other.append(torch.get_num_threads())
        ready.set()
        decoded_event.wait(timeout=60)
        other.append(torch.get_num_threads())

    worker = threading.Thread(target=bystander)
    worker.start()
    ready.wait(timeout=60)
    converter.mel_to_waveform(mel, num_iterations=2)
    decoded_event.set()
    worker.join()
    assert seen == [1]
    assert torch.get_num_threads() == previous
    assert other[0] == other[1] == previous


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.wav")), ids=lambda path: path.stem[:12])
def test_corpus_clip_edges_loudness_and_faithfulness(path: Path) -> None:
    """As above on the 512-column corpus clips. One of them starts on a drum hit (its own first
    10 ms at 19.6x the median), so an edge may reach the source's own ratio plus 10 %."""
    audio = Audio.load(path).to_mono().fit_length(PARAMS.samples_for_width(512))
    image = audio_to_image(audio, PARAMS)
    fast = [image_to_audio(image, PARAMS, seed=seed) for seed in SEEDS]
    loop = [image_to_audio(image, PARAMS, periodic=True, seed=seed) for seed in SEEDS]
    reference = [image_to_audio(image, PARAMS, method="reference", seed=seed) for seed in SEEDS]
    bound = max(2.5, 1.1 * max(edge_ratios(audio.waveform)))
    for decode in (*fast, *loop):
        assert max(edge_ratios(decode.waveform)) <= bound
    assert abs(_mean_loudness(fast) - _mean_loudness(reference)) <= 1.5
    assert max(_convergences(image, fast)) <= np.mean(_convergences(image, reference))


# First-10-ms peak ratio of the reference decoder (torchaudio GriffinLim), mean over SEEDS, on
# the drum seed images, which start on a kick like their source audio (seeds 0-3: 17.73, 14.44,
# 20.64, 17.24 / 13.97, 10.91, 14.20, 12.89 / 11.53, 8.76, 13.44, 10.66); rechecked by the slow
# test below. The fast decoder before issue 9 gave 42.3, 27.8 and 16.8 (seed 0); now 14.5,
# 10.8 and 8.2 (means; the sources: 15.1, 8.4 and 4.4).
REFERENCE_FIRST_EDGE = {"og_beat": 17.51, "breakbeat": 12.99, "four_on_the_floor": 11.10}


@pytest.mark.parametrize("name", list(REFERENCE_FIRST_EDGE))
def test_seed_images_that_start_on_a_kick_start_no_harder_than_the_reference(name: str) -> None:
    from riffusion.seeds import load_seed_image

    image = load_seed_image(name)
    first = [edge_ratios(image_to_audio(image, seed=seed).waveform)[0] for seed in SEEDS]
    assert np.mean(first) <= REFERENCE_FIRST_EDGE[name], f"first 10 ms {first}x the median"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFERENCE_FIRST_EDGE))
def test_reference_first_edge_constants(name: str) -> None:
    from riffusion.seeds import load_seed_image

    image = load_seed_image(name)
    first = [
        edge_ratios(image_to_audio(image, method="reference", seed=seed).waveform)[0]
        for seed in SEEDS
    ]
    # The constants are rounded to 0.01 (±0.005); other FFT and BLAS kernels move the means by
    # up to 0.001 (measured with ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE), so 0.01
    # holds anywhere, while a change to the decoder or the images moves them by tenths.
    assert np.mean(first) == pytest.approx(REFERENCE_FIRST_EDGE[name], abs=0.01)
