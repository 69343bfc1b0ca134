"""STFT and mel conversion: waveform ↔ mel magnitudes, with phase recovery.

Pure functions take every parameter explicitly; :class:`SpectrogramConverter` holds what is
worth computing once per :class:`~riffusion.params.SpectrogramParams` and device (windows, the mel
filterbank, the inverse mel operator).

Shapes follow torchaudio: any leading dimensions are allowed, time is last.

- waveform: ``(..., samples)`` float32, at ``params.sample_rate`` Hz. Riffusion computed its
  spectrograms from 16-bit integer sample values, so the converter works at that scale: multiply a
  waveform in [-1, 1] by :data:`INT16_SCALE` first to get Riffusion's magnitudes (the high-level
  functions in :mod:`riffusion.convert` do this).
- mel: ``(..., n_mels, frames)`` non-negative float32 linear magnitudes (not power, not dB).
"""

from __future__ import annotations

from typing import Literal

import torch
import torchaudio

from riffusion.errors import ParameterError
from riffusion.params import SpectrogramParams

__all__ = [
    "INT16_SCALE",
    "InverseMethod",
    "SpectrogramConverter",
    "mel_filterbank",
    "num_frames",
    "spectral_convergence",
]

INT16_SCALE = 32768.0
"""Factor between float samples in [-1, 1] and the 16-bit integer scale Riffusion worked at."""

InverseMethod = Literal["fast", "reference"]


def num_frames(num_samples: int, params: SpectrogramParams) -> int:
    """Spectrogram frames (image columns) for ``num_samples`` samples: ``num_samples // hop``.

    Centred STFT frames sit at ``0, hop, 2·hop, ...``; the frame centred exactly on the last
    sample boundary is dropped so that 5.12 s at 44.1 kHz gives exactly 512 columns, and an image
    of ``width`` columns decodes to ``width * hop_length`` samples.
    """
    return num_samples // params.hop_length


def mel_filterbank(
    params: SpectrogramParams,
    *,
    num_freqs: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular mel filterbank ``(num_freqs, n_mels)`` mapping STFT magnitudes to mel bins.

    Args:
        params: spectrogram parameters (mel range, bins, scale, norm, sample rate).
        num_freqs: linear frequency bins; defaults to ``params.n_fft // 2 + 1``.
        device: device of the returned tensor.
        dtype: dtype of the returned tensor.
    """
    num_freqs = params.n_fft // 2 + 1 if num_freqs is None else num_freqs
    filterbank = torchaudio.functional.melscale_fbanks(
        n_freqs=num_freqs,
        f_min=float(params.min_frequency_hz),
        f_max=float(params.max_frequency_hz),
        n_mels=params.num_frequencies,
        sample_rate=params.sample_rate,
        norm=params.mel_scale_norm,
        mel_scale=params.mel_scale_type,
    )
    return filterbank.to(device=device, dtype=dtype)


def spectral_convergence(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Spectral convergence ``‖reference − estimate‖_F / ‖reference‖_F`` (0 is perfect).

    Both inputs are magnitudes of the same shape; each is normalised by its own maximum first so
    that the overall gain (which Riffusion images do not preserve) does not count.
    """
    if reference.shape != estimate.shape:
        raise ParameterError(
            f"reference shape {tuple(reference.shape)} and estimate shape "
            f"{tuple(estimate.shape)} must match"
        )
    reference = reference.double() / reference.max().clamp_min(1e-30)
    estimate = estimate.double() / estimate.max().clamp_min(1e-30)
    denominator = torch.linalg.vector_norm(reference)
    if denominator == 0:
        raise ParameterError("spectral convergence is undefined for an all-zero reference")
    return float(torch.linalg.vector_norm(reference - estimate) / denominator)


def _check_waveform(waveform: torch.Tensor) -> None:
    if not isinstance(waveform, torch.Tensor):
        raise ParameterError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if waveform.ndim < 1 or waveform.shape[-1] == 0:
        raise ParameterError(f"waveform of shape {tuple(waveform.shape)} has no samples")
    if not waveform.is_floating_point():
        raise ParameterError(f"waveform dtype {waveform.dtype} must be floating point")
    if not torch.isfinite(waveform).all():
        raise ParameterError("waveform contains NaN or infinite samples")


def _check_mel(mel: torch.Tensor, params: SpectrogramParams) -> None:
    if not isinstance(mel, torch.Tensor):
        raise ParameterError(f"mel must be a torch.Tensor, got {type(mel).__name__}")
    if mel.ndim < 2 or mel.shape[-2] != params.num_frequencies:
        raise ParameterError(
            f"mel of shape {tuple(mel.shape)} must be (..., {params.num_frequencies}, frames)"
        )
    if mel.shape[-1] == 0:
        raise ParameterError(f"mel of shape {tuple(mel.shape)} has no frames")
    if not torch.isfinite(mel).all() or (mel < 0).any():
        raise ParameterError("mel magnitudes must be finite and non-negative")


class SpectrogramConverter:
    """Converts waveforms to mel magnitudes and back, caching windows and filterbanks.

    Args:
        params: spectrogram parameters; defaults to Riffusion's.
        device: where tensors live and the math runs (``"cpu"``, ``"cuda"``, ...).

    Example:
        >>> import torch
        >>> converter = SpectrogramConverter()
        >>> waveform = torch.zeros(1, 44100)
        >>> converter.waveform_to_mel(waveform).shape
        torch.Size([1, 512, 100])
    """

    def __init__(
        self, params: SpectrogramParams | None = None, *, device: torch.device | str = "cpu"
    ) -> None:
        self.params = params if params is not None else SpectrogramParams()
        self.device = torch.device(device)
        self._window = torch.hann_window(self.params.win_length, device=self.device)
        self._filterbank = mel_filterbank(self.params, device=self.device)
        self._inverse_filterbank: torch.Tensor | None = None

    # ---------------------------------------------------------------------------- forward
    def waveform_to_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel magnitudes of a waveform.

        Args:
            waveform: ``(..., samples)`` float tensor at ``params.sample_rate`` Hz, at least one
                hop long. Audio shorter than half an FFT frame is zero-padded at the end (the
                reflect padding of a centred STFT needs that many samples).

        Returns:
            ``(..., n_mels, samples // hop_length)`` float32 magnitudes on ``self.device``.
        """
        _check_waveform(waveform)
        params = self.params
        frames = num_frames(waveform.shape[-1], params)
        if frames < 1:
            raise ParameterError(
                f"waveform of {waveform.shape[-1]} samples is shorter than one hop "
                f"({params.hop_length} samples = {params.step_size_ms} ms)"
            )
        leading = waveform.shape[:-1]
        flat = waveform.reshape(-1, waveform.shape[-1]).to(self.device, torch.float32)
        minimum = params.n_fft // 2 + 1
        if flat.shape[-1] < minimum:
            flat = torch.nn.functional.pad(flat, (0, minimum - flat.shape[-1]))
        stft = torch.stft(
            flat,
            n_fft=params.n_fft,
            hop_length=params.hop_length,
            win_length=params.win_length,
            window=self._window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )[..., :frames]
        magnitudes = stft.abs()
        mel = torch.matmul(magnitudes.transpose(-1, -2), self._filterbank).transpose(-1, -2)
        return mel.reshape(*leading, params.num_frequencies, frames)

    # ---------------------------------------------------------------------------- inverse
    def mel_to_waveform(
        self,
        mel: torch.Tensor,
        *,
        method: InverseMethod = "fast",
        num_iterations: int | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """Waveform whose mel magnitudes approximate ``mel``, with phase recovered.

        Args:
            mel: ``(..., n_mels, frames)`` non-negative magnitudes.
            method: ``"fast"`` (default) or ``"reference"`` (Riffusion's algorithm: torchaudio
                ``InverseMelScale`` least squares, then ``GriffinLim`` with momentum 0.99).
            num_iterations: Griffin-Lim iterations; ``None`` picks the method's default (32).
            seed: seed of the random initial phase; equal seeds give equal output.

        Returns:
            ``(..., frames * hop_length)`` float32 waveform on ``self.device`` (same scale as the
            waveform the magnitudes came from).
        """
        _check_mel(mel, self.params)
        if method not in ("fast", "reference"):
            raise ParameterError(f"method={method!r} must be 'fast' or 'reference'")
        if num_iterations is not None and (
            not isinstance(num_iterations, int) or num_iterations < 1
        ):
            raise ParameterError(f"num_iterations={num_iterations!r} must be a positive integer")
        if method == "reference":
            return self._reference_mel_to_waveform(mel, num_iterations or 32, seed)
        return self._fast_mel_to_waveform(mel, num_iterations or 32, seed)

    def _reference_mel_to_waveform(
        self, mel: torch.Tensor, num_iterations: int, seed: int
    ) -> torch.Tensor:
        params = self.params
        inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=params.n_fft // 2 + 1,
            n_mels=params.num_frequencies,
            sample_rate=params.sample_rate,
            f_min=float(params.min_frequency_hz),
            f_max=float(params.max_frequency_hz),
            norm=params.mel_scale_norm,
            mel_scale=params.mel_scale_type,
        ).to(self.device)
        griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=params.n_fft,
            n_iter=num_iterations,
            win_length=params.win_length,
            hop_length=params.hop_length,
            window_fn=torch.hann_window,
            power=1.0,
            momentum=0.99,
            length=None,
            rand_init=True,
        ).to(self.device)
        mel = mel.to(self.device, torch.float32)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            linear = inverse_mel(mel)
            waveform = griffin_lim(linear)
        # Riffusion's output is one hop short of frames * hop; pad so lengths agree across methods.
        missing = mel.shape[-1] * params.hop_length - waveform.shape[-1]
        return torch.nn.functional.pad(waveform, (0, missing))

    def _fast_mel_to_waveform(
        self, mel: torch.Tensor, num_iterations: int, seed: int
    ) -> torch.Tensor:
        params = self.params
        if self._inverse_filterbank is None:
            # Minimum-norm inverse of the filterbank, computed once; equals the per-call
            # least-squares solve of the reference.
            self._inverse_filterbank = torch.linalg.pinv(self._filterbank.double()).float()
        mel = mel.to(self.device, torch.float32)
        linear = torch.relu(torch.matmul(self._inverse_filterbank.T, mel))
        generator = torch.Generator(device="cpu").manual_seed(seed)
        phase = torch.rand(linear.shape, generator=generator).to(self.device)
        angles = torch.polar(torch.ones_like(linear), 2 * torch.pi * phase)
        return _griffin_lim(
            linear,
            angles,
            params=params,
            window=self._window,
            num_iterations=num_iterations,
            momentum=0.99,
        )


def _griffin_lim(
    magnitudes: torch.Tensor,
    angles: torch.Tensor,
    *,
    params: SpectrogramParams,
    window: torch.Tensor,
    num_iterations: int,
    momentum: float,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013) from initial unit phasors ``angles``."""
    leading = magnitudes.shape[:-2]
    magnitudes = magnitudes.reshape(-1, *magnitudes.shape[-2:])
    angles = angles.reshape(-1, *angles.shape[-2:])
    length = magnitudes.shape[-1] * params.hop_length
    stft_args = {
        "n_fft": params.n_fft,
        "hop_length": params.hop_length,
        "win_length": params.win_length,
        "window": window,
    }
    previous = torch.zeros_like(angles)
    for _ in range(num_iterations):
        waveform = torch.istft(magnitudes * angles, length=length, **stft_args)
        rebuilt = torch.stft(
            waveform, center=True, pad_mode="reflect", return_complex=True, **stft_args
        )[..., : magnitudes.shape[-1]]
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / angles.abs().clamp_min(1e-16)
        previous = rebuilt
    waveform = torch.istft(magnitudes * angles, length=length, **stft_args)
    return waveform.reshape(*leading, length)
