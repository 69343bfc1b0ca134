"""The decoder protocol and the registry of decoders by name.

A decoder turns mel magnitudes into a waveform (:class:`Decoder`: one method and one flag).
Every decoder, the built-in ``"fast"`` and ``"reference"`` included, is an object registered
here under a name with :func:`register_decoder`; everything that decodes audio looks the name
up with :func:`get_decoder` (through :func:`riffusion.decoders.decode_mel`) and asks the object
what it can do (``supports_periodic``) instead of assuming it from the name.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import torch

from riffusion.errors import ParameterError
from riffusion.params import SpectrogramParams

__all__ = [
    "Decoder",
    "DecoderName",
    "check_decoder_name",
    "decoder_names",
    "get_decoder",
    "register_decoder",
    "unregister_decoder",
]

DecoderName = str
"""The name of a registered decoder: ``"fast"``, ``"reference"`` or one added with
:func:`register_decoder`. (Forward transforms have their own, closed set of names:
:data:`riffusion.spectrogram.ForwardMethod`.)"""


@runtime_checkable
class Decoder(Protocol):  # pragma: no mutate block (mutmut's extra members break isinstance)
    """Mel magnitudes → waveform. One method; register an instance with :func:`register_decoder`.

    A decoder may also have ``bytes_per_frame(params) -> int``, its working memory in bytes
    per image column and channel (:func:`riffusion.decoders.decode_bytes`); without it the
    reference decoder's estimate is assumed.

    Attributes:
        supports_periodic: whether ``decode(..., periodic=True)`` makes a seamless loop (a
            decoder without it is refused for loops with a clear error).
    """

    supports_periodic: bool

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
        """Decode ``(..., n_mels, frames)`` magnitudes to ``(..., samples)`` float32 samples.

        Args:
            mel: ``(..., params.num_frequencies, frames)`` non-negative float32 magnitudes on
                ``device``, at the 16-bit scale (:data:`riffusion.spectrogram.INT16_SCALE`).
            params: the spectrogram parameters (sample rate, hop, mel range).
            seed: seed of anything random, so equal seeds give equal output.
            periodic: make one period of a loop (only when ``supports_periodic``).
            num_iterations: iterations of an iterative decoder; ``None`` for its default.
            device: where to run.

        Returns:
            ``(..., params.samples_for_width(frames, periodic=periodic))`` float32 waveform at
            the same 16-bit scale, on ``device``.
        """
        ...


_DECODERS: dict[str, Decoder] = {}
_DECODERS_LOCK = threading.Lock()
# Names other code may rely on (the defaults of every decode_method): they cannot be taken over
# or removed once registered, by riffusion.decoders.fast and riffusion.decoders.reference.
_BUILT_IN = ("fast", "reference")


def register_decoder(name: str, decoder: Decoder, *, replace: bool = False) -> None:
    """Make ``decoder`` available as ``method=name`` everywhere audio is decoded.

    Args:
        name: the decoder's name: letters, digits, ``_``, ``-`` and ``.``.
        decoder: an object with ``decode(mel, params, *, seed, periodic, num_iterations,
            device)`` and ``supports_periodic`` (see :class:`Decoder`).
        replace: allow replacing a decoder registered under ``name`` (never a built-in).

    Raises:
        ParameterError: a malformed name, an object that is not a :class:`Decoder`, or a name
            already taken.
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ParameterError(f"decoder name {name!r} must be letters, digits, '_', '-' or '.'")
    if not isinstance(decoder, Decoder) or not isinstance(decoder.supports_periodic, bool):
        raise ParameterError(
            f"decoder {decoder!r} must have a decode(mel, params, *, seed, periodic, "
            "num_iterations, device) method and a bool supports_periodic"
        )
    with _DECODERS_LOCK:
        if name in _DECODERS and (not replace or name in _BUILT_IN):
            if name in _BUILT_IN and _DECODERS[name] is decoder:
                return
            raise ParameterError(f"a decoder named {name!r} is already registered")
        _DECODERS[name] = decoder


def unregister_decoder(name: str) -> None:
    """Remove a decoder added with :func:`register_decoder`.

    Args:
        name: its name (the built-in ``"fast"`` and ``"reference"`` stay).
    """
    if name in _BUILT_IN:
        raise ParameterError(f"the built-in decoder {name!r} cannot be removed")
    with _DECODERS_LOCK:
        _DECODERS.pop(name, None)


def decoder_names() -> tuple[str, ...]:
    """The registered decoder names, built-ins first."""
    with _DECODERS_LOCK:
        return tuple(sorted(_DECODERS, key=lambda n: (n not in _BUILT_IN, n)))


def get_decoder(name: object) -> Decoder:
    """The decoder registered as ``name``: the one place decoder names are checked.

    Args:
        name: a registered decoder name.

    Raises:
        ParameterError: ``name`` is not registered; the message lists the names that are.
    """
    with _DECODERS_LOCK:
        decoder = _DECODERS.get(name) if isinstance(name, str) else None
    if decoder is None:
        known = ", ".join(repr(n) for n in decoder_names()) or "'fast', 'reference'"
        raise ParameterError(f"method={name!r} must be a registered decoder: {known}")
    return decoder


def check_decoder_name(argument: str, value: object) -> str:
    """``value`` if it names a registered decoder.

    The built-ins are registered by the time this runs: importing this module imports the
    :mod:`riffusion.decoders` package, which registers them.

    Args:
        argument: the argument's name for the message (``"method"``, ``"decode_method"``).
        value: the name to check.

    Raises:
        ParameterError: naming ``argument``, the value and the registered names.
    """
    try:
        get_decoder(value)
    except ParameterError:
        known = ", ".join(repr(name) for name in decoder_names())
        message = f"{argument}={value!r} must be a registered decoder: {known}"
        raise ParameterError(message) from None
    return value  # type: ignore[return-value]
