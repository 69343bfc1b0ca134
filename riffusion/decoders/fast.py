"""The built-in ``"fast"`` decoder: phase-gradient start, then fast Griffin-Lim on reduced grids.

An ordinary :class:`~riffusion.decoders.registry.Decoder`, registered under ``"fast"`` with
:func:`~riffusion.decoders.registry.register_decoder` like any plug-in. Its math is
:meth:`riffusion.spectrogram.SpectrogramConverter.mel_to_waveform` with ``method="fast"`` (the
converter caches its inverse operators; :func:`riffusion.spectrogram.get_converter` shares one
converter per parameters and device).
"""

from __future__ import annotations

import torch

from riffusion.decoders.registry import register_decoder
from riffusion.params import SpectrogramParams
from riffusion.spectrogram import get_converter, inverse_bytes_per_frame

__all__ = ["FastDecoder"]


class FastDecoder:
    """Mel → waveform: linear magnitudes from the filterbank's minimum-norm inverse, phase from
    its integrated gradient (PGHI), then fast Griffin-Lim (40 iterations by default, the last 8
    on a 2x finer grid and towards the mel magnitudes).

    Has a circular mode, so it decodes loops (``periodic=True``).
    """

    supports_periodic = True

    def bytes_per_frame(self, params: SpectrogramParams) -> int:
        """Working memory in bytes per column and channel (see
        :func:`riffusion.decoders.decode_bytes`).

        Args:
            params: the spectrogram parameters.
        """
        return inverse_bytes_per_frame(params, "fast")

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
        """Decode with the shared converter's fast inverse.

        Args:
            mel: ``(..., params.num_frequencies, frames)`` non-negative float magnitudes.
            params: the spectrogram parameters.
            seed: seed of the phase's integration constants.
            periodic: make one period of a loop (circular framing).
            num_iterations: Griffin-Lim iterations, >= 1 (``None``: 40).
            device: where to run.

        Returns:
            ``(..., params.samples_for_width(frames, periodic=periodic))`` float32 waveform on
            ``device``, at the 16-bit scale of ``mel``.
        """
        return get_converter(params, device=device).mel_to_waveform(
            mel, method="fast", num_iterations=num_iterations, seed=seed, periodic=periodic
        )

    def __repr__(self) -> str:
        return "<riffusion decoder 'fast'>"


register_decoder("fast", FastDecoder())
