"""Documented size limits, checked before anything is allocated.

Images, EXIF tags, recipes and audio files arrive from other people (share links, uploads, a
server). Without bounds, one number in a file asks for gigabytes: an EXIF sample rate of
10,000,000 Hz makes a 4-million-point FFT whose mel filterbank alone is 4 GB. Every public entry
point checks its sizes against these limits first and raises a
:class:`~riffusion.errors.RiffusionError` that names the value and the limit.

The limits are generous for music work (an hour of audio, 384 kHz studio rates, 11-minute
spectrograms) and small enough that no single call can exhaust a laptop's memory.
"""

from __future__ import annotations

__all__ = [
    "MAX_ADAPTER_BYTES",
    "MAX_AUDIO_BYTES",
    "MAX_AUDIO_SAMPLES",
    "MAX_CHANNELS",
    "MAX_DECODE_BYTES",
    "MAX_DURATION_S",
    "MAX_FFT_SIZE",
    "MAX_FILTERBANK_SIZE",
    "MAX_IMAGE_HEIGHT",
    "MAX_IMAGE_WIDTH",
    "MAX_NUM_FREQUENCIES",
    "MAX_SAMPLE_RATE",
]

#: Highest sample rate (in Hz) accepted anywhere: audio, EXIF, parameters.
MAX_SAMPLE_RATE = 384_000

#: Longest audio (in seconds) read, generated, resampled or encoded in one call.
MAX_DURATION_S = 3600.0

#: Most samples per channel in one waveform (an hour at 384 kHz is beyond it; an hour at 48 kHz
#: fits): bounds resampling and overlap-add buffers.
MAX_AUDIO_SAMPLES = 200_000_000

#: Most channels in one waveform (the library encodes 1 or 2; files may hold up to 8).
MAX_CHANNELS = 64

#: Largest waveform (in bytes: float32 samples of all channels together) read, resampled,
#: padded or converted in one call: an hour of stereo at 48 kHz (1.38 GB) fits. Counts alone
#: do not bound memory (64 channels of the longest allowed signal would be 51 GB); this does,
#: and it is checked from a file's header before anything is decoded.
MAX_AUDIO_BYTES = 1536 * 1024 * 1024

#: Working memory (in bytes) one spectrogram decode may take (image → audio). Phase recovery
#: holds several spectra per column: estimated at 381 KiB per column and channel for the fast
#: decoder at Riffusion's parameters (measured 271 KiB), 8 complex spectra of the full FFT for
#: the reference decoder (``riffusion.decoders.decode_bytes``). 8 GiB is about 220 s of mono
#: audio with the fast decoder, 150 s with the reference one; wider images are refused before
#: anything is allocated. (Counts alone did not bound it: a 32 KB PNG of 65,536 columns asked
#: for 24 GiB.)
MAX_DECODE_BYTES = 8 * 1024**3

#: Largest FFT (in samples) a parameter set may ask for: 0.4 s at 384 kHz is 153,600.
MAX_FFT_SIZE = 262_144

#: Most entries in one mel filterbank, ``(n_fft // 2 + 1) × num_frequencies``: 64 Mi floats,
#: 256 MiB (Riffusion's own is 8,821 × 512, about 4.5 M).
MAX_FILTERBANK_SIZE = 64 * 1024 * 1024

#: Most mel bins (image rows) a parameter set may ask for.
MAX_NUM_FREQUENCIES = 2048

#: Widest spectrogram image (columns): 65,536 columns are 11 minutes at 10 ms per column.
MAX_IMAGE_WIDTH = 65_536

#: Tallest spectrogram image (rows); equals :data:`MAX_NUM_FREQUENCIES`.
MAX_IMAGE_HEIGHT = MAX_NUM_FREQUENCIES

#: Largest LoRA or textual-inversion file read for a recipe (SD 1.x LoRAs are megabytes to a few
#: hundred; embeddings kilobytes).
MAX_ADAPTER_BYTES = 2 * 1024**3
