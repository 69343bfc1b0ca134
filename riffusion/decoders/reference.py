"""The built-in ``"reference"`` decoder: Riffusion's torchaudio ``InverseMelScale`` +
``GriffinLim``.

An ordinary :class:`~riffusion.decoders.registry.Decoder`, registered under ``"reference"``
with :func:`~riffusion.decoders.registry.register_decoder` like any plug-in. Its math is
:meth:`riffusion.spectrogram.SpectrogramConverter.mel_to_waveform` with
``method="reference"`` (:func:`riffusion.phase.reference_mel_to_waveform` on the shared
converter's device).
"""

from __future__ import annotations

import torch

from riffusion.decoders.registry import register_decoder
from riffusion.params import SpectrogramParams
from riffusion.spectrogram import get_converter, inverse_bytes_per_frame

__all__ = ["ReferenceDecoder"]


class ReferenceDecoder:
    """Mel → waveform as Riffusion did it: least-squares inverse mel scale, then 32
    Griffin-Lim iterations (momentum 0.99) from a random phase.

    No circular mode: it is refused for loops (``periodic=True``).
    """

    supports_periodic = False

    def bytes_per_frame(self, params: SpectrogramParams) -> int:
        """Working memory in bytes per column and channel (see
        :func:`riffusion.decoders.decode_bytes`).

        Args:
            params: the spectrogram parameters.
        """
        return inverse_bytes_per_frame(params, "reference")

    def decode(
        self,
        mel: torch.Tensor,
        params: SpectrogramParams,
        *,
        seed: int = 0,
        periodic: bool = False,
        num_iterations: int | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Decode with the shared converter's reference inverse.

        Args:
            mel: ``(..., params.num_frequencies, frames)`` non-negative float magnitudes, more
                than ``params.n_fft // 2 // params.hop_length + 1`` frames (torch.stft's
                reflect padding).
            params: the spectrogram parameters.
            seed: seed of the random initial phase.
            periodic: must be ``False`` (there is no circular mode).
            num_iterations: Griffin-Lim iterations, >= 1 (``None``: 32, Riffusion's).
            device: where to run.

        Returns:
            ``(..., params.samples_for_width(frames))`` float32 waveform on ``device``, at the
            16-bit scale of ``mel``.
        """
        return get_converter(params, device=device).mel_to_waveform(
            mel, method="reference", num_iterations=num_iterations, seed=seed, periodic=periodic
        )

    def __repr__(self) -> str:
        return "<riffusion decoder 'reference'>"


register_decoder("reference", ReferenceDecoder())
