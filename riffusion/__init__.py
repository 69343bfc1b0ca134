"""riffusion: make music with Stable Diffusion on images of sound.

Layers, bottom to top: :mod:`riffusion.errors` → :mod:`riffusion.params` →
:mod:`riffusion.spectrogram` (STFT/mel) → :mod:`riffusion.image` (8-bit encoding) →
:mod:`riffusion.audio` (I/O) and :mod:`riffusion.convert` → :mod:`riffusion.diffusion`
(img2img pipeline, latent interpolation) → :mod:`riffusion.looping` → :class:`riffusion.Riffuser`.
"""

from riffusion.audio import Audio
from riffusion.convert import audio_to_image, image_to_audio
from riffusion.errors import (
    AudioFileError,
    DeviceError,
    ImageFormatError,
    ModelLoadError,
    ParameterError,
    RiffusionError,
)
from riffusion.params import ExifTag, SpectrogramParams
from riffusion.spectrogram import SpectrogramConverter

__version__ = "0.1.0"

__all__ = [
    "Audio",
    "AudioFileError",
    "DeviceError",
    "ExifTag",
    "ImageFormatError",
    "ModelLoadError",
    "ParameterError",
    "RiffusionError",
    "SpectrogramConverter",
    "SpectrogramParams",
    "__version__",
    "audio_to_image",
    "image_to_audio",
]
