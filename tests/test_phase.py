"""riffusion.phase: the public Griffin-Lim; riffusion.decoders: the decoder registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from riffusion import Audio, ParameterError, SpectrogramParams, audio_to_image, image_to_audio
from riffusion.decoders import (
    Decoder,
    decode_mel,
    decoder_names,
    get_decoder,
    register_decoder,
    unregister_decoder,
)
from riffusion.phase import griffin_lim
from riffusion.spectrogram import SpectrogramConverter, spectral_convergence

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

N_FFT, HOP = 512, 128


def _chirp() -> torch.Tensor:
    t = torch.arange(16000) / 16000
    return torch.sin(2 * torch.pi * (300 + 800 * t) * t) * torch.hann_window(16000) ** 0.1


def _magnitudes(waveform: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(N_FFT)
    return torch.stft(waveform, N_FFT, HOP, window=window, return_complex=True).abs()


def test_griffin_lim_matches_or_beats_torchaudio_at_equal_iterations():
    target = _magnitudes(_chirp())
    ours = griffin_lim(target, n_fft=N_FFT, hop_length=HOP, num_iterations=16)
    theirs = torchaudio.functional.griffinlim(
        target, torch.hann_window(N_FFT), N_FFT, HOP, N_FFT, 1.0, 16, 0.99, None, True
    )
    assert ours.shape == theirs.shape == ((target.shape[-1] - 1) * HOP,)
    ours_sc = spectral_convergence(target, _magnitudes(ours))
    theirs_sc = spectral_convergence(target, _magnitudes(theirs))
    # Phase-gradient start: better than torchaudio's random start at the same iterations.
    assert ours_sc < theirs_sc
    assert ours_sc < 0.25


def test_griffin_lim_iterations_improve_and_are_deterministic():
    target = _magnitudes(_chirp())
    few = griffin_lim(target, n_fft=N_FFT, hop_length=HOP, num_iterations=1)
    many = griffin_lim(target, n_fft=N_FFT, hop_length=HOP, num_iterations=24)
    assert spectral_convergence(target, _magnitudes(many)) < spectral_convergence(
        target, _magnitudes(few)
    )
    again = griffin_lim(target, n_fft=N_FFT, hop_length=HOP, num_iterations=24)
    assert torch.equal(many, again)
    batch = griffin_lim(
        torch.stack([target, target]), n_fft=N_FFT, hop_length=HOP, num_iterations=2
    )
    assert batch.shape == (2, (target.shape[-1] - 1) * HOP)
    looped = griffin_lim(target, n_fft=N_FFT, hop_length=HOP, num_iterations=2, periodic=True)
    assert looped.shape == (target.shape[-1] * HOP,)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_fft": 500}, "frequency bins"),
        ({"momentum": 1.0}, "momentum"),
        ({"num_iterations": -1}, "num_iterations"),
        ({"init": "zeros"}, "init"),
        ({"win_length": 1024}, "win_length"),
    ],
)
def test_griffin_lim_rejects_bad_arguments(kwargs, fragment):
    arguments = {"n_fft": N_FFT, "hop_length": HOP, **kwargs}
    with pytest.raises(ParameterError, match=fragment):
        griffin_lim(_magnitudes(_chirp()), **arguments)


class _Silence:
    """A user decoder: zeros of the right length (so the test can tell it ran)."""

    supports_periodic = False

    def __init__(self) -> None:
        self.calls = []

    def decode(self, mel, params, *, seed=0, periodic=False, num_iterations=None, device="cpu"):
        self.calls.append((tuple(mel.shape), seed, num_iterations))
        samples = params.samples_for_width(mel.shape[-1], periodic=periodic)
        return torch.zeros(*mel.shape[:-2], samples)


def test_builtin_decoder_objects_decode_like_the_converter():
    params = SpectrogramParams(num_frequencies=64)
    mel = torch.rand(1, 64, 40) * 1e5
    direct = SpectrogramConverter(params).mel_to_waveform(mel, num_iterations=4, seed=3)
    through_registry = get_decoder("fast").decode(mel, params, seed=3, num_iterations=4)
    assert through_registry.shape == (1, params.samples_for_width(40))
    assert torch.equal(through_registry, direct)


def test_builtins_are_registered_objects():
    assert decoder_names()[:2] == ("fast", "reference")
    assert isinstance(get_decoder("fast"), Decoder) and get_decoder("fast").supports_periodic
    assert not get_decoder("reference").supports_periodic
    with pytest.raises(ParameterError, match="cannot be removed"):
        unregister_decoder("fast")
    with pytest.raises(ParameterError, match="already registered"):
        register_decoder("fast", _Silence())


def test_a_user_decoder_plugs_in_everywhere_by_name():
    decoder = _Silence()
    register_decoder("silence", decoder)
    try:
        tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
        image = audio_to_image(Audio(tone[None], 44100))
        audio = image_to_audio(image, method="silence", seed=5, num_iterations=3)
        assert decoder.calls == [((1, 512, image.width), 5, 3)]
        assert audio.num_samples == SpectrogramParams().samples_for_width(image.width)
        assert not np.any(audio.waveform)
        with pytest.raises(ParameterError, match="circular mode"):
            decode_mel(torch.ones(512, 8), method="silence", periodic=True)
    finally:
        unregister_decoder("silence")
    with pytest.raises(ParameterError, match="registered decoder: 'fast', 'reference'"):
        image_to_audio(image, method="silence")


def test_a_decoder_with_the_wrong_output_is_refused():
    class Wrong(_Silence):
        def decode(self, mel, params, **options):
            return torch.zeros(3)

    register_decoder("wrong", Wrong())
    try:
        with pytest.raises(ParameterError, match="decoder 'wrong' returned"):
            decode_mel(torch.ones(512, 8), method="wrong")
    finally:
        unregister_decoder("wrong")
    with pytest.raises(ParameterError, match="decode"):
        register_decoder("broken", object())
