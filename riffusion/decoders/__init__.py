"""Decoders: mel magnitudes → waveform, by name, built-ins and plug-ins alike.

- :mod:`riffusion.decoders.registry`: the :class:`Decoder` protocol (``decode(mel, params, *,
  seed, periodic, num_iterations, device)`` and ``supports_periodic``) and the registry
  (:func:`register_decoder`, :func:`get_decoder`, :func:`decoder_names`).
- :mod:`riffusion.decoders.fast` and :mod:`riffusion.decoders.reference`: the built-in
  ``"fast"`` and ``"reference"`` decoders, ordinary decoder objects registered like any
  plug-in (their math is :class:`riffusion.spectrogram.SpectrogramConverter`'s inverse).
- :mod:`riffusion.decoders.decode`: :func:`decode_mel`, the one dispatch every decode goes
  through (:func:`riffusion.image_to_audio` included), and the decode memory budget
  (:func:`decode_bytes`, :func:`check_decode_size`).

A neural vocoder or any other decoder plugs in with :func:`register_decoder`; after that
``image_to_audio(..., method="name")``, recipes and ``Riffuser(decode_method="name")`` use it.
Whether a decoder can make a seamless loop is a capability it declares
(``supports_periodic``), which callers ask about.

This package sits above :mod:`riffusion.spectrogram` (whose converter holds the built-ins'
math and knows no registry) and below :mod:`riffusion.image`.
"""

from __future__ import annotations

from riffusion.decoders.decode import check_decode_size, decode_bytes, decode_mel
from riffusion.decoders.fast import FastDecoder
from riffusion.decoders.reference import ReferenceDecoder
from riffusion.decoders.registry import (
    Decoder,
    DecoderName,
    check_decoder_name,
    decoder_names,
    get_decoder,
    register_decoder,
    unregister_decoder,
)

__all__ = [
    "Decoder",
    "DecoderName",
    "FastDecoder",
    "ReferenceDecoder",
    "check_decode_size",
    "check_decoder_name",
    "decode_bytes",
    "decode_mel",
    "decoder_names",
    "get_decoder",
    "register_decoder",
    "unregister_decoder",
]
